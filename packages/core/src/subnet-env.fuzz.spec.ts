/**
 * Properties of subnet.env (issue 15): parseSubnetEnv never throws anything but a ConfigError (one bounded,
 * escaped line) and never hangs; what formatSubnetEnv writes parses back to the same values; an accepted file
 * formats and parses back to the same values.
 */
import { fc, fuzz, hostileString } from "@weft/fuzz";
import { describe, expect, it } from "vitest";
import { ConfigError } from "./errors.js";
import { IPNet } from "./ip.js";
import { type SubnetEnv, formatSubnetEnv, parseSubnetEnv } from "./subnet-env.js";

const VARS = ["FLANNEL_NETWORK", "FLANNEL_SUBNET", "FLANNEL_IPV6_NETWORK", "FLANNEL_IPV6_SUBNET", "FLANNEL_MTU", "FLANNEL_IPMASQ"];

function attempt(text: string): SubnetEnv | ConfigError {
  try {
    return parseSubnetEnv(text);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw new Error(`threw ${String(err)}, not a ConfigError`);
    expect(err.message).not.toMatch(/[\n\r\u001b]/);
    expect(err.message.length).toBeLessThan(300);
    return err;
  }
}

const project = (e: SubnetEnv) => ({
  network: e.network?.toString(),
  subnet: e.subnet?.network.toString(),
  ipv6Network: e.ipv6Network?.toString(),
  ipv6Subnet: e.ipv6Subnet?.network.toString(),
  mtu: e.mtu,
  ipMasq: e.ipMasq,
});

const v4net = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255), fc.integer({ min: 8, max: 30 })).map(([a, b, c, d, p]) => IPNet.parse(`${a}.${b}.${c}.${d}/${p}`, false));
const v6net = fc
  .tuple(fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 }), fc.integer({ min: 16, max: 126 }))
  .map(([groups, p]) => IPNet.parse(`${groups.map((g) => g.toString(16)).join(":")}/${p}`, false));
const values = fc.record(
  {
    network: v4net,
    subnet: v4net,
    ipv6Network: v6net,
    ipv6Subnet: v6net,
    mtu: fc.integer({ min: 68, max: 65535 }),
    ipMasq: fc.boolean(),
  },
  { requiredKeys: ["mtu", "ipMasq"] },
);

const line = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(fc.constantFrom(...VARS), fc.oneof(hostileString(40), fc.constantFrom("198.19.1.1/24", "2001:2::1/64", "1450", "true", '"198.19.0.0/16"', "198.19.0.0/16,10.0.0.0/8"))).map(([k, v]) => `${k}=${v}`) },
  { weight: 1, arbitrary: hostileString(80) },
);
const text = fc.oneof({ weight: 6, arbitrary: fc.array(line, { maxLength: 8 }).map((ls) => ls.join("\n")) }, { weight: 1, arbitrary: hostileString(200) });

describe("subnet.env fuzz", () => {
  it("hostile text: only ConfigError, one bounded line; an accepted file round-trips", () => {
    let accepted = 0;
    fuzz("subnet.env parse", text, (t) => {
      const env = attempt(t);
      if (env instanceof ConfigError || env.mtu === undefined || env.ipMasq === undefined) return;
      accepted++;
      const again = attempt(
        formatSubnetEnv({
          ...(env.network ? { network: env.network } : {}),
          ...(env.subnet ? { subnet: env.subnet.network } : {}),
          ...(env.ipv6Network ? { ipv6Network: env.ipv6Network } : {}),
          ...(env.ipv6Subnet ? { ipv6Subnet: env.ipv6Subnet.network } : {}),
          mtu: env.mtu,
          ipMasq: env.ipMasq,
        }),
      );
      expect(again).not.toBeInstanceOf(ConfigError);
      expect(project(again as SubnetEnv)).toEqual(project(env));
    });
    expect(accepted).toBeGreaterThan(0);
  }, 60_000);

  it("what formatSubnetEnv writes parses back to the same values", () => {
    fuzz("subnet.env format round trip", values, (v) => {
      const env = attempt(formatSubnetEnv(v));
      expect(env).not.toBeInstanceOf(ConfigError);
      expect(project(env as SubnetEnv)).toEqual({
        network: v.network?.toString(),
        subnet: v.subnet?.toString(),
        ipv6Network: v.ipv6Network?.toString(),
        ipv6Subnet: v.ipv6Subnet?.toString(),
        mtu: v.mtu,
        ipMasq: v.ipMasq,
      });
    });
  }, 60_000);
});
