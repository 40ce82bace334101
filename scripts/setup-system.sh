#!/usr/bin/env bash
# Prepares a fresh Debian machine for Shoal: system packages, a running Docker Engine, the test image,
# the npm dependencies and the build. Idempotent: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# --- system packages
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
command -v git >/dev/null 2>&1 || need+=(git)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# --- Docker Engine (no iptables here: tests only use loopback and the engine's own bridge)
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  $SUDO sh -c 'nohup dockerd --iptables=false >/var/log/shoal-dockerd.log 2>&1 &'
  for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/shoal-dockerd.log" >&2; tail -20 /var/log/shoal-dockerd.log >&2 || true; exit 1; }
fi

# --- the test image: FROM scratch + static busybox (no registry is reachable, so nothing is pulled)
if ! docker image inspect shoal-test/busybox >/dev/null 2>&1; then
  log "building image shoal-test/busybox"
  ctx="$(mktemp -d)"
  cp /bin/busybox "$ctx/busybox"
  printf 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox","--install","-s","/bin"]\nCMD ["/bin/sh"]\n' >"$ctx/Dockerfile"
  DOCKER_BUILDKIT=0 docker build -q -t shoal-test/busybox "$ctx" >/dev/null
  rm -rf "$ctx"
fi

# --- npm dependencies (better-sqlite3 builds from source with node-gyp) and the build
lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ ! -f node_modules/.shoal-lock-sum ] || [ "$(cat node_modules/.shoal-lock-sum)" != "$lock_sum" ]; then
  log "npm ci"
  npm ci --no-audit --no-fund
  echo "$lock_sum" >node_modules/.shoal-lock-sum
fi
log "building"
rm -rf dist
npx tsc -p tsconfig.json
chmod +x dist/src/cli/main.js
