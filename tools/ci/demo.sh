#!/usr/bin/env bash
# The README's main command (`npm run demo`): installs what it needs, builds, and runs the demo cluster.
set -euo pipefail
cd "$(dirname "$0")/../.."
export NX_NO_CLOUD=true NX_DAEMON=false NX_TUI=false
bash tools/ci/install-deps.sh
[ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error
npm run -s build >/dev/null
exec node tools/demo/dist/demo.js "$@"
