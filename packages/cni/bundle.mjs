// Builds dist/weft-cni.cjs, the executable: src/main.ts bundled as CommonJS, wrapped as a function and embedded
// as a string in the loader (src/loader.ts), which runs it through a V8 code cache. See src/loader.ts and
// docs/adr/0006-cni-latency.md for why it is shaped like this.
import { createHash } from "node:crypto";
import { chmodSync } from "node:fs";
import { build } from "esbuild";

const common = { bundle: true, platform: "node", target: "node20", format: "cjs", conditions: ["@weft/source"], logLevel: "warning" };
const payload = await build({ ...common, entryPoints: ["src/main.ts"], write: false });
const body = payload.outputFiles[0].text;
// The same five parameters Node's CommonJS wrapper passes; the trailing newline keeps a final line comment closed.
const source = `(function (exports, require, module, __filename, __dirname) {${body}\n})`;
const id = createHash("sha256").update(source).digest("hex").slice(0, 16);
await build({
  ...common,
  entryPoints: ["src/loader.ts"],
  outfile: "dist/weft-cni.cjs",
  define: { WEFT_CNI_PAYLOAD: JSON.stringify(source), WEFT_CNI_PAYLOAD_ID: JSON.stringify(id) },
});
chmodSync("dist/weft-cni.cjs", 0o755);
