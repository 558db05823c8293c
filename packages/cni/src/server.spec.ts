/**
 * The CNI server over a real unix socket, with a client that speaks for the shim (same wire format). Commands
 * that touch no kernel (VERSION, STATUS, DEL of an unknown container) exercise the whole path; the kernel side is
 * the netns tier's (cni.netns.spec.ts, through the real shim).
 */
import { chmodSync, existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { connect, createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { KernelPort } from "@weft/kernel";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { type CniRequestObservation, CniServer, decodeCniRequest, encodeCniRequest, requestCniSocket } from "./server.js";

const root = mkdtempSync(join(tmpdir(), "weft-cni-server-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const servers: CniServer[] = [];
afterEach(async () => {
  while (servers.length) await servers.pop()!.close();
});

/** A kernel port that must not be used by these tests. */
const noKernel = new Proxy({} as KernelPort, {
  get: (_t, p) => () => Promise.reject(new Error(`kernel.${String(p)} called in a test that touches no kernel`)),
});

async function serve(opts: { receiveTimeoutMs?: number; maxRequestBytes?: number; observe?: (o: CniRequestObservation) => void } = {}): Promise<CniServer> {
  const dir = join(root, `s${++n}`);
  mkdirSync(dir, { mode: 0o755 });
  const server = new CniServer({
    socketPath: join(dir, "cni.sock"),
    deps: { runner: { run: () => Promise.reject(new Error("no processes")), spawn: () => { throw new Error("no processes"); } }, host: noKernel, container: () => noKernel },
    ...opts,
  });
  await server.start();
  servers.push(server);
  return server;
}

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Sends raw bytes, half-closes, reads everything until the server closes. */
function raw(path: string, data: Buffer | string, opts: { end?: boolean } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    const chunks: Buffer[] = [];
    sock.on("data", (c) => chunks.push(c));
    sock.on("error", reject);
    sock.on("close", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      const [head = "", ...rest] = text.split("\r\n\r\n");
      const [statusLine = "", ...lines] = head.split("\r\n");
      const headers: Record<string, string> = {};
      for (const l of lines) headers[l.slice(0, l.indexOf(":")).toLowerCase()] = l.slice(l.indexOf(":") + 1).trim();
      resolve({ status: Number(statusLine.split(" ")[1]), headers, body: rest.join("\r\n\r\n") });
    });
    sock.write(data);
    if (opts.end !== false) sock.end();
  });
}

function post(path: string, env: Record<string, string>, stdin: string): Promise<Answer> {
  const body = encodeCniRequest({ env, stdin });
  const head = `POST /cni/v1 HTTP/1.1\r\nHost: weftd\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
  return raw(path, Buffer.concat([Buffer.from(head), body]));
}

describe("CNI server", () => {
  it("encodes and decodes the shim's wire format, and refuses anything but CNI_* variables", () => {
    const req = { env: { CNI_COMMAND: "ADD", CNI_ARGS: "A=b;C=d=e" }, stdin: '{"x":"\u00e9"}' };
    expect(decodeCniRequest(encodeCniRequest(req))).toEqual(req);
    expect(() => decodeCniRequest(Buffer.from("PATH=/bin\0\0{}"))).toThrow(/"PATH" is not a CNI_\* variable/);
    expect(() => decodeCniRequest(Buffer.from("CNI_COMMAND=ADD\0{}"))).toThrow(/no terminating empty entry/);
  });

  it("creates its socket 0600, owned by this user, in a directory only it can write", async () => {
    const s = await serve();
    const st = statSync(s.socketPath);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.uid).toBe(process.getuid!());
    // A directory others can write is refused, naming it and the fix.
    const open = join(root, "open");
    mkdirSync(open);
    chmodSync(open, 0o777);
    await expect(new CniServer({ socketPath: join(open, "cni.sock"), deps: servers[0]!["opts"].deps }).start()).rejects.toThrow(/open has mode 777, writable by group or others; make it 0755 or 0700/);
    // A second server on a live socket is refused; the socket goes when the first closes.
    await expect(new CniServer({ socketPath: s.socketPath, deps: servers[0]!["opts"].deps }).start()).rejects.toThrow(/another process serves/);
    await s.close();
    servers.pop();
    expect(existsSync(s.socketPath)).toBe(false);
    // A directory it had to create goes with it when empty; one holding other files stays.
    const made = new CniServer({ socketPath: join(root, "new", "deeper", "cni.sock"), deps: s["opts"].deps });
    await made.start();
    expect(statSync(join(root, "new", "deeper")).mode & 0o777).toBe(0o755);
    await made.close();
    expect(existsSync(join(root, "new"))).toBe(false);
    const kept = new CniServer({ socketPath: join(root, "kept", "cni.sock"), deps: s["opts"].deps });
    await kept.start();
    writeFileSync(join(root, "kept", "subnet.env"), "");
    await kept.close();
    expect(readdirSync(join(root, "kept"))).toEqual(["subnet.env"]);
  });

  it("replaces a socket left by an agent that died, and refuses a path that is not a socket", async () => {
    const dir = join(root, "stale");
    mkdirSync(dir, { mode: 0o755 });
    const path = join(dir, "cni.sock");
    writeFileSync(join(dir, "plain"), "");
    await expect(new CniServer({ socketPath: join(dir, "plain"), deps: { runner: undefined as never, host: noKernel, container: () => noKernel } }).start()).rejects.toThrow(
      /plain exists and is not a socket/,
    );
    // A socket file nobody listens on (what a SIGKILLed weftd leaves): a second link to a socket survives the
    // close of the server that made it.
    const leftover = createNetServer();
    await new Promise<void>((r) => leftover.listen(join(dir, "tmp.sock"), r));
    linkSync(join(dir, "tmp.sock"), path);
    await new Promise<void>((r) => leftover.close(() => r()));
    expect(existsSync(path)).toBe(true);
    const s = new CniServer({ socketPath: path, deps: { runner: undefined as never, host: noKernel, container: () => noKernel } });
    await s.start();
    servers.push(s);
    const a = await post(path, { CNI_COMMAND: "VERSION" }, "{}");
    expect(a.status).toBe(200);
  });

  it("answers VERSION, STATUS and DEL through runCni, with the exit code in a header, and reports each request", async () => {
    const seen: CniRequestObservation[] = [];
    const s = await serve({ observe: (o) => seen.push(o) });
    const v = await post(s.socketPath, { CNI_COMMAND: "VERSION" }, '{"cniVersion":"1.0.0"}');
    expect(v.status).toBe(200);
    expect(v.headers["weft-cni-exit-code"]).toBe("0");
    expect(JSON.parse(v.body).supportedVersions).toContain("1.1.0");

    const dir = join(root, "status");
    mkdirSync(dir);
    const conf = { cniVersion: "1.1.0", name: "cbr0", type: "weft", subnetFile: join(dir, "missing.env"), ipam: { dataDir: join(dir, "ipam") } };
    const st = await post(s.socketPath, { CNI_COMMAND: "STATUS" }, JSON.stringify(conf));
    expect(st.headers["weft-cni-exit-code"]).toBe("1");
    expect(JSON.parse(st.body)).toMatchObject({ cniVersion: "1.1.0", code: 50 });

    // DEL of a container never added: nothing reserved, no veth; succeeds with an empty answer.
    const del = await post(s.socketPath, { CNI_COMMAND: "DEL", CNI_CONTAINERID: "c1", CNI_IFNAME: "eth0", CNI_NETNS: "" }, JSON.stringify(conf));
    expect(del).toMatchObject({ status: 200, body: "" });
    expect(del.headers["weft-cni-exit-code"]).toBe("0");

    // Bad environment: the plugin's own error (code 4).
    const bad = await post(s.socketPath, { CNI_COMMAND: "ADD" }, JSON.stringify(conf));
    expect(JSON.parse(bad.body)).toMatchObject({ code: 4, msg: expect.stringContaining("CNI_CONTAINERID is required for ADD") });

    expect(seen.map((o) => [o.command, o.exitCode, o.code])).toEqual([
      ["VERSION", 0, undefined],
      ["STATUS", 1, 50],
      ["DEL", 0, undefined],
      ["ADD", 1, 4],
    ]);
    expect(seen.every((o) => o.seconds >= 0 && o.seconds < 5)).toBe(true);
  });

  it("refuses a request over the size limit with a CNI error, whether declared or streamed", async () => {
    const s = await serve({ maxRequestBytes: 1000 });
    const big = await post(s.socketPath, { CNI_COMMAND: "VERSION" }, "x".repeat(2000));
    expect(big.status).toBe(413);
    expect(JSON.parse(big.body)).toMatchObject({ code: 7, msg: expect.stringContaining("larger than the 1000-byte limit") });
    // Chunked: no length up front; refused once the limit is crossed.
    const chunk = "x".repeat(600);
    const chunked = `POST /cni/v1 HTTP/1.1\r\nHost: weftd\r\nTransfer-Encoding: chunked\r\n\r\n${(600).toString(16)}\r\n${chunk}\r\n${(600).toString(16)}\r\n${chunk}\r\n0\r\n\r\n`;
    const c = await raw(s.socketPath, chunked);
    expect(c.status).toBe(413);
    expect(JSON.parse(c.body).code).toBe(7);
  });

  it("gives a client that hangs a clear error and closes it, while other requests are served", async () => {
    const s = await serve({ receiveTimeoutMs: 300 });
    const started = Date.now();
    // Headers promise 100 bytes; 10 arrive; the client then hangs (keeps its end open).
    const hung = raw(s.socketPath, "POST /cni/v1 HTTP/1.1\r\nHost: weftd\r\nContent-Length: 100\r\n\r\nCNI_COMMAN", { end: false });
    const silent = raw(s.socketPath, "", { end: false }); // connects and sends nothing
    const v = await post(s.socketPath, { CNI_COMMAND: "VERSION" }, "{}");
    expect(v.status).toBe(200);
    expect(Date.now() - started).toBeLessThan(300);
    const h = await hung;
    expect(h.status).toBe(408);
    expect(JSON.parse(h.body)).toMatchObject({ code: 5, msg: expect.stringContaining("not received completely within 300 ms") });
    expect(Date.now() - started).toBeLessThan(5000);
    const q = await silent;
    expect(q.status).toBe(408);
  });

  it("a request waiting for the IPAM lock does not hold up the others", async () => {
    const s = await serve();
    const dir = join(root, "locked");
    mkdirSync(join(dir, "ipam", "cbr0"), { recursive: true });
    // A live holder: this process, with a token no request has.
    const lock = join(dir, "ipam", "cbr0", "weft.lock");
    const stat = readFileSync(`/proc/${process.pid}/stat`, "utf8");
    const start = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
    writeFileSync(lock, `${process.pid} ${start} someone-else\n`);
    const conf = { cniVersion: "1.1.0", name: "cbr0", type: "weft", subnetFile: join(dir, "x.env"), ipam: { dataDir: join(dir, "ipam") } };
    let delDone = false;
    const del = post(s.socketPath, { CNI_COMMAND: "DEL", CNI_CONTAINERID: "c2", CNI_IFNAME: "eth0" }, JSON.stringify(conf)).then((a) => {
      delDone = true;
      return a;
    });
    await new Promise((r) => setTimeout(r, 100));
    const v = await post(s.socketPath, { CNI_COMMAND: "VERSION" }, "{}");
    expect(v.status).toBe(200);
    expect(delDone, JSON.stringify(await Promise.race([del, Promise.resolve("pending")]))).toBe(false);
    rmSync(lock);
    expect((await del).headers["weft-cni-exit-code"]).toBe("0");
    expect(readdirSync(join(dir, "ipam", "cbr0")).filter((f) => f === "weft.lock")).toEqual([]);
  });

  it("answers unknown endpoints and malformed bodies with CNI errors", async () => {
    const s = await serve();
    const nf = await raw(s.socketPath, "GET /nope HTTP/1.1\r\nHost: weftd\r\n\r\n");
    expect(nf.status).toBe(404);
    expect(JSON.parse(nf.body).msg).toContain("POST /cni/v1");
    const body = "PATH=/bin\0\0{}";
    const bad = await raw(s.socketPath, `POST /cni/v1 HTTP/1.1\r\nHost: weftd\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body)).toMatchObject({ code: 6, msg: expect.stringContaining("not a CNI_* variable") });
    const st = await raw(s.socketPath, "GET /cni/v1/status HTTP/1.1\r\nHost: weftd\r\n\r\n");
    expect(JSON.parse(st.body)).toEqual({ inFlight: 0, served: 0 });
  });

  it("requestCniSocket speaks for the shim, and tells a missing socket, a refusing one and one that never answers apart", async () => {
    const s = await serve();
    const v = await requestCniSocket(s.socketPath, { env: { CNI_COMMAND: "VERSION" }, stdin: '{"cniVersion":"1.0.0"}' });
    expect(v).toMatchObject({ status: 200, exitCode: 0 });
    expect(JSON.parse(v.body).supportedVersions).toContain("1.1.0");
    expect(JSON.parse((await requestCniSocket(s.socketPath, "status")).body)).toEqual({ inFlight: 0, served: 1 });

    const dir = join(root, "client");
    mkdirSync(dir);
    await expect(requestCniSocket(join(dir, "none.sock"), "status")).rejects.toMatchObject({ code: "ENOENT" });
    // A socket file nobody listens on (as in the stale-socket test above).
    const gone = createNetServer();
    await new Promise<void>((r) => gone.listen(join(dir, "tmp.sock"), r));
    linkSync(join(dir, "tmp.sock"), join(dir, "stale.sock"));
    await new Promise<void>((r) => gone.close(() => r()));
    await expect(requestCniSocket(join(dir, "stale.sock"), "status")).rejects.toMatchObject({ code: "ECONNREFUSED" });
    // Accepts and never answers: a hung agent.
    const mute = createNetServer(() => undefined);
    await new Promise<void>((r) => mute.listen(join(dir, "mute.sock"), r));
    try {
      const t0 = Date.now();
      await expect(requestCniSocket(join(dir, "mute.sock"), "status", 200)).rejects.toMatchObject({ code: "ETIMEDOUT", message: expect.stringContaining("did not answer within 200 ms") });
      expect(Date.now() - t0).toBeLessThan(2000);
    } finally {
      mute.close();
    }
  });

  it("close() waits for requests in flight up to its bound, then closes their connections and removes the socket", async () => {
    const dir = join(root, "drain");
    mkdirSync(join(dir, "bin"), { recursive: true });
    writeFileSync(join(dir, "subnet.env"), "FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n");
    writeFileSync(join(dir, "bin", "hungbr"), "#!/bin/false\n", { mode: 0o755 });
    // The delegate (played by the runner) never returns: an ADD stuck on a hung process.
    let entered!: () => void;
    const inDelegate = new Promise<void>((r) => (entered = r));
    const runner = {
      run: () => {
        entered();
        return new Promise<never>(() => undefined);
      },
      spawn: () => {
        throw new Error("no processes");
      },
    };
    const s = new CniServer({ socketPath: join(dir, "cni.sock"), deps: { runner, host: noKernel, container: () => noKernel } });
    await s.start();
    const conf = { cniVersion: "1.0.0", name: "cbr0", type: "weft", subnetFile: join(dir, "subnet.env"), dataDir: join(dir, "data"), delegate: { type: "hungbr" } };
    const add = requestCniSocket(s.socketPath, { env: { CNI_COMMAND: "ADD", CNI_CONTAINERID: "c1", CNI_IFNAME: "eth0", CNI_NETNS: "/run/netns/c1", CNI_PATH: join(dir, "bin") }, stdin: JSON.stringify(conf) }, 10_000);
    const settled = add.then(
      () => "answered",
      (err: NodeJS.ErrnoException) => err.code,
    );
    await inDelegate;
    const t0 = Date.now();
    await s.close(300);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(Date.now() - t0).toBeLessThan(3000);
    // The shim sees the connection closed without an answer: CNI error 11, the runtime retries.
    expect(await settled).toBe("ECONNRESET");
    expect(existsSync(s.socketPath)).toBe(false);
    await s.close(); // a second close is the same, finished close
  });
});
