/**
 * The two ProcessRunner implementations side by side: the same programs, the same results and the same error
 * codes and messages (they share one classification, process-errors.ts; this proves the glue around it). The
 * programs are `node -e` scripts (process.execPath), so nothing but Node is needed.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isWeftError } from "@weft/core";
import { afterAll, describe, expect, it } from "vitest";
import { ExecaRunner } from "./execa-runner.js";
import type { ProcessRunner } from "./process.js";
import { SpawnRunner } from "./spawn-runner.js";

const NODE = process.execPath;
const dir = mkdtempSync(join(tmpdir(), "weft-runner-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function failure(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (err) {
    if (isWeftError(err)) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error("expected a rejection");
}

describe.each([
  ["ExecaRunner", () => new ExecaRunner()],
  ["SpawnRunner", () => new SpawnRunner()],
  ["SpawnRunner (blocking)", () => new SpawnRunner({ blocking: true })],
] as Array<[string, () => ProcessRunner]>)("%s", (_name, make) => {
  const runner = make();

  it("returns stdout and stderr whole, final newline included, as UTF-8", async () => {
    const r = await runner.run(NODE, ["-e", "process.stdout.write('out ✓\\n'); process.stderr.write('err\\n')"]);
    expect(r).toEqual({ exitCode: 0, stdout: "out ✓\n", stderr: "err\n" });
  });

  it("returns output larger than 1 MiB whole (spawnSync's default limit)", async () => {
    const r = await runner.run(NODE, ["-e", "process.stdout.write('x'.repeat(3 << 20))"]);
    expect(r.stdout.length).toBe(3 << 20);
  });

  it("passes input on stdin, adds env to this process's environment, and runs in cwd", async () => {
    const script = "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(JSON.stringify([s,process.env.WEFT_T,!!process.env.PATH,process.cwd()])))";
    const r = await runner.run(NODE, ["-e", script], { input: "line 1\nline 2\n", env: { WEFT_T: "yes" }, cwd: dir });
    expect(JSON.parse(r.stdout)).toEqual(["line 1\nline 2\n", "yes", true, dir]);
  });

  it("without input, stdin is closed (a reader sees end of file at once)", async () => {
    const r = await runner.run(NODE, ["-e", "let n=0;process.stdin.on('data',d=>n+=d.length).on('end',()=>process.stdout.write(n+'\\n'))"], { timeoutMs: 10_000 });
    expect(r.stdout).toBe("0\n");
  });

  it("a non-zero exit is PROCESS_FAILED with the command, the exit code and stderr's first non-empty line", async () => {
    const f = await failure(runner.run(NODE, ["-e", "process.stderr.write('\\n  first problem  \\nsecond\\n'); process.exit(3)"]));
    expect(f.code).toBe("PROCESS_FAILED");
    expect(f.message).toMatch(/ -e .*: exit code 3: first problem$/);
  });

  it("with reject: false a non-zero exit resolves with its code and output", async () => {
    const r = await runner.run(NODE, ["-e", "console.log('partial'); process.exit(7)"], { reject: false });
    expect(r).toEqual({ exitCode: 7, stdout: "partial\n", stderr: "" });
  });

  it("a missing program is PROCESS_MISSING naming the Debian package, even with reject: false", async () => {
    for (const opts of [{}, { reject: false }, { input: "x\n" }]) {
      const f = await failure(runner.run("/nonexistent/weft/ip", ["-V"], opts));
      expect(f).toEqual({
        code: "PROCESS_MISSING",
        message: 'program "/nonexistent/weft/ip" not found on PATH; install it: apt-get install -y --no-install-recommends iproute2',
      });
    }
    const f = await failure(runner.run("weft-no-such-program", []));
    expect(f.message).toBe('program "weft-no-such-program" not found on PATH; install the Debian package that provides "weft-no-such-program" or fix PATH');
  });

  it("a timeout kills the process and is PROCESS_FAILED saying so; with reject: false the exit code is 128", async () => {
    const f = await failure(runner.run(NODE, ["-e", "setTimeout(() => {}, 60000)"], { timeoutMs: 300 }));
    expect(f.code).toBe("PROCESS_FAILED");
    expect(f.message).toMatch(/: timed out after 300 ms$/);
    const r = await runner.run(NODE, ["-e", "setTimeout(() => {}, 60000)"], { timeoutMs: 300, reject: false });
    expect(r.exitCode).toBe(128);
  });

  it("an argument that cannot be passed (a NUL byte) rejects with a TypeError, a caller's bug, before anything runs", async () => {
    await expect(runner.run(NODE, ["-e", "0", "a\0b"])).rejects.toThrow(TypeError);
  });

  it("death by a signal is PROCESS_FAILED naming the signal", async () => {
    const f = await failure(runner.run(NODE, ["-e", "process.kill(process.pid, 'SIGKILL')"]));
    expect(f.code).toBe("PROCESS_FAILED");
    expect(f.message).toMatch(/: killed by SIGKILL$/);
  });

  it("a program that exits without reading a large stdin is not an error of ours", async () => {
    const r = await runner.run(NODE, ["-e", "process.exit(0)"], { input: "x".repeat(4 << 20) });
    expect(r.exitCode).toBe(0);
  });

  it("spawn: output goes to files, exited reports the code, kill signals only that process", async () => {
    const out = join(dir, `${_name.replace(/\W+/g, "-")}.out`);
    const c = runner.spawn(NODE, ["-e", "console.log('hello'); console.error('oops'); process.exitCode = 4"], { stdoutFile: out, stderrFile: out });
    expect(c.pid).toBeGreaterThan(0);
    expect(await c.exited).toEqual({ code: 4, signal: null });
    expect(readFileSync(out, "utf8").split("\n").sort()).toEqual(["", "hello", "oops"]);
    c.kill(); // reaped: a no-op, never a signal to a recycled PID

    const long = runner.spawn(NODE, ["-e", "setTimeout(() => {}, 60000)"], { env: { WEFT_T: "1" } });
    long.kill("SIGTERM");
    expect(await long.exited).toEqual({ code: null, signal: "SIGTERM" });
  });

  it("spawn detached: the child leads its own session (outlives the agent's process group), still killable and reaped", async () => {
    const out = join(dir, `${_name.replace(/\W+/g, "-")}.detached`);
    // Prints its session id (from /proc/self/stat, field 6) and waits.
    const script = "const f = require('fs').readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' '); console.log(f[3]); setTimeout(() => {}, 60000)";
    const c = runner.spawn(NODE, ["-e", script], { detached: true, stdoutFile: out, stderrFile: out });
    const deadline = Date.now() + 5000;
    while (!readFileSync(out, "utf8").includes("\n") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(readFileSync(out, "utf8").trim()).toBe(String(c.pid));
    c.kill("SIGTERM");
    expect(await c.exited).toEqual({ code: null, signal: "SIGTERM" });
  });

  it("spawn of a missing program throws PROCESS_MISSING at once", () => {
    let caught: unknown;
    try {
      runner.spawn("/nonexistent/weft/etcd", []);
    } catch (err) {
      caught = err;
    }
    expect(isWeftError(caught) && caught.code).toBe("PROCESS_MISSING");
    expect((caught as Error).message).toContain("etcd-server");
  });
});
