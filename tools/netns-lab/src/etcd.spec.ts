import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { etcdHealthy, etcdHttp, freeLoopbackPorts } from "./etcd.js";

describe("freeLoopbackPorts", () => {
  it("returns distinct ports that can be bound on 127.0.0.1", async () => {
    const ports = await freeLoopbackPorts(3);
    expect(new Set(ports).size).toBe(3);
    for (const port of ports) {
      const srv = createServer();
      await new Promise<void>((resolve, reject) => {
        srv.once("error", reject);
        srv.listen(port, "127.0.0.1", () => resolve());
      });
      await new Promise<void>((r) => srv.close(() => r()));
    }
  });
});

describe("etcdHealthy", () => {
  it("is false when nothing listens", async () => {
    const [port] = await freeLoopbackPorts(1);
    expect(await etcdHealthy(`http://127.0.0.1:${port}`, 300)).toBe(false);
    expect(await etcdHealthy("unix:///nonexistent/dir/x:23790", 300)).toBe(false);
  });
});

describe("etcdHttp", () => {
  it("refuses an https endpoint without the client TLS files, naming what is missing", async () => {
    const [port] = await freeLoopbackPorts(1);
    await expect(etcdHttp(`https://127.0.0.1:${port}`, "/health")).rejects.toThrow(/https endpoint needs the client TLS files \(EtcdServer\.tls\)/);
    expect(await etcdHealthy(`https://127.0.0.1:${port}`, 300)).toBe(false);
  });
});
