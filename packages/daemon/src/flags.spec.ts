import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isWeftError } from "@weft/core";
import { describe, expect, it } from "vitest";
import { checkFlagPaths, helpText, parseFlags, parseFlagsWithNotes, redactedFlags } from "./flags.js";

const err = (argv: string[], env: Record<string, string> = {}) => {
  try {
    parseFlags(argv, env);
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error("expected an error");
};

describe("weftd flags", () => {
  it("has Weft's defaults", () => {
    const f = parseFlags([]);
    expect(f["etcd-prefix"]).toBe("/weft.io/network");
    expect(f["subnet-file"]).toBe("/run/weft/subnet.env");
    expect(f["kube-annotation-prefix"]).toBe("weft.io");
    expect(f["resync-interval"]).toBe(10);
    expect(f["iptables-forward-rules"]).toBe(true);
    expect(f.iface).toEqual([]);
    expect(f["cni-socket"]).toBe(""); // cni.sock next to --subnet-file: /run/weft/cni.sock (cni-server.ts)
    expect(parseFlags(["--cni-socket=off"])["cni-socket"]).toBe("off");
  });
  it("accepts flanneld's forms: --x v, --x=v, -x v, bare booleans, repeatable lists, comma lists", () => {
    const f = parseFlags(["--iface", "eth0", "-iface=198.18.0.1", "--ip-masq", "--etcd-endpoints=http://a:2379,http://b:2379", "--iptables-forward-rules=false", "-kube-subnet-mgr"]);
    expect(f.iface).toEqual(["eth0", "198.18.0.1"]);
    expect(f["ip-masq"]).toBe(true);
    expect(f["kube-subnet-mgr"]).toBe(true);
    expect(f["iptables-forward-rules"]).toBe(false);
    expect(f["etcd-endpoints"]).toEqual(["http://a:2379", "http://b:2379"]);
  });
  it("never takes --backend-module from the environment (it loads code; an environment can come from a ConfigMap)", () => {
    const { flags, notes } = parseFlagsWithNotes([], { WEFTD_BACKEND_MODULE: "/tmp/evil.js" });
    expect(flags["backend-module"]).toEqual([]);
    expect(notes).toEqual(["WEFTD_BACKEND_MODULE is ignored: --backend-module is taken only from the command line (it loads code)"]);
    expect(parseFlags(["--backend-module", "./mine.js"], { WEFTD_BACKEND_MODULE: "/tmp/evil.js" })["backend-module"]).toEqual(["./mine.js"]);
  });

  it("reads WEFTD_* from the environment; the command line wins", () => {
    const f = parseFlags(["--etcd-prefix", "/cli"], { WEFTD_ETCD_PREFIX: "/env", WEFTD_IP_MASQ: "true", WEFTD_IFACE: "eth1,eth2", WEFTD_HEALTHZ_PORT: "8081" });
    expect(f["etcd-prefix"]).toBe("/cli");
    expect(f["ip-masq"]).toBe(true);
    expect(f.iface).toEqual(["eth1", "eth2"]);
    expect(f["healthz-port"]).toBe(8081);
  });
  it("rejects bad input with one line naming the flag, the value and the fix", () => {
    expect(err(["--resync-interval", "0"])).toBe("--resync-interval 0 is out of range: must be between 1 and 3600");
    expect(err(["--cni-socket", "run/cni.sock"])).toBe('--cni-socket "run/cni.sock" must be an absolute path of at most 107 bytes (a unix socket\'s limit), or "off"');
    expect(err(["--cni-socket", `/${"x".repeat(120)}`])).toContain("at most 107 bytes");
    expect(err(["--healthz-port", "http"])).toContain('--healthz-port "http" is not an integer');
    expect(err([], { WEFTD_IP_MASQ: "maybe" })).toContain('WEFTD_IP_MASQ "maybe" is not a boolean');
    expect(err(["--ifce", "eth0"])).toContain("unknown flag --ifce: did you mean --iface?");
    expect(err(["--iface-regx", "eth.*"])).toContain("did you mean --iface-regex?");
    expect(err(["--frobnicate"])).toBe("unknown flag --frobnicate: see --help");
    expect(err(["--iface"])).toContain("--iface needs a value");
    expect(err(["eth0"])).toContain("unexpected argument");
    expect(err(["--subnet-lease-renew-margin", "1440"])).toContain("out of range");
    expect(err(["--etcd-certfile", "/c.pem"])).toContain("--etcd-keyfile must be given together");
    expect(err(["--log-level", "loud"])).toContain("--log-level");
  });
  it("accepts flanneld's other flags so a Flannel DaemonSet's arguments carry over, saying what Weft does instead", () => {
    const { flags, notes } = parseFlagsWithNotes(["--iptables-resync", "5", "-v", "4", "--ip-blackhole-route", "--kube-subnet-mgr", "--ip-masq"]);
    expect(flags["ip-blackhole-route"]).toBe(true);
    expect(flags["log-level"]).toBe("debug");
    expect(notes).toHaveLength(2);
    expect(notes[0]).toContain("--resync-interval");
    expect(parseFlagsWithNotes(["-v", "2"]).flags["log-level"]).toBe("info");
    expect(parseFlagsWithNotes(["-v", "9", "--log-level", "warn"]).flags["log-level"]).toBe("warn");
  });

  it("never echoes the etcd password, nor credentials written into an endpoint URL", () => {
    const f = parseFlags(["--etcd-password", "s3cret", "--etcd-endpoints", "https://weft:s3cret@198.18.0.5:2379", "--kube-api-url", "https://admin:s3cret@198.18.0.6:6443"]);
    expect(JSON.stringify(redactedFlags(f))).not.toContain("s3cret");
    expect(redactedFlags(f)["etcd-endpoints"]).toEqual(["https://198.18.0.5:2379"]);
    expect(redactedFlags(f)["kube-api-url"]).toBe("https://198.18.0.6:6443");
    expect(helpText()).not.toContain("s3cret");
    expect(helpText()).toContain("--etcd-endpoints");
  });
});

describe("weftd flags: issue 15", () => {
  it("#12 --healthz-ip must be an IP address (not a name resolved later with a resolver error)", () => {
    expect(err(["--healthz-ip=garbage"])).toBe('--healthz-ip "garbage" is not an IP address: use an address of this node such as 127.0.0.1, or 0.0.0.0 / :: for all');
    expect(err([], { WEFTD_HEALTHZ_IP: "localhost" })).toContain("--healthz-ip");
    expect(parseFlags(["--healthz-ip=::1"])["healthz-ip"]).toBe("::1");
    expect(parseFlags(["--healthz-ip=127.0.0.1"])["healthz-ip"]).toBe("127.0.0.1");
  });

  it("#12 a huge value is never echoed whole, and control characters are escaped", () => {
    const huge = "x".repeat(1_400_000);
    for (const argv of [[`--healthz-port=${huge}`], [`--log-level=${huge}`], [`--v=${huge}`], [`--ip-masq=${huge}`], [huge], [`--${"a".repeat(100_000)}`]]) {
      const msg = err(argv);
      expect(msg.length, argv[0]!.slice(0, 20)).toBeLessThan(300);
    }
    expect(err(["--log-level=a\nb\u001b[31m"])).not.toMatch(/[\n\u001b]/);
  });

  it("#12 integers beyond the safe range are refused, never rounded", () => {
    expect(err(["--healthz-port=99999999999999999999999"])).toContain("out of range");
    expect(err(["--etcd-lease-ttl=1" + "0".repeat(400)])).toContain("out of range");
  });

  it("#10 --public-ip / --public-ipv6 must be addresses of their family", () => {
    expect(err(["--public-ip=2001:2::1"])).toContain("--public-ip");
    expect(err(["--public-ipv6=198.18.0.1"])).toContain("--public-ipv6");
    expect(parseFlags(["--public-ip=198.18.0.1"])["public-ip"]).toBe("198.18.0.1");
  });
});

describe("checkFlagPaths (issue 15 #2)", () => {
  const pathErr = (argv: string[]): string => {
    try {
      checkFlagPaths(parseFlags(argv));
    } catch (e) {
      expect(isWeftError(e, "CONFIG_INVALID")).toBe(true);
      return (e as Error).message;
    }
    throw new Error("expected an error");
  };

  it("refuses --state-dir and --subnet-file on /proc or /sys at once, naming the flag, creating nothing", () => {
    expect(pathErr(["--state-dir=/proc/x", "--subnet-file=/tmp/weft-flags-never/subnet.env"])).toMatch(/^--state-dir: "\/proc\/x" is on \/proc, a kernel pseudo filesystem: choose/);
    expect(pathErr(["--state-dir=/sys/x", "--subnet-file=/tmp/weft-flags-never/subnet.env"])).toContain("--state-dir");
    const dir = mkdtempSync(join(tmpdir(), "weft-flags-"));
    try {
      expect(pathErr([`--state-dir=${dir}/state`, "--subnet-file=/proc/x/subnet.env"])).toMatch(/^--subnet-file: "\/proc\/x\/subnet.env" is on \/proc/);
      expect(pathErr([`--state-dir=${dir}/state`, `--subnet-file=${dir}`])).toContain("is a directory");
      expect(existsSync("/proc/x")).toBe(false);
      expect(existsSync("/tmp/weft-flags-never")).toBe(false);
      checkFlagPaths(parseFlags([`--state-dir=${dir}/a/b`, `--subnet-file=${dir}/run/subnet.env`]));
      expect(existsSync(`${dir}/a/b`)).toBe(true);
      expect(existsSync(`${dir}/run`)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("weftd flags: a flag where a value belongs (found by the flags fuzz)", () => {
  it("`-v --etcd-password=x` is refused without echoing the password", () => {
    const msg = err(["-v", "--etcd-password=s3cret-pw"]);
    expect(msg).toBe("flag --v needs a value, but the next argument is the flag --etcd-password: write --v=<value>");
    expect(msg).not.toContain("s3cret-pw");
  });
});
