/**
 * The CNI protocol around weft-cni (SPEC "Execution Protocol"): read CNI_* and the network configuration, run
 * the command, and answer exactly as the spec says — a result (ADD), a version object (VERSION), nothing (DEL,
 * CHECK, STATUS, GC), or an error object `{cniVersion, code, msg, details?}` — on stdout, with exit code 0 or 1.
 *
 * Pure with respect to its inputs: `runCni` takes the environment and stdin as values and the kernel/process
 * ports as dependencies, so unit tests drive it without spawning anything.
 */
import type { KernelPort, ProcessRunner } from "@weft/kernel";
import { type CniEnv, decodeConfig, parseEnv, parseNetConf, type WeftNetConf } from "./config.js";
import { addDelegate, checkDelegate, delDelegate, gcDelegate } from "./delegate.js";
import { addDirect, allocatorFor, checkDirect, delDirect } from "./direct/bridge.js";
import { CniError, CniErrorCode, errorJson, invalidConfig, toCniError } from "./errors.js";
import { checkVersion, convertResult, CURRENT_VERSION, isSupportedVersion, requireVersion, SUPPORTED_VERSIONS } from "./result.js";
import { readSubnetFile } from "./subnet-file.js";

export interface PluginDeps {
  readonly runner: ProcessRunner;
  /** The namespace the plugin runs in (the node's). */
  readonly host: KernelPort;
  /** The container namespace at a CNI_NETNS path. */
  readonly container: (netnsPath: string) => KernelPort;
  /** WEFT_CNI_FAULT: test-only fault injection, honoured only when set. */
  readonly fault?: string;
  /** WEFT_CNI_TRACE: phase timings on stderr. */
  readonly trace?: (phase: string) => void;
  /**
   * Direct mode: checks CNI_NETNS before an ADD or CHECK changes anything (code 4 when it is not a network
   * namespace). Default: the real check (`netnsProblem`). In delegate mode the delegate plugin opens the namespace.
   */
  readonly checkNetns?: (path: string) => string | undefined;
}

export interface CniOutcome {
  readonly stdout: string;
  readonly exitCode: number;
}

export function versionInfo(): { cniVersion: string; supportedVersions: string[] } {
  return { cniVersion: CURRENT_VERSION, supportedVersions: [...SUPPORTED_VERSIONS] };
}

/** The shim's limit on the network config on stdin (MAX_STDIN in shim/weft-cni-shim.c); the Node plugin keeps it too. */
export const MAX_CNI_STDIN_BYTES = 1024 * 1024;

/** Runs one CNI invocation. Never throws: every failure becomes the spec's error object and exit code 1. */
export async function runCni(envVars: Readonly<Record<string, string | undefined>>, stdin: string, deps: PluginDeps): Promise<CniOutcome> {
  let replyVersion: string = CURRENT_VERSION;
  try {
    // Checked first, as the shim does (before it reads anything else), so both paths give the same answer.
    if (stdin.length > MAX_CNI_STDIN_BYTES / 3 && Buffer.byteLength(stdin) > MAX_CNI_STDIN_BYTES) {
      throw new CniError(CniErrorCode.INVALID_NETWORK_CONFIG, "invalid network config: the config on stdin is larger than the 1 MiB limit of weft");
    }
    const env = parseEnv(envVars);
    if (env.command === "VERSION") {
      // stdin may carry {"cniVersion": ...}; the answer is the same whatever it says (as the reference skel).
      return { stdout: `${JSON.stringify(versionInfo())}\n`, exitCode: 0 };
    }
    const raw = decodeConfig(stdin);
    if (typeof raw.cniVersion === "string" && isSupportedVersion(raw.cniVersion)) replyVersion = raw.cniVersion;
    checkVersion(raw.cniVersion);
    const conf = parseNetConf(raw);
    deps.trace?.("config");
    const out = await dispatch(env, conf, deps);
    return { stdout: out === undefined ? "" : `${out}\n`, exitCode: 0 };
  } catch (err) {
    const e = toCniError(err);
    return { stdout: `${JSON.stringify(errorJson(e, replyVersion))}\n`, exitCode: 1 };
  }
}

async function dispatch(env: CniEnv, conf: WeftNetConf, deps: PluginDeps): Promise<string | undefined> {
  switch (env.command) {
    case "ADD": {
      const subnet = await readSubnetFile(conf.subnetFile);
      deps.trace?.("subnet-file");
      if (conf.delegate) return (await addDelegate(conf, env, subnet, deps.runner)).trim();
      return JSON.stringify(convertResult(await addDirect(conf, env, subnet, deps), conf.cniVersion));
    }
    case "DEL":
      if (conf.delegate) await delDelegate(conf, env, deps.runner);
      else await delDirect(conf, env, deps);
      return undefined;
    case "CHECK":
      requireVersion("CHECK", conf.cniVersion, "0.4.0");
      if (conf.delegate) await checkDelegate(conf, env, deps.runner);
      else await checkDirect(conf, env, deps);
      return undefined;
    case "STATUS":
      requireVersion("STATUS", conf.cniVersion, "1.1.0");
      try {
        await readSubnetFile(conf.subnetFile);
      } catch (err) {
        const e = toCniError(err);
        throw new CniError(CniErrorCode.PLUGIN_NOT_AVAILABLE, e.message, e.details, { cause: err });
      }
      return undefined;
    case "GC": {
      requireVersion("GC", conf.cniVersion, "1.1.0");
      if (!conf.validAttachments) {
        throw invalidConfig("cni.dev/valid-attachments", "is required for GC (the runtime lists the attachments that are still in use)");
      }
      if (conf.delegate) await gcDelegate(conf, env, conf.validAttachments, deps.runner);
      else await allocatorFor(conf).gc(conf.validAttachments);
      return undefined;
    }
    case "VERSION":
      return JSON.stringify(versionInfo());
  }
}
