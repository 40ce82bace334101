#!/usr/bin/env bash
# The whole test suite: set up the machine, lint (layering rules included), then unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-system.sh
echo "==> lint" >&2
npx eslint .
echo "==> unit tests" >&2
node scripts/run-tests.mjs unit
echo "==> integration tests (real Docker Engine)" >&2
node scripts/run-tests.mjs integration
