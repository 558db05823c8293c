/**
 * ProcessRunner decorators for tests:
 *   - NetnsRunner runs every command inside a network namespace (`ip netns exec <ns> file args...`), so
 *     code under test that runs iptables/nft never touches the root namespace's tables;
 *   - RecordingRunner keeps the argv of every command it passes on, so a test can tell whether a pass wrote
 *     anything (e.g. no `iptables-restore` or `nft -f` ran).
 */
import type { ChildHandle, ProcessRunner, RunOptions, RunResult, SpawnOptions } from "@weft/kernel";

export class NetnsRunner implements ProcessRunner {
  constructor(
    private readonly inner: ProcessRunner,
    readonly netns: string,
  ) {}

  run(file: string, args: readonly string[], options?: RunOptions): Promise<RunResult> {
    return this.inner.run("ip", ["netns", "exec", this.netns, file, ...args], options);
  }

  spawn(file: string, args: readonly string[], options?: SpawnOptions): ChildHandle {
    return this.inner.spawn("ip", ["netns", "exec", this.netns, file, ...args], options);
  }
}

export class RecordingRunner implements ProcessRunner {
  readonly commands: string[][] = [];

  constructor(private readonly inner: ProcessRunner) {}

  run(file: string, args: readonly string[], options?: RunOptions): Promise<RunResult> {
    this.commands.push([file, ...args]);
    return this.inner.run(file, args, options);
  }

  spawn(file: string, args: readonly string[], options?: SpawnOptions): ChildHandle {
    this.commands.push([file, ...args]);
    return this.inner.spawn(file, args, options);
  }

  /** Commands that change rules: restores (not --test) and nft -f (not -c). */
  writes(): string[][] {
    return this.commands.filter(
      ([file, ...args]) => (file!.endsWith("-restore") && !args.includes("--test")) || (file!.endsWith("nft") && args.includes("-f") && !args.includes("-c")),
    );
  }
}
