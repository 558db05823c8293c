#!/usr/bin/env bash
# Scaffolds an empty workspace package: tools/mkpkg.sh <dir> <@weft/name> <tags,comma> [dep ...]
set -euo pipefail
dir=$1 name=$2 tags=$3; shift 3
mkdir -p "$dir/src"
short=${name#@weft/}
deps=""; refs=""
for d in "$@"; do
  deps="$deps\"$d\": \"*\","
done
tagsjson=$(printf '%s' "$tags" | awk -F, '{for(i=1;i<=NF;i++){printf "%s\"%s\"", (i>1?",":""), $i}}')
cat > "$dir/package.json" <<JSON
{
  "name": "$name",
  "version": "0.1.0",
  "private": true,
  "type": "module",
  "exports": {
    ".": { "@weft/source": "./src/index.ts", "types": "./dist/index.d.ts", "default": "./dist/index.js" }
  },
  "files": ["dist"],
  "scripts": {
    "build": "tsc -b",
    "test": "vitest run"
  },
  "nx": { "tags": [$tagsjson] },
  "dependencies": { ${deps%,} }
}
JSON
cat > "$dir/tsconfig.json" <<JSON
{
  "extends": "../../tsconfig.base.json",
  "compilerOptions": { "rootDir": "src", "outDir": "dist", "tsBuildInfoFile": "dist/tsconfig.tsbuildinfo" },
  "include": ["src"],
  "exclude": ["src/**/*.spec.ts"],
  "references": []
}
JSON
cat > "$dir/vitest.config.ts" <<TS
import { weftProject } from "../../vitest.shared.ts";
export default weftProject("$short");
TS
[ -f "$dir/src/index.ts" ] || echo "export {};" > "$dir/src/index.ts"
