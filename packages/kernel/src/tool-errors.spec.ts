import { WeftError } from "@weft/core";
import { describe, expect, it } from "vitest";
import { KernelError } from "./port.js";
import { asKernelError, classifyToolMessage, debianPackageOf, firstLine, isToolMissing, processMissingError, toolError } from "./tool-errors.js";

describe("tool errors", () => {
  it("firstLine skips blank lines and trims", () => {
    expect(firstLine("\n   \n  first one  \nsecond")).toBe("first one");
    expect(firstLine(" \n\n")).toBe("");
  });

  it("names the Debian package of a missing program, by name or path", () => {
    expect(debianPackageOf("/usr/sbin/ethtool")).toBe("ethtool");
    expect(processMissingError("ip6tables-save").message).toContain("apt-get install -y --no-install-recommends iptables");
    expect(processMissingError("frobnicate").message).toContain('provides "frobnicate"');
  });

  it("recognises a missing program behind `ip netns exec` (exit 255) and a shell (exit 127)", () => {
    expect(isToolMissing({ exitCode: 255, stderr: 'exec of "nft" failed: No such file or directory\n' })).toBe(true);
    expect(isToolMissing({ exitCode: 127, stderr: "sh: 1: nft: not found" })).toBe(true);
    expect(isToolMissing({ exitCode: 1, stderr: "Error: No such file or directory" })).toBe(false);
    const err = toolError("nft", ["-f", "-"], { exitCode: 255, stdout: "", stderr: 'exec of "nft" failed: No such file or directory' });
    expect(err.code).toBe("PROCESS_MISSING");
    expect(err.message).toContain("nftables");
  });

  it.each([
    ["Cannot get device feature info: No such device", "KERNEL_NOT_FOUND"],
    ["iptables-restore: line 3 failed: File exists", "KERNEL_EXISTS"],
    ["Error: Could not process rule: Invalid argument", "KERNEL_INVALID"],
    ["Another app is currently holding the xtables lock. Resource temporarily unavailable", "KERNEL_TRANSIENT"],
    ["iptables-restore v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied", "KERNEL_PERMISSION"],
    ["something nobody has seen", "KERNEL_FAILED"],
  ] as const)("classifies %j as %s", (text, code) => {
    expect(classifyToolMessage(text)).toBe(code);
  });

  it("tries the tool's own rules before the shared ones", () => {
    const rules = [[/Unable to access interface: Protocol not supported/, "KERNEL_NOT_FOUND"]] as const;
    const text = "Unable to access interface: Protocol not supported";
    expect(classifyToolMessage(text)).toBe("KERNEL_UNSUPPORTED");
    expect(classifyToolMessage(text, rules)).toBe("KERNEL_NOT_FOUND");
  });

  it("builds one line naming the command, the exit code and the first stderr line (stdout when stderr is empty)", () => {
    const err = toolError("ethtool", ["--features", "weft.1", "rx", "off"], { exitCode: 1, stdout: "", stderr: "\nCannot get device features: No such device\nmore" });
    expect(err).toBeInstanceOf(KernelError);
    expect(err.code).toBe("KERNEL_NOT_FOUND");
    expect(err.message).toBe("ethtool --features weft.1 rx off exited 1: Cannot get device features: No such device");
    const quiet = toolError("x", [], { exitCode: 2, stdout: "Error: bad thing\n", stderr: "" }, { command: "x (3 rules)", suffix: " (payload line 2)" });
    expect(quiet.message).toBe("x (3 rules) exited 2: Error: bad thing (payload line 2)");
    expect(quiet.code).toBe("KERNEL_INVALID");
  });

  it("asKernelError keeps a KernelError and wraps anything else as KERNEL_FAILED with its cause", () => {
    const k = new KernelError("KERNEL_EXISTS", "there");
    expect(asKernelError(k, "ctx")).toBe(k);
    const missing = processMissingError("ethtool");
    const wrapped = asKernelError(missing, "ethtool --features d f on");
    expect(wrapped.code).toBe("KERNEL_FAILED");
    expect(wrapped.message).toBe(`ethtool --features d f on: ${missing.message}`);
    expect(wrapped.cause).toBe(missing);
    expect(asKernelError(new WeftError("PROCESS_FAILED", "boom"), "c").message).toBe("c: boom");
  });
});
