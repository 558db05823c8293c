/**
 * Properties of everything a container runtime hands weft-cni (issue 15): the CNI_* environment, the network
 * configuration on stdin (as text and as values, including prevResult, runtimeConfig, args, the IPAM section and
 * the delegate section), and the results it prints. The answer is always a well-formed result or a CNI error with
 * a spec code and one bounded line (never a raw exception, never 999 for bad input), within the kit's hang bound;
 * results read back (prevResult) as they were written, for every cniVersion.
 *
 * The parsers are driven directly; `runCni` runs in process with ports that refuse any kernel use, so every path
 * here stays on files in a temporary directory: the configs' subnetFile and data directories always point there
 * (a hostile *text* config, which could name real paths, only goes through the pure decoder and validator).
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fc, fuzz, fuzzAsync, fuzzRuns, hostileJson, hostileJsonText, hostileString } from "@weft/fuzz";
import type { KernelPort, ProcessRunner } from "@weft/kernel";
import { afterAll, describe, expect, it } from "vitest";
import { decodeConfig, ifnameProblem, parseEnv, parseNetConf } from "./config.js";
import { CniError } from "./errors.js";
import { type PluginDeps, runCni } from "./plugin.js";
import { type CniResult, convertResult, parsePrevResult, SUPPORTED_VERSIONS } from "./result.js";

// tmpfs where there is one: the delegate mode saves each config with fsync, which costs a disk flush elsewhere.
const root = mkdtempSync(join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "weft-cni-fuzz-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const bin = join(root, "bin");
mkdirSync(bin);
for (const p of ["fakebr", "bridge"]) {
  writeFileSync(join(bin, p), "#!/bin/false\n");
  chmodSync(join(bin, p), 0o755);
}
const subnetFile = join(root, "subnet.env");
writeFileSync(subnetFile, "FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.6.1/24\nFLANNEL_IPV6_NETWORK=2001:2::/48\nFLANNEL_IPV6_SUBNET=2001:2:0:6::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n");
const plainFile = join(root, "plain");
writeFileSync(plainFile, "x");

/** The codes the CNI spec defines (0-99 reserved; these are the well-known ones). 999 is never right for input. */
const SPEC_CODES = [1, 2, 3, 4, 5, 6, 7, 11, 50, 51];
const COMMANDS = ["ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC"];

function expectCniError(err: unknown, codes: readonly number[]): void {
  if (!(err instanceof CniError)) throw err; // fast-check reports the raw exception and its input
  expect(codes, err.message).toContain(err.code);
  expectOneLine(err.message);
}

function expectOneLine(msg: string): void {
  expect(msg).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/);
  expect(msg.length).toBeLessThan(800);
}

// Valid-looking values, so that a good share of cases is accepted and the checks after validation run.
const validName = fc.stringMatching(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,15}$/);
const validIfname = fc.stringMatching(/^[a-z][a-z0-9]{0,6}$/);
// A small pool of container ids, so that ADD, CHECK and DEL meet the same container across cases.
const validCid = fc.oneof(fc.constantFrom("c0ffee01", "c0ffee02", "c0ffee03"), fc.stringMatching(/^[a-f0-9]{8,64}$/));
const opt = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined, freq: 3 });

/**
 * Each arbitrary comes in two modes: all values valid (so requests get through validation, and what lies behind it
 * runs), or each value hostile one time in five. Half of the cases are of each mode.
 */
const modes = <T>(make: (often: <V>(valid: fc.Arbitrary<V>, hostile: fc.Arbitrary<unknown>) => fc.Arbitrary<unknown>) => fc.Arbitrary<T>): fc.Arbitrary<T> =>
  fc.oneof(
    make((valid) => valid),
    make((valid, hostile) => fc.oneof({ weight: 4, arbitrary: valid }, { weight: 1, arbitrary: hostile })),
  );

const envArb = modes((often) =>
  fc.record(
    {
      CNI_COMMAND: often(fc.constantFrom(...COMMANDS), hostileString(20)),
      CNI_CONTAINERID: often(validCid, hostileString(40)),
      CNI_NETNS: often(fc.constantFrom("/run/netns/fuzz", "/proc/self/ns/net"), fc.oneof(fc.constantFrom("", plainFile, root, "/proc/self/ns/mnt", "netns"), hostileString(40))),
      CNI_IFNAME: often(validIfname, fc.oneof(fc.constantFrom("-eth0", "$(id)", "éth0", "eth%d", "a b", ".", "eth0123456789abc"), hostileString(20))),
      CNI_ARGS: often(fc.constantFrom("", "IgnoreUnknown=1;K8S_POD_NAME=p"), hostileString(40)),
      CNI_PATH: often(fc.constantFrom(bin, `/nonexistent:${bin}`), hostileString(30)),
    },
    { requiredKeys: ["CNI_COMMAND"] },
  ) as fc.Arbitrary<Record<string, string | undefined>>,
);

// A canonical result (what the plugin builds) with plausible values.
const v4Addr = fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 254 })).map(([a, b]) => `198.19.${a}.${b}`);
const v6Addr = fc.integer({ min: 1, max: 0xffff }).map((n) => `2001:2:0:6::${n.toString(16)}`);
const mac = fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 6, maxLength: 6 }).map((b) => b.map((x) => x.toString(16).padStart(2, "0")).join(":"));
const routeArb = fc.oneof(
  fc.record({ dst: fc.constantFrom("198.19.0.0/16", "0.0.0.0/0", "198.18.0.0/15"), gw: opt(v4Addr), mtu: opt(fc.integer({ min: 68, max: 9000 })), priority: opt(fc.nat(1000)) }, { requiredKeys: ["dst"] }),
  fc.record({ dst: fc.constantFrom("2001:2::/48", "::/0"), gw: opt(v6Addr), table: opt(fc.nat(255)) }, { requiredKeys: ["dst"] }),
);
const resultArb: fc.Arbitrary<CniResult> = fc
  .record(
    {
      interfaces: opt(fc.array(fc.record({ name: validIfname, mac: opt(mac), mtu: opt(fc.integer({ min: 68, max: 9000 })), sandbox: opt(fc.constantFrom("/run/netns/x", "/proc/1/ns/net")) }, { requiredKeys: ["name"] }), { maxLength: 3 })),
      ips: opt(fc.array(fc.record({ address: fc.oneof(v4Addr.map((a) => `${a}/24`), v6Addr.map((a) => `${a}/64`)), gateway: opt(fc.oneof(v4Addr, v6Addr)), interface: opt(fc.nat(2)) }, { requiredKeys: ["address"] }), { maxLength: 3 })),
      routes: opt(fc.array(routeArb, { maxLength: 4 })),
      dns: opt(fc.record({ nameservers: opt(fc.array(v4Addr, { maxLength: 2 })), domain: opt(fc.constantFrom("cluster.local")), search: opt(fc.array(fc.constantFrom("svc.cluster.local"), { maxLength: 1 })) }, { requiredKeys: [] })),
    },
    { requiredKeys: [] },
  )
  .map((r) => JSON.parse(JSON.stringify({ cniVersion: "1.1.0", ...r })) as CniResult);

// Data directories: the test's own, or values that validation must refuse before touching anything.
const badDirs = fc.constantFrom("relative/dir", "/proc/weft-fuzz", "/sys/weft-fuzz", plainFile, join(plainFile, "x"));
const confArb = modes((often) => {
  const rangeArb = fc.record(
    {
      subnet: often(fc.constantFrom("198.19.6.0/24", "198.19.7.0/28", "2001:2:0:6::/64", "198.19.6.0/31"), hostileString(20)),
      rangeStart: opt(often(v4Addr, hostileString(10))),
      rangeEnd: opt(often(v4Addr, hostileString(10))),
      gateway: opt(often(v4Addr, hostileString(10))),
    },
    { requiredKeys: ["subnet"] },
  );
  const ipamArb = fc.record(
    {
      type: opt(often(fc.constant("host-local"), hostileString(10))),
      ranges: opt(often(fc.array(fc.array(rangeArb, { minLength: 1, maxLength: 2 }), { minLength: 1, maxLength: 2 }), hostileJson())),
      routes: opt(often(fc.array(fc.record({ dst: often(fc.constantFrom("198.18.0.0/15", "0.0.0.0/0", "2001:2::/48"), hostileString(12)), gw: opt(often(v4Addr, hostileJson())) }, { requiredKeys: ["dst"] }), { maxLength: 3 }), hostileJson())),
    },
    { requiredKeys: [] },
  );
  return fc
    .record(
      {
        cniVersion: often(fc.constantFrom(...SUPPORTED_VERSIONS, "1.0.0", "1.1.0"), hostileJson()),
        name: often(validName, fc.oneof(hostileString(30), hostileJson())),
        bridge: opt(often(fc.constantFrom("cni0", "wbr0"), hostileString(20))),
        isDefaultGateway: opt(often(fc.boolean(), hostileJson())),
        hairpinMode: opt(often(fc.boolean(), hostileJson())),
        mtu: opt(often(fc.integer({ min: 68, max: 9000 }), hostileJson())),
        ipMasq: opt(often(fc.constant(false), hostileJson())),
        delegate: fc.option(often(fc.record({ type: opt(fc.constantFrom("fakebr", "bridge")), hairpinMode: opt(fc.boolean()) }, { requiredKeys: [] }), hostileJson()), { nil: undefined, freq: 2 }),
        dns: opt(often(fc.record({ nameservers: fc.array(v4Addr, { maxLength: 2 }) }), hostileJson())),
        prevResult: opt(often(fc.tuple(resultArb, fc.constantFrom(...SUPPORTED_VERSIONS)).map(([r, v]) => convertResult(r, v)), hostileJson())),
        runtimeConfig: opt(often(fc.jsonValue({ maxDepth: 3 }), hostileJson())),
        args: opt(often(fc.jsonValue({ maxDepth: 3 }), hostileJson())),
        "cni.dev/valid-attachments": opt(often(fc.array(fc.record({ containerID: validCid, ifname: validIfname }), { maxLength: 3 }), hostileJson())),
        ipam: ipamArb,
        subnetFile: often(fc.constant(subnetFile), fc.constantFrom(join(root, "missing.env"), root, "/dev/null", "/dev/zero", plainFile)),
        dataDir: often(fc.constant(join(root, "data")), badDirs),
        ipamDataDir: often(fc.constant(join(root, "ipam")), badDirs),
      },
      { requiredKeys: ["name", "ipam", "subnetFile", "dataDir", "ipamDataDir"] },
    )
    .map(({ ipamDataDir, ...c }) => ({ type: "weft", ...c, ipam: { ...c.ipam, dataDir: ipamDataDir } }) as Record<string, unknown>);
});

/**
 * JSON text for any value, iteratively: the hostile values nest deeper than JSON.stringify's recursion survives
 * (a runtime can still send such text; JSON.parse reads it).
 */
function jsonText(value: unknown): string {
  const out: string[] = [];
  const stack: unknown[] = [value];
  const CLOSE = Symbol("close");
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === "object" && v !== null && (v as { [CLOSE]?: string })[CLOSE] !== undefined) {
      out.push((v as { [CLOSE]: string })[CLOSE]);
    } else if (Array.isArray(v)) {
      out.push("[");
      stack.push({ [CLOSE]: "]" });
      for (let i = v.length - 1; i >= 0; i--) {
        stack.push(v[i] === undefined ? null : v[i]);
        if (i > 0) stack.push({ [CLOSE]: "," });
      }
    } else if (typeof v === "object" && v !== null) {
      const entries = Object.entries(v).filter(([, x]) => x !== undefined);
      out.push("{");
      stack.push({ [CLOSE]: "}" });
      for (let i = entries.length - 1; i >= 0; i--) {
        stack.push(entries[i]![1]);
        stack.push({ [CLOSE]: `${i > 0 ? "," : ""}${JSON.stringify(entries[i]![0])}:` });
      }
    } else {
      out.push(JSON.stringify(v) ?? "null");
    }
  }
  return out.join("");
}

const NAME_RULE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

describe("CNI input (fuzz)", () => {
  it("the CNI_* environment: accepted, or code 4 with one line", () => {
    fuzz("cni: parseEnv on hostile CNI_* variables", envArb, (env) => {
      let out;
      try {
        out = parseEnv(env);
      } catch (err) {
        expectCniError(err, [4]);
        return;
      }
      expect(COMMANDS).toContain(out.command);
      if (out.command === "ADD" || out.command === "DEL" || out.command === "CHECK") {
        expect(ifnameProblem(out.ifname)).toBeUndefined();
        expect(out.containerID).toMatch(NAME_RULE);
        if (out.command !== "DEL") expect(out.netns.startsWith("/")).toBe(true);
      }
    });
  }, 60_000);

  it("the network config as text: accepted, or code 1, 6 or 7 with one line", () => {
    const keys = ["cniVersion", "name", "type", "bridge", "mtu", "ipam", "delegate", "dataDir", "subnetFile", "isDefaultGateway", "hairpinMode", "ipMasq", "dns", "prevResult", "runtimeConfig", "args", "cni.dev/valid-attachments"];
    fuzz("cni: decodeConfig + parseNetConf on hostile JSON text", hostileJsonText(keys), (text) => {
      try {
        parseNetConf(decodeConfig(text));
      } catch (err) {
        expectCniError(err, [1, 6, 7]);
      }
    });
  }, 60_000);

  it("the network config as values: accepted (and then sound), or code 1 or 7 with one line", () => {
    let accepted = 0;
    let runs = 0;
    fuzz("cni: parseNetConf on hostile values", confArb, (raw) => {
      runs++;
      let conf;
      try {
        conf = parseNetConf(raw);
      } catch (err) {
        expectCniError(err, [1, 7]);
        return;
      }
      accepted++;
      expect(conf.name).toMatch(NAME_RULE);
      expect(ifnameProblem(conf.bridge)).toBeUndefined();
      expect(conf.dataDir.startsWith("/")).toBe(true);
      expect(conf.ipam.dataDir.startsWith("/")).toBe(true);
      expect(SUPPORTED_VERSIONS as readonly string[]).toContain(conf.cniVersion);
    });
    // Valid configs must be a good share, or the checks after validation test nothing.
    expect(accepted / runs).toBeGreaterThan(0.1);
  }, 60_000);

  it("keys match as Go's encoding/json (Flannel's plugin) matches them: any case, the last in the text winning", () => {
    const variant = (k: string, how: number) => (how % 3 === 0 ? k.toUpperCase() : how % 3 === 1 ? k.toLowerCase() : k);
    fuzz("cni: config keys case-insensitive, last wins", fc.tuple(confArb, fc.array(fc.nat(), { minLength: 20, maxLength: 20 }), fc.jsonValue({ maxDepth: 2 }).filter((v) => v !== null)), ([raw, hows, decoy]) => {
      let want;
      try {
        want = parseNetConf(decodeConfig(jsonText(raw)));
      } catch {
        return; // the values decide; the other properties cover refusals
      }
      // The same object with its keys in other cases, each after a decoy of the same key in the original case:
      // the decoy comes first in the text, so the variant (the last) must win. (Not before a null: for Go a null
      // leaves the field as it was.)
      const text = `{${Object.entries(raw)
        .filter(([, v]) => v !== undefined)
        .map(([k, v], i) => `${v === null ? "" : `${JSON.stringify(k)}:${jsonText(decoy)},`}${JSON.stringify(variant(k, hows[i % hows.length]!))}:${jsonText(v)}`)
        .join(",")}}`;
      const got = parseNetConf(decodeConfig(text));
      expect({ ...got, raw: undefined }).toEqual({ ...want, raw: undefined });
    });
  }, 60_000);

  it("prevResult of any shape: read, or code 7 with one line", () => {
    const prev = fc.oneof(hostileJson(), fc.tuple(resultArb, fc.constantFrom(...SUPPORTED_VERSIONS), hostileJson()).map(([r, v, junk]) => ({ ...convertResult(r, v), ips: junk })));
    fuzz("cni: parsePrevResult on hostile values", prev, (p) => {
      try {
        parsePrevResult(p);
      } catch (err) {
        expectCniError(err, [7]);
      }
    });
  }, 60_000);

  it("results round-trip: what convertResult prints for a version, parsePrevResult reads back", () => {
    fuzz("cni: result round trip through every cniVersion", fc.tuple(resultArb, fc.constantFrom(...SUPPORTED_VERSIONS)), ([r, v]) => {
      const printed = JSON.parse(JSON.stringify(convertResult(r, v))) as Record<string, unknown>;
      expect(printed.cniVersion).toBe(v);
      const back = parsePrevResult(printed);
      const routes = (r.routes ?? []).map((x) => ({ dst: x.dst, ...(x.gw !== undefined ? { gw: x.gw } : {}) }));
      if (v === "0.1.0" || v === "0.2.0") {
        // Legacy: the first address of each family, its family's routes.
        const fam = (a: string) => (a.includes(":") ? "6" : "4");
        const firsts = ["4", "6"].map((f) => (r.ips ?? []).find((ip) => fam(ip.address) === f)).filter((x) => x !== undefined);
        expect(back.ips).toEqual(firsts.map((ip) => ({ address: ip.address, ...(ip.gateway ? { gateway: ip.gateway } : {}) })));
        expect(back.routes).toEqual(["4", "6"].flatMap((f) => (firsts.some((ip) => fam(ip.address) === f) ? routes.filter((x) => fam(x.dst) === f) : [])));
        return;
      }
      const v11 = v === "1.1.0";
      expect(back.cniVersion).toBe(v);
      expect(back.interfaces).toEqual(r.interfaces && r.interfaces.length > 0 ? r.interfaces.map((i) => ({ ...i, ...(v11 ? {} : { mtu: undefined }) })).map((i) => JSON.parse(JSON.stringify(i))) : undefined);
      expect(back.ips).toEqual(r.ips && r.ips.length > 0 ? r.ips : undefined);
      expect(back.routes).toEqual(routes.length > 0 ? routes : undefined);
      expect(back.dns).toEqual(r.dns ?? {});
    });
  }, 60_000);

  it("runCni end to end: a result or a spec error code (never 999), one line, never a hang", async () => {
    const result = { cniVersion: "1.0.0", ips: [{ address: "198.19.6.9/24" }] };
    const runner = {
      run: (_file: string, _args: string[], opts: { env?: Record<string, string> }) =>
        Promise.resolve({ exitCode: 0, stdout: opts.env?.CNI_COMMAND === "ADD" ? JSON.stringify(result) : "", stderr: "" }),
      spawn: () => {
        throw new Error("no processes");
      },
    } as unknown as ProcessRunner;
    const noKernel = new Proxy({} as KernelPort, {
      get: (_t, p) => () => {
        throw new Error(`kernel.${String(p)} reached: a case got past validation into the node`);
      },
    });
    // Direct mode stops at the namespace check: past it the node's bridge and sysctls would be touched.
    const deps: PluginDeps = { runner, host: noKernel, container: () => noKernel, checkNetns: () => "is refused by this test (no namespaces here)" };
    // A fifth of the kit's cases (2,000 by default, 200,000 in the long run): each case is a whole CNI request with
    // its file work (IPAM lock and reservations, delegate configs saved with fsync); the parsers it drives each
    // get the full count in the properties above.
    const numRuns = Math.max(1, Math.floor(fuzzRuns() / 5));
    const outcomes = new Map<string, number>();
    await fuzzAsync("cni: runCni on hostile environment and config", fc.tuple(envArb, confArb), async ([env, conf]) => {
      const out = await runCni(env, jsonText(conf), deps);
      const key = out.exitCode === 0 ? `${env.CNI_COMMAND} ok` : `code ${(JSON.parse(out.stdout) as { code: number }).code}`;
      outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
      expect(out.stdout === "" || out.stdout.endsWith("\n")).toBe(true);
      expect(out.stdout.trimEnd()).not.toContain("\n");
      if (out.exitCode === 0) {
        if (env.CNI_COMMAND === "ADD") expect(JSON.parse(out.stdout)).toEqual(result); // only the (fake) delegate adds here
        else if (env.CNI_COMMAND === "VERSION") expect(JSON.parse(out.stdout)).toMatchObject({ supportedVersions: [...SUPPORTED_VERSIONS] });
        else expect(out.stdout).toBe("");
        return;
      }
      expect(out.exitCode).toBe(1);
      const e = JSON.parse(out.stdout) as { cniVersion: unknown; code: unknown; msg: unknown };
      expect(typeof e.cniVersion).toBe("string");
      expect(SPEC_CODES, String(e.msg)).toContain(e.code);
      expect(typeof e.msg).toBe("string");
      expectOneLine(e.msg as string);
    }, { numRuns });
    // Every command answered successfully in a share of the cases (ADD through the delegate), and every code the
    // validation gives showed up: the property reached past the first check.
    for (const k of ["ADD ok", "DEL ok", "CHECK ok", "GC ok", "STATUS ok", "VERSION ok", "code 1", "code 4", "code 7"]) expect(outcomes.get(k) ?? 0, `${k}: ${JSON.stringify([...outcomes])}`).toBeGreaterThan(0);
  }, 120_000);
});
