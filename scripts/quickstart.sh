#!/usr/bin/env bash
# Quick start: set the machine up, build, start a one-node cluster in the background and deploy an example service.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-system.sh
shoal() { node dist/src/cli/main.js "$@"; }
shoal init --detach
if ! shoal service ps web >/dev/null 2>&1; then
  shoal service create --name web --replicas 3 shoal-test/busybox \
    sh -c 'mkdir -p /www && echo "<h1>Hello from Shoal task $HOSTNAME</h1>" >/www/index.html && exec httpd -f -p 8080 -h /www'
fi
shoal service ls
echo
echo "The example service answers on each task's container address:"
for id in $(docker ps -q --filter label=shoal.service.name=web); do
  ip="$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$id")"
  echo "  curl http://$ip:8080/"
done
echo
echo "Use the CLI as: node dist/src/cli/main.js service ls   (or 'npm link' to get 'shoal' on your PATH)"
