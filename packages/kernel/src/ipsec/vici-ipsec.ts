/**
 * ViciIpsec: the IpsecPort on a real charon, through its VICI socket (./vici.ts), and the ESP probe through
 * `ip xfrm` (ProcessRunner).
 *
 * Connection shape (reference/flannel.md §3.4.3, linux-lab.md §6): IKEv2, PSK on both sides with the public IPs
 * as identities, keyingtries 0 (retry forever), unique=replace (a re-initiated IKE_SA replaces the old one: no
 * duplicate CHILD_SAs after a restart), one tunnel-mode CHILD_SA. The initiator uses start_action=start and
 * close_action=start; NOT trap, which never fires under kernel-libipsec (linux-lab §6). The responder uses none:
 * when both sides start, charon ends up with duplicate CHILD_SAs. dpd_action=restart on both sides.
 */
import { WeftError, errorMessage } from "@weft/core";
import { KernelError, type KernelErrorCode } from "../port.js";
import type { ProcessRunner } from "../process.js";
import { firstLine } from "../tool-errors.js";
import { usePrivateCharonPidFile } from "./charon.js";
import type { IpsecChildSa, IpsecConnection, IpsecPort, IpsecSa, KernelEspSupport } from "./port.js";
import { type ViciMessage, ViciTransportError, type ViciValue, viciCall, viciStream } from "./vici.js";

const list = (v: ViciValue | undefined): string[] => (Array.isArray(v) ? [...(v as readonly string[])] : typeof v === "string" ? [v] : []);
const section = (v: ViciValue | undefined): ViciMessage => (v && typeof v === "object" && !Array.isArray(v) ? (v as ViciMessage) : {});
const str = (v: ViciValue | undefined): string => (typeof v === "string" ? v : "");

/** The VICI body of load-conn for `c`. Exported for tests of the shape. */
export function connectionMessage(c: IpsecConnection): ViciMessage {
  const initiator = c.initiator === true;
  return {
    [c.name]: {
      version: "2",
      local_addrs: [c.localAddr],
      remote_addrs: [c.remoteAddr],
      ...(c.ikeProposal ? { proposals: [c.ikeProposal] } : {}),
      encap: c.encap ? "yes" : "no",
      keyingtries: "0",
      unique: "replace",
      dpd_delay: `${c.dpdDelay ?? 10}s`,
      local: { auth: "psk", id: c.localAddr },
      remote: { auth: "psk", id: c.remoteAddr },
      children: {
        [c.name]: {
          mode: "tunnel",
          local_ts: [...c.localTs],
          remote_ts: [...c.remoteTs],
          ...(c.espProposal ? { esp_proposals: [c.espProposal] } : {}),
          start_action: initiator ? "start" : "none",
          close_action: initiator ? "start" : "none",
          dpd_action: "restart",
          rekey_time: "1h",
          ...(c.reqid !== undefined ? { reqid: String(c.reqid) } : {}),
        },
      },
    },
  };
}

/** A failed VICI exchange as a KernelError: unreachable charon is transient, a refusal is invalid. */
export function viciError(socket: string, what: string, err: unknown): KernelError {
  if (err instanceof KernelError) return err;
  if (err instanceof ViciTransportError) {
    const gone = err.errno === "ENOENT" || err.errno === "ECONNREFUSED" || err.errno === "ETIMEDOUT" || err.errno === "EPIPE" || err.errno === "ECONNRESET";
    return new KernelError(
      gone ? "KERNEL_TRANSIENT" : "KERNEL_FAILED",
      `${what}: charon is not answering on ${socket} (${err.errno ?? err.message}); is it running?`,
      undefined,
      { cause: err },
    );
  }
  return new KernelError("KERNEL_FAILED", `${what}: ${errorMessage(err)}`, undefined, { cause: err });
}

async function call(socket: string, command: string, body: ViciMessage, what: string, refused: KernelErrorCode = "KERNEL_INVALID"): Promise<ViciMessage> {
  let r: ViciMessage;
  try {
    r = await viciCall(socket, command, body);
  } catch (err) {
    throw viciError(socket, what, err);
  }
  if (r.success === "no") throw new KernelError(refused, `${what}: charon refused: ${firstLine(str(r.errmsg)) || "no reason given"}`);
  return r;
}

/** The events of a streamed command (`list-conns` sends `list-conn` events, ...). */
async function stream(socket: string, command: string, event: string, what: string): Promise<ViciMessage[]> {
  try {
    return (await viciStream(socket, command, event)).events;
  } catch (err) {
    throw viciError(socket, what, err);
  }
}

/** A VICI number: reqid is decimal, spi-in/spi-out are 8 hex digits without 0x; undefined when absent. */
const uint = (v: ViciValue | undefined, radix: 10 | 16): number | undefined => {
  const n = Number.parseInt(str(v), radix);
  return Number.isFinite(n) ? n : undefined;
};

function parseChild(c: ViciMessage): IpsecChildSa {
  const reqid = uint(c.reqid, 10);
  const spiIn = uint(c["spi-in"], 16);
  const spiOut = uint(c["spi-out"], 16);
  return {
    name: str(c.name),
    state: str(c.state),
    localTs: list(c["local-ts"]),
    remoteTs: list(c["remote-ts"]),
    encap: str(c.encap) === "yes",
    ...(reqid !== undefined ? { reqid } : {}),
    ...(spiIn !== undefined ? { spiIn } : {}),
    ...(spiOut !== undefined ? { spiOut } : {}),
  };
}

/** Addresses used for the ESP probe (RFC 2544 benchmarking range, never routed; the state is deleted at once). */
const PROBE = { src: "198.18.255.254", dst: "198.18.255.255", spi: "0x0000fe17" } as const;

export class ViciIpsec implements IpsecPort {
  constructor(private readonly runner: ProcessRunner) {}

  async version(socket: string): Promise<string> {
    const r = await call(socket, "version", {}, "charon version");
    return `${str(r.daemon)} ${str(r.version)}`.trim();
  }

  async loadConnection(socket: string, conn: IpsecConnection): Promise<void> {
    await call(socket, "load-conn", connectionMessage(conn), `load IPsec connection ${conn.name}`);
  }

  async unloadConnection(socket: string, name: string): Promise<void> {
    // Its SAs first: unload-conn leaves established SAs in place (they would carry traffic for a removed peer).
    try {
      await call(socket, "terminate", { ike: name, timeout: "-1" }, `terminate IPsec SAs of ${name}`, "KERNEL_NOT_FOUND");
    } catch (err) {
      if (!(err instanceof KernelError) || err.code !== "KERNEL_NOT_FOUND") throw err;
    }
    const loaded = await this.listConnections(socket);
    if (!loaded.some((c) => c.name === name)) throw new KernelError("KERNEL_NOT_FOUND", `unload IPsec connection ${name}: not loaded`);
    await call(socket, "unload-conn", { name }, `unload IPsec connection ${name}`, "KERNEL_NOT_FOUND");
  }

  async listConnections(socket: string): Promise<IpsecConnection[]> {
    const events = await stream(socket, "list-conns", "list-conn", "list IPsec connections");
    const out: IpsecConnection[] = [];
    for (const e of events) {
      for (const [name, v] of Object.entries(e)) {
        const c = section(v);
        const children = Object.values(section(c.children)).map(section);
        const child = children[0] ?? {};
        out.push({
          name,
          localAddr: list(c.local_addrs)[0] ?? "",
          remoteAddr: list(c.remote_addrs)[0] ?? "",
          localTs: list(child["local-ts"]),
          remoteTs: list(child["remote-ts"]),
        });
      }
    }
    return out;
  }

  async listSas(socket: string): Promise<IpsecSa[]> {
    const events = await stream(socket, "list-sas", "list-sa", "list IPsec SAs");
    const out: IpsecSa[] = [];
    for (const e of events) {
      for (const [connection, v] of Object.entries(e)) {
        const s = section(v);
        out.push({
          connection,
          state: str(s.state),
          localAddr: str(s["local-host"]),
          remoteAddr: str(s["remote-host"]),
          initiator: str(s.initiator) === "yes",
          children: Object.values(section(s["child-sas"])).map((c) => parseChild(section(c))),
        });
      }
    }
    return out;
  }

  async initiate(socket: string, name: string): Promise<void> {
    // timeout -1: charon starts it and answers at once; keyingtries 0 makes it keep trying.
    await call(socket, "initiate", { child: name, ike: name, timeout: "-1", "init-limits": "no" }, `initiate IPsec connection ${name}`);
  }

  async loadSharedKey(socket: string, id: string, secret: string): Promise<void> {
    await call(socket, "load-shared", { id, type: "IKE", data: secret, owners: [] }, `load IPsec shared key ${id}`);
  }

  async unloadSharedKey(socket: string, id: string): Promise<void> {
    if (!(await this.listSharedKeys(socket)).includes(id)) throw new KernelError("KERNEL_NOT_FOUND", `unload IPsec shared key ${id}: not loaded`);
    await call(socket, "unload-shared", { id }, `unload IPsec shared key ${id}`, "KERNEL_NOT_FOUND");
  }

  async listSharedKeys(socket: string): Promise<string[]> {
    const r = await call(socket, "get-shared", {}, "list IPsec shared keys");
    return list(r.keys);
  }

  /**
   * Adds and deletes one null-cipher ESP state: "Requested type not found" means the kernel has no ESP transform
   * (these machines: XFRM without esp4). Nothing carries packets; the state lives for one command.
   */
  async kernelEsp(): Promise<KernelEspSupport> {
    const sel = ["src", PROBE.src, "dst", PROBE.dst, "proto", "esp", "spi", PROBE.spi];
    let r;
    try {
      r = await this.runner.run("ip", ["xfrm", "state", "add", ...sel, "mode", "tunnel", "enc", "ecb(cipher_null)", ""], { reject: false });
    } catch (err) {
      if (err instanceof WeftError && err.code === "PROCESS_MISSING") throw err;
      return { available: false, reason: `cannot probe the kernel for ESP: ${errorMessage(err)}` };
    }
    if (r.exitCode === 0) {
      await this.runner.run("ip", ["xfrm", "state", "delete", ...sel], { reject: false });
      return { available: true };
    }
    const said = firstLine(r.stderr);
    if (/File exists/i.test(said)) return { available: true };
    return { available: false, reason: `kernel lacks ESP: ip xfrm state add ... proto esp: ${said || `exit ${r.exitCode}`}` };
  }

  usePrivatePidFile(runDir: string): Promise<void> {
    return usePrivateCharonPidFile(runDir, this.runner);
  }
}
