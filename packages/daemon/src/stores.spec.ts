import { ConfigError, MemoryLogger } from "@weft/core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseFlags } from "./flags.js";
import { createSubnetManager } from "./stores.js";

const dir = mkdtempSync(join(tmpdir(), "weftd-stores-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const flags = (...extra: string[]) => parseFlags(["--subnet-file", join(dir, "subnet.env"), "--state-dir", join(dir, "state"), ...extra]);

async function refusal(...extra: string[]): Promise<unknown> {
  try {
    const store = await createSubnetManager(flags(...extra), new MemoryLogger());
    await store.manager.close?.();
    return undefined;
  } catch (e) {
    return e;
  }
}

describe("createSubnetManager (etcd)", () => {
  it("refuses at start, with one line, a lease TTL etcd would answer with OUT_OF_RANGE forever", async () => {
    const err = await refusal("--etcd-endpoints", "http://127.0.0.1:1", "--etcd-lease-ttl", "9000000001");
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/--etcd-lease-ttl 9000000001 is outside etcd's lease TTL range: use a whole number of seconds from 1 to 9000000000/);
    expect(await refusal("--etcd-endpoints", "http://127.0.0.1:1", "--etcd-lease-ttl", "9000000000")).toBeUndefined();
  });

  it("refuses ftp:// and garbage endpoints at start instead of retrying them forever", async () => {
    for (const [endpoint, msg] of [
      ["ftp://127.0.0.1:2379", /etcd endpoint "ftp:\/\/127.0.0.1:2379" \(--etcd-endpoints\) has the unsupported scheme/],
      ["garbage", /etcd endpoint "garbage" \(--etcd-endpoints\) is not host:port/],
    ] as const) {
      const err = await refusal("--etcd-endpoints", endpoint);
      expect(err, endpoint).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(msg);
    }
  });
});
