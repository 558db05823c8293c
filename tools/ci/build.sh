#!/usr/bin/env bash
# `npm run build`: the package-boundary check, then every package's build in dependency order (Nx; extra
# arguments go to Nx, e.g. --skip-nx-cache), then the workspace bin links. npm links a package's bin (weftd,
# weftctl, weft-cni, ...) into node_modules/.bin only if the file exists at install time, and on a fresh clone
# `npm ci` runs before anything is built: `npm rebuild --ignore-scripts` links them now (no scripts, no network).
set -euo pipefail
cd "$(dirname "$0")/../.."
node tools/lint/check-boundaries.mjs
npx nx run-many -t build --outputStyle=stream "$@"
npm rebuild --ignore-scripts --loglevel=error
