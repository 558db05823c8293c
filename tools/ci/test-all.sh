#!/usr/bin/env bash
# The README's test command (`npm test`): on a fresh Debian 12 machine as root with only Node and npm, installs
# what the tests need, builds, lints, and runs all three tiers (unit, netns, cluster). Real tiers FAIL rather
# than skip when CI=true and a privilege or tool is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
export NX_NO_CLOUD=true NX_DAEMON=false NX_TUI=false
# The real tiers fail (never skip) when root or a tool is missing: this command promises they ran.
export CI=${CI:-true}
started=$(date +%s)
step() { printf '\n==> %s (%ss)\n' "$1" "$(( $(date +%s) - started ))"; }

step "system packages"
bash tools/ci/install-deps.sh

step "npm ci"
npm ci --no-audit --no-fund --loglevel=error

step "build"
npm run -s build -- --skip-nx-cache

step "lint (package boundaries)"
npm run -s lint

step "API reference is current (docs/api from TSDoc)"
npm run -s docs:api -- --check

report_dir=$(mktemp -d /tmp/weft-test-reports.XXXXXX)
export WEFT_REPORT_DIR=$report_dir
status=0
step "unit tier"
npm run -s test:unit -- --skip-nx-cache || status=1
step "netns tier (real kernel)"
npm run -s test:netns || status=1
step "cluster tier (processes, real etcd)"
npm run -s test:cluster || status=1

step "summary"
node tools/ci/summarize.mjs "$report_dir" || status=1
rm -rf "$report_dir"
exit $status
