/**
 * A minimal client of strongSwan's VICI protocol (the versatile IKE control interface charon serves on a unix
 * socket; swanctl is its command-line client). Weft talks VICI directly instead of running swanctl per object:
 * structured answers instead of text to parse, no process per call, and secrets travel over the socket only,
 * never in argv or a file on disk.
 *
 * Wire format (strongSwan's src/libcharon/plugins/vici/README.md): every packet is a 32-bit big-endian length
 * then the payload; the payload starts with a type byte; named types (command request, event register/
 * unregister, event) carry a name (8-bit length + bytes); then a message made of elements:
 *   section start (8-bit name), section end, key/value (8-bit key, 16-bit value), list start (8-bit name),
 *   list item (16-bit value), list end.
 * A streaming command (list-conns, list-sas) answers with events of a registered name until its response.
 *
 * What surprised us: a socket file outlives charon (connect then fails with ECONNREFUSED: "not running", not
 * "invalid"); values are byte strings, and booleans are "yes"/"no".
 */
import { createConnection, type Socket } from "node:net";

/** A VICI message: sections are objects, lists are string arrays, values are strings. */
export interface ViciMessage {
  [key: string]: ViciValue;
}
export type ViciValue = string | readonly string[] | ViciMessage;

const enum Packet {
  CmdRequest = 0,
  CmdResponse = 1,
  CmdUnknown = 2,
  EventRegister = 3,
  EventUnregister = 4,
  EventConfirm = 5,
  EventUnknown = 6,
  Event = 7,
}

const enum Element {
  SectionStart = 1,
  SectionEnd = 2,
  KeyValue = 3,
  ListStart = 4,
  ListItem = 5,
  ListEnd = 6,
}

/** Encodes a message body. Throws on names over 255 bytes or values over 65535 bytes (the format's limits). */
export function encodeViciMessage(msg: ViciMessage): Buffer {
  const parts: Buffer[] = [];
  const name = (s: string) => {
    const b = Buffer.from(s, "utf8");
    if (b.length > 255) throw new Error(`VICI name longer than 255 bytes: ${s.slice(0, 40)}...`);
    parts.push(Buffer.from([b.length]), b);
  };
  const value = (s: string) => {
    const b = Buffer.from(s, "utf8");
    if (b.length > 65535) throw new Error("VICI value longer than 65535 bytes");
    const len = Buffer.alloc(2);
    len.writeUInt16BE(b.length);
    parts.push(len, b);
  };
  const walk = (m: ViciMessage) => {
    for (const [k, v] of Object.entries(m)) {
      if (typeof v === "string") {
        parts.push(Buffer.from([Element.KeyValue]));
        name(k);
        value(v);
      } else if (Array.isArray(v)) {
        parts.push(Buffer.from([Element.ListStart]));
        name(k);
        for (const item of v as readonly string[]) {
          parts.push(Buffer.from([Element.ListItem]));
          value(item);
        }
        parts.push(Buffer.from([Element.ListEnd]));
      } else {
        parts.push(Buffer.from([Element.SectionStart]));
        name(k);
        walk(v as ViciMessage);
        parts.push(Buffer.from([Element.SectionEnd]));
      }
    }
  };
  walk(msg);
  return Buffer.concat(parts);
}

/** A VICI message body that does not follow the format (truncated, an unknown element, unbalanced sections). */
export class ViciFormatError extends Error {
  override readonly name = "ViciFormatError";
}

/**
 * Sets `key` on `target` as an own, enumerable property: a key such as `__proto__` from the wire must be data, not
 * the object's prototype (plain assignment would replace the prototype and lose the key).
 */
function setOwn(target: ViciMessage, key: string, value: ViciValue): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

/** Decodes a message body; throws a ViciFormatError on a malformed one. */
export function decodeViciMessage(buf: Buffer): ViciMessage {
  let i = 0;
  const need = (n: number) => {
    if (i + n > buf.length) throw new ViciFormatError("truncated VICI message");
  };
  const readName = () => {
    need(1);
    const len = buf[i++]!;
    need(len);
    const s = buf.toString("utf8", i, i + len);
    i += len;
    return s;
  };
  const readValue = () => {
    need(2);
    const len = buf.readUInt16BE(i);
    i += 2;
    need(len);
    const s = buf.toString("utf8", i, i + len);
    i += len;
    return s;
  };
  const root: ViciMessage = {};
  const stack: ViciMessage[] = [root];
  let list: string[] | undefined;
  while (i < buf.length) {
    const type = buf[i++]!;
    const top = stack[stack.length - 1]!;
    switch (type) {
      case Element.SectionStart: {
        const s: ViciMessage = {};
        setOwn(top, readName(), s);
        stack.push(s);
        break;
      }
      case Element.SectionEnd:
        if (stack.length === 1) throw new ViciFormatError("VICI section end without a section");
        stack.pop();
        break;
      case Element.KeyValue: {
        const k = readName();
        setOwn(top, k, readValue());
        break;
      }
      case Element.ListStart: {
        list = [];
        setOwn(top, readName(), list);
        break;
      }
      case Element.ListItem:
        if (!list) throw new ViciFormatError("VICI list item outside a list");
        list.push(readValue());
        break;
      case Element.ListEnd:
        list = undefined;
        break;
      default:
        throw new ViciFormatError(`unknown VICI element type ${type}`);
    }
  }
  return root;
}

function packet(type: Packet, name: string | undefined, body?: ViciMessage): Buffer {
  const head = [Buffer.from([type])];
  if (name !== undefined) {
    const b = Buffer.from(name, "utf8");
    head.push(Buffer.from([b.length]), b);
  }
  const payload = Buffer.concat([...head, body ? encodeViciMessage(body) : Buffer.alloc(0)]);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(payload.length);
  return Buffer.concat([len, payload]);
}

/** Why a VICI exchange failed: the socket could not be reached, or charon answered with an unknown command. */
export class ViciTransportError extends Error {
  constructor(
    message: string,
    /** The socket's errno (ENOENT: no socket file, ECONNREFUSED: stale file, charon gone), when there is one. */
    readonly errno?: string,
  ) {
    super(message);
  }
}

interface Received {
  readonly type: Packet;
  readonly name?: string;
  readonly body: ViciMessage;
}

/**
 * One connection to a VICI socket, used for one exchange at a time (Weft opens one per call: charon may restart
 * between calls, and a connection is cheap on a unix socket).
 */
class ViciSession {
  private buffer = Buffer.alloc(0);
  private readonly queue: Received[] = [];
  private waiter?: { resolve: (r: Received) => void; reject: (e: Error) => void };
  private failure?: Error;

  private constructor(private readonly socket: Socket) {
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", (err) => this.fail(new ViciTransportError(err.message, (err as NodeJS.ErrnoException).code)));
    socket.on("close", () => this.fail(new ViciTransportError("charon closed the VICI connection")));
  }

  static open(path: string, timeoutMs: number): Promise<ViciSession> {
    return new Promise((resolve, reject) => {
      const socket = createConnection({ path });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new ViciTransportError(`no answer on ${path} within ${timeoutMs} ms`, "ETIMEDOUT"));
      }, timeoutMs);
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.removeAllListeners("error");
        resolve(new ViciSession(socket));
      });
      socket.once("error", (err) => {
        clearTimeout(timer);
        const errno = (err as NodeJS.ErrnoException).code;
        reject(new ViciTransportError(`cannot connect to ${path}: ${errno ?? err.message}`, errno));
      });
    });
  }

  private onData(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    while (this.buffer.length >= 4) {
      const len = this.buffer.readUInt32BE(0);
      if (this.buffer.length < 4 + len) return;
      const payload = this.buffer.subarray(4, 4 + len);
      this.buffer = this.buffer.subarray(4 + len);
      try {
        this.push(parsePacket(payload));
      } catch (err) {
        this.fail(new ViciTransportError(`malformed VICI packet: ${(err as Error).message}`));
      }
    }
  }

  private push(r: Received): void {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve(r);
    } else this.queue.push(r);
  }

  private fail(err: Error): void {
    this.failure ??= err;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.reject(err);
    }
  }

  next(): Promise<Received> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  send(type: Packet, name: string | undefined, body?: ViciMessage): void {
    this.socket.write(packet(type, name, body));
  }

  close(): void {
    this.socket.removeAllListeners("close");
    this.socket.destroy();
  }
}

function parsePacket(payload: Buffer): Received {
  const type = payload[0] as Packet;
  let i = 1;
  let name: string | undefined;
  if (type === Packet.CmdRequest || type === Packet.EventRegister || type === Packet.EventUnregister || type === Packet.Event) {
    const len = payload[i]!;
    name = payload.toString("utf8", i + 1, i + 1 + len);
    i += 1 + len;
  }
  return { type, ...(name !== undefined ? { name } : {}), body: decodeViciMessage(payload.subarray(i)) };
}

/** Options of a VICI call. */
export interface ViciCallOptions {
  /** Give up after this long (default 10 s); a timed-out call is a ViciTransportError ETIMEDOUT. */
  readonly timeoutMs?: number;
}

async function withTimeout<T>(what: Promise<T>, ms: number, path: string, onTimeout: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      what,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          onTimeout();
          reject(new ViciTransportError(`no answer on ${path} within ${ms} ms`, "ETIMEDOUT"));
        }, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Sends `command` with `body` and returns charon's response. A command charon does not know is a
 * ViciTransportError; a refusal (`success: no`) is returned as is, for the caller to classify.
 */
export async function viciCall(path: string, command: string, body: ViciMessage = {}, options: ViciCallOptions = {}): Promise<ViciMessage> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const s = await ViciSession.open(path, timeoutMs);
  try {
    return await withTimeout(
      (async () => {
        s.send(Packet.CmdRequest, command, body);
        const r = await s.next();
        if (r.type === Packet.CmdUnknown) throw new ViciTransportError(`charon does not know the VICI command "${command}"`);
        if (r.type !== Packet.CmdResponse) throw new ViciTransportError(`unexpected VICI packet type ${r.type} answering "${command}"`);
        return r.body;
      })(),
      timeoutMs,
      path,
      () => s.close(),
    );
  } finally {
    s.close();
  }
}

/**
 * Runs a streaming command: registers `event`, sends `command`, collects every event until the response, and
 * returns both. (list-conns streams "list-conn" events, list-sas "list-sa".)
 */
export async function viciStream(
  path: string,
  command: string,
  event: string,
  body: ViciMessage = {},
  options: ViciCallOptions = {},
): Promise<{ events: ViciMessage[]; response: ViciMessage }> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const s = await ViciSession.open(path, timeoutMs);
  try {
    return await withTimeout(
      (async () => {
        s.send(Packet.EventRegister, event);
        const confirm = await s.next();
        if (confirm.type !== Packet.EventConfirm) throw new ViciTransportError(`charon refused to stream the VICI event "${event}"`);
        s.send(Packet.CmdRequest, command, body);
        const events: ViciMessage[] = [];
        for (;;) {
          const r = await s.next();
          if (r.type === Packet.Event) {
            events.push(r.body);
            continue;
          }
          if (r.type === Packet.CmdUnknown) throw new ViciTransportError(`charon does not know the VICI command "${command}"`);
          if (r.type !== Packet.CmdResponse) throw new ViciTransportError(`unexpected VICI packet type ${r.type} answering "${command}"`);
          return { events, response: r.body };
        }
      })(),
      timeoutMs,
      path,
      () => s.close(),
    );
  } finally {
    s.close();
  }
}
