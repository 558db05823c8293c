#!/usr/bin/env node
/**
 * The executable, dist/weft-cni.cjs (installed as `weft`): a small CommonJS loader that carries the plugin
 * (./main.ts, bundled) as a string and runs it through a V8 code cache (./code-cache.ts). The build
 * (../bundle.mjs) defines the two constants below. CommonJS, not ESM: Node 20's ESM loader costs ~6 ms more
 * per start, and an extensionless ESM file (the installed `weft`) is compiled twice (as CommonJS first).
 *
 * Cached: ADD and DEL only (the commands that run per pod), one cache each. WEFT_CNI_CODE_CACHE_DIR moves the
 * cache (tests, benchmarks) or turns it off ("off").
 */
import { createRequire } from "node:module";
import { dirname } from "node:path";
import { codeCachePath, compileWithCodeCache, DEFAULT_CODE_CACHE_DIR, saveCodeCache } from "./code-cache.js";

/** The bundled plugin as `(function (exports, require, module, __filename, __dirname) {...})`. */
declare const WEFT_CNI_PAYLOAD: string;
/** A hash of WEFT_CNI_PAYLOAD: names its cache files. */
declare const WEFT_CNI_PAYLOAD_ID: string;

type Payload = (exports: object, require: NodeRequire, module: { exports: object }, filename: string, dirname: string) => void;

const filename = process.argv[1] ?? "weft-cni";
const command = process.env.CNI_COMMAND;
const dirSetting = process.env.WEFT_CNI_CODE_CACHE_DIR || DEFAULT_CODE_CACHE_DIR;
const dir = dirSetting === "off" || process.argv.length > 2 || (command !== "ADD" && command !== "DEL") ? undefined : dirSetting;
const path = dir === undefined ? undefined : codeCachePath(dir, WEFT_CNI_PAYLOAD_ID, command!);

const { script, status } = compileWithCodeCache(WEFT_CNI_PAYLOAD, filename, path, dir);
if (process.env.WEFT_CNI_TRACE) process.stderr.write(`weft-cni: code cache ${status}${path ? ` (${path})` : ""} at ${performance.now().toFixed(1)} ms\n`);
if (dir !== undefined && path !== undefined && status !== "used" && status !== "untrusted") {
  process.once("exit", (code) => {
    if (code !== 0) return;
    const problem = saveCodeCache(script, dir, path, WEFT_CNI_PAYLOAD_ID);
    if (problem && process.env.WEFT_CNI_TRACE) process.stderr.write(`weft-cni: code cache not written: ${problem}\n`);
  });
}
const mod = { exports: {} };
(script.runInThisContext() as Payload)(mod.exports, createRequire(filename), mod, filename, dirname(filename));
