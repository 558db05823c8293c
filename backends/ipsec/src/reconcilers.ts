/**
 * The ipsec backend's three kinds, each a reconciler over a port (ManagedDaemonPort, IpsecPort); the backend
 * only declares objects of them.
 *
 *   ipsec-charon  the node's charon (one object): running, with the datapath its strongswan.conf names. Missing
 *                 or crashed -> started (the port's backoff bounds a crash loop); another datapath -> restarted.
 *                 Comes BEFORE `routes` (routes via ipsec0 need the TUN charon creates in libipsec mode) and
 *                 the two kinds below.
 *   ipsec-secret  the IKE pre-shared key, loaded over VICI under an id derived from a digest of the key (so a
 *                 changed key is a new object and the old id is pruned). The object names the 0600 file the key
 *                 is in, never the key.
 *   ipsec-conn    one connection per peer (name `weft-<peer IP>-<digest of the whole spec>`: any change of
 *                 proposal, encapsulation, selectors or initiator is a new name, so drift in what charon cannot
 *                 report back is still caught). Read back with its IKE_SA state: an initiator connection without
 *                 an SA is drift, repaired by initiating it (charon killed and restarted, SA deleted by hand).
 * Ownership: this agent's own charon (run directory under STATE_DIR), and in it only names starting `weft-`.
 * When charon is not running, the secret and connection kinds own nothing (it took them with it).
 */
import { readFileSync } from "node:fs";
import { WeftError, isWeftError } from "@weft/core";
import {
  type CharonDatapath,
  type IpsecConnection,
  type IpsecPort,
  KernelError,
  type ManagedDaemonPort,
  type ManagedDaemonSpec,
  type OpResult,
  charonDaemonSpec,
  charonFiles,
  locateCharon,
  prepareCharon,
} from "@weft/kernel";
import type { Drift, ObjectReconciler } from "@weft/reconcile";

export const CHARON_KIND = "ipsec-charon";
export const SECRET_KIND = "ipsec-secret";
export const CONN_KIND = "ipsec-conn";
/** Prefix of every connection and shared-key id Weft loads; nothing else in charon is touched. */
export const OWNED_PREFIX = "weft-";

/** The node's charon as an object. */
export interface CharonSpec {
  readonly name: "charon";
  readonly datapath: CharonDatapath;
}
/** A shared key by id; the key itself stays in `file` (0600) and is read only to load it. */
export interface SecretSpec {
  readonly id: string;
  readonly file?: string;
}
/** A connection and its IKE_SA. */
export interface ConnSpec extends IpsecConnection {
  /**
   * Desired: "start" when this side initiates (an IKE_SA with its CHILD_SA must exist; CONNECTING counts as on its
   * way). Read back: `CHILD_<state>` (CHILD_INSTALLED, CHILD_REKEYING, ...) when the CHILD_SA exists, else the
   * IKE_SA's state (CONNECTING, or ESTABLISHED without a child), absent when there is no IKE_SA.
   */
  readonly sa?: string;
}

type CharonOp = { readonly op: "charon.start"; readonly spec: CharonSpec } | { readonly op: "charon.stop" };
type SecretOp = { readonly op: "secret.load"; readonly secret: SecretSpec } | { readonly op: "secret.unload"; readonly id: string };
type ConnOp = { readonly op: "conn.load"; readonly conn: ConnSpec } | { readonly op: "conn.unload"; readonly name: string } | { readonly op: "conn.initiate"; readonly name: string };

/** A failure as the engine records it; a missing charon keeps its one-line install hint as the message. */
const asKernelError = (err: unknown, what: string): KernelError => {
  if (err instanceof KernelError) return err;
  const message = isWeftError(err) && err.code === "PROCESS_MISSING" ? err.message : `${what}: ${err instanceof Error ? err.message : String(err)}`;
  return new KernelError("KERNEL_FAILED", message, undefined, { cause: err });
};

async function each<Op>(ops: readonly Op[], run: (op: Op) => Promise<void>, what: (op: Op) => string): Promise<OpResult[]> {
  const out: OpResult[] = [];
  for (const op of ops) {
    try {
      await run(op);
      out.push({ ok: true });
    } catch (err) {
      out.push({ ok: false, error: asKernelError(err, what(op)) });
    }
  }
  return out;
}

/** The node's charon and the files it uses; shared by the three reconcilers and the backend. */
export class CharonHandle {
  readonly files;
  private datapath: CharonDatapath = "libipsec";

  constructor(
    readonly daemons: ManagedDaemonPort,
    readonly ipsec: IpsecPort,
    runDir: string,
    /** Runs right before charon starts (the lab's private PID file, PRIVATE_CHARON_PIDFILE_ENV). */
    private readonly beforeStart?: () => Promise<void>,
  ) {
    this.files = charonFiles(runDir);
  }

  get socket(): string {
    return this.files.socket;
  }

  /** The spec for the daemon port; `locateCharon` throws the one-line PROCESS_MISSING when charon is not installed. */
  spec(command = locateCharon()): ManagedDaemonSpec {
    const files = this.files;
    const datapath = () => this.datapath;
    return {
      ...charonDaemonSpec({
        runDir: files.runDir,
        command,
        ready: async () => {
          try {
            await this.ipsec.version(files.socket);
            return true;
          } catch {
            return false;
          }
        },
      }),
      readiness: "its VICI socket answered",
      prepare: async () => {
        await this.beforeStart?.();
        prepareCharon(files, datapath());
      },
    };
  }

  /** The spec to find or stop a charon with, even where charon is not installed (a teardown on such a node). */
  ref(): ManagedDaemonSpec {
    let command: string;
    try {
      command = locateCharon();
    } catch {
      command = "/usr/lib/ipsec/charon";
    }
    return this.spec(command);
  }

  async start(datapath: CharonDatapath): Promise<void> {
    this.datapath = datapath;
    await this.daemons.ensure(this.spec());
  }

  async running(): Promise<boolean> {
    return (await this.daemons.find(this.ref())).running;
  }

  /** The datapath the strongswan.conf on disk names (what the running charon was started with). */
  datapathOnDisk(): CharonDatapath | undefined {
    try {
      return /Datapath: (kernel|libipsec)\b/.exec(readFileSync(this.files.conf, "utf8"))?.[1] as CharonDatapath | undefined;
    } catch {
      return undefined;
    }
  }
}

export class CharonReconciler implements ObjectReconciler<CharonSpec, CharonOp> {
  readonly kind = CHARON_KIND;
  readonly before = ["routes", SECRET_KIND, CONN_KIND] as const;

  constructor(private readonly charon: CharonHandle) {}

  key(o: CharonSpec): string {
    return o.name;
  }

  async listOwned(): Promise<CharonSpec[]> {
    if (!(await this.charon.running())) return [];
    return [{ name: "charon", datapath: this.charon.datapathOnDisk() ?? "libipsec" }];
  }

  drift(desired: CharonSpec, actual: CharonSpec): Drift {
    return desired.datapath === actual.datapath ? undefined : `runs with datapath ${actual.datapath}, ${desired.datapath} wanted: restart`;
  }

  addOps(o: CharonSpec): CharonOp[] {
    return [{ op: "charon.start", spec: o }];
  }

  updateOps(desired: CharonSpec): CharonOp[] {
    return [{ op: "charon.stop" }, { op: "charon.start", spec: desired }];
  }

  removeOps(): CharonOp[] {
    return [{ op: "charon.stop" }];
  }

  apply(ops: readonly CharonOp[]): Promise<OpResult[]> {
    return each(
      ops,
      async (op) => {
        if (op.op === "charon.start") await this.charon.start(op.spec.datapath);
        else await this.charon.daemons.stop(this.charon.ref());
      },
      (op) => (op.op === "charon.start" ? "start charon" : "stop charon"),
    );
  }

  async snapshot(): Promise<unknown[]> {
    return this.listOwned();
  }
}

/** Reads a list from charon, or nothing when it is not running (it owns nothing then). */
async function whileRunning<T>(read: () => Promise<T[]>): Promise<T[]> {
  try {
    return await read();
  } catch (err) {
    if (err instanceof KernelError && err.code === "KERNEL_TRANSIENT") return [];
    throw err;
  }
}

export class SecretReconciler implements ObjectReconciler<SecretSpec, SecretOp> {
  readonly kind = SECRET_KIND;
  readonly after = [CHARON_KIND] as const;

  constructor(private readonly charon: CharonHandle) {}

  key(o: SecretSpec): string {
    return o.id;
  }

  async listOwned(): Promise<SecretSpec[]> {
    const ids = await whileRunning(() => this.charon.ipsec.listSharedKeys(this.charon.socket));
    return ids.filter((id) => id.startsWith(OWNED_PREFIX)).map((id) => ({ id }));
  }

  drift(): Drift {
    return undefined; // the id is a digest of the key: another key is another object
  }

  addOps(o: SecretSpec): SecretOp[] {
    return [{ op: "secret.load", secret: o }];
  }

  updateOps(desired: SecretSpec): SecretOp[] {
    return [{ op: "secret.load", secret: desired }];
  }

  removeOps(o: SecretSpec): SecretOp[] {
    return [{ op: "secret.unload", id: o.id }];
  }

  apply(ops: readonly SecretOp[]): Promise<OpResult[]> {
    return each(
      ops,
      async (op) => {
        if (op.op === "secret.unload") return this.charon.ipsec.unloadSharedKey(this.charon.socket, op.id);
        if (!op.secret.file) throw new WeftError("KERNEL_INVALID", `shared key ${op.secret.id} has no key file`);
        const secret = readFileSync(op.secret.file, "utf8").replace(/\r?\n$/, "");
        await this.charon.ipsec.loadSharedKey(this.charon.socket, op.secret.id, secret);
      },
      (op) => (op.op === "secret.load" ? `load shared key ${op.secret.id}` : `unload shared key ${op.id}`),
    );
  }

  async snapshot(): Promise<unknown[]> {
    return this.listOwned();
  }
}

export class ConnReconciler implements ObjectReconciler<ConnSpec, ConnOp> {
  readonly kind = CONN_KIND;
  readonly after = [CHARON_KIND, SECRET_KIND] as const;

  constructor(private readonly charon: CharonHandle) {}

  key(o: ConnSpec): string {
    return o.name;
  }

  async listOwned(): Promise<ConnSpec[]> {
    const socket = this.charon.socket;
    const conns = (await whileRunning(() => this.charon.ipsec.listConnections(socket))).filter((c) => c.name.startsWith(OWNED_PREFIX));
    if (conns.length === 0) return [];
    // An IKE_SA that came up without its CHILD_SA (the peer did not have its side loaded yet: TS_UNACCEPTABLE)
    // stays up childless, and charon does not retry the CHILD_SA by itself: reported as "ESTABLISHED", no child.
    const sas = new Map((await whileRunning(() => this.charon.ipsec.listSas(socket))).map((s) => [s.connection, s.children.length > 0 ? `CHILD_${s.children[0]!.state}` : s.state]));
    return conns.map((c) => ({ ...c, ...(sas.has(c.name) ? { sa: sas.get(c.name)! } : {}) }));
  }

  drift(desired: ConnSpec, actual: ConnSpec): Drift {
    const same = (a: readonly string[], b: readonly string[]) => a.join(",") === b.join(",");
    if (desired.localAddr !== actual.localAddr || desired.remoteAddr !== actual.remoteAddr || !same(desired.localTs, actual.localTs) || !same(desired.remoteTs, actual.remoteTs)) {
      return "loaded with other addresses or selectors: reload";
    }
    if (desired.sa !== undefined && actual.sa === undefined) return "this side initiates and there is no IKE_SA: initiate";
    if (desired.sa !== undefined && actual.sa === "ESTABLISHED") return "this side initiates and the IKE_SA has no CHILD_SA: initiate it";
    return undefined;
  }

  addOps(o: ConnSpec): ConnOp[] {
    return [{ op: "conn.load", conn: o }];
  }

  updateOps(desired: ConnSpec, actual: ConnSpec): ConnOp[] {
    const { sa: _sa, ...conn } = desired;
    const reload = this.drift(conn, actual) !== undefined;
    return reload ? [{ op: "conn.load", conn: desired }] : [{ op: "conn.initiate", name: desired.name }];
  }

  removeOps(o: ConnSpec): ConnOp[] {
    return [{ op: "conn.unload", name: o.name }];
  }

  apply(ops: readonly ConnOp[]): Promise<OpResult[]> {
    const socket = this.charon.socket;
    return each(
      ops,
      async (op) => {
        if (op.op === "conn.unload") return this.charon.ipsec.unloadConnection(socket, op.name);
        if (op.op === "conn.initiate") return this.charon.ipsec.initiate(socket, op.name);
        const { sa: _sa, ...conn } = op.conn;
        await this.charon.ipsec.loadConnection(socket, conn);
      },
      (op) => `${op.op.replace("conn.", "")} IPsec connection ${op.op === "conn.load" ? op.conn.name : op.name}`,
    );
  }

  /** Connections as comparable data (no SA state: that is the peer's business, not this backend's leftovers). */
  async snapshot(): Promise<unknown[]> {
    return (await this.listOwned()).map(({ sa: _sa, ...c }) => c);
  }
}
