/**
 * Plain argument parsing for weftctl (no dependency): `--name value`, `--name=value`, `--bool`. Every command
 * declares its options; anything else is a one-line usage error that names the flag and points at --help.
 */

/** A command-line mistake: printed as one line, exit code 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

export interface OptionDef {
  readonly kind: "string" | "bool";
  readonly help: string;
  /** Shown in help as `--name <placeholder>`. */
  readonly placeholder?: string;
  readonly default?: string;
}

export type OptionDefs = Readonly<Record<string, OptionDef>>;

export interface ParsedOptions {
  readonly values: Readonly<Record<string, string | boolean | undefined>>;
  /** Options given on the command line (as opposed to defaults). */
  readonly given: ReadonlySet<string>;
}

export function parseOptions(command: string, defs: OptionDefs, argv: readonly string[]): ParsedOptions {
  const values: Record<string, string | boolean | undefined> = {};
  const given = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const m = /^--([a-z0-9-]+)(?:=(.*))?$/s.exec(arg);
    if (!m) throw new UsageError(`weftctl ${command}: unexpected argument ${JSON.stringify(arg)}; see weftctl ${command} --help`);
    const name = m[1]!;
    const def = defs[name];
    if (!def) throw new UsageError(`weftctl ${command}: unknown flag --${name}; see weftctl ${command} --help`);
    if (def.kind === "bool") {
      if (m[2] !== undefined && !/^(true|false)$/.test(m[2])) throw new UsageError(`weftctl ${command}: --${name}=${m[2]} is not a boolean: use true or false`);
      values[name] = m[2] === undefined || m[2] === "true";
    } else {
      const v = m[2] ?? argv[++i];
      if (v === undefined || v === "") throw new UsageError(`weftctl ${command}: flag --${name} needs a value`);
      values[name] = v;
    }
    given.add(name);
  }
  for (const [name, def] of Object.entries(defs)) {
    if (!given.has(name)) values[name] = def.kind === "bool" ? false : def.default;
  }
  return { values, given };
}

export function optionsHelp(defs: OptionDefs): string {
  return Object.entries(defs)
    .map(([name, def]) => {
      const flag = `  --${name}${def.kind === "string" ? ` <${def.placeholder ?? "value"}>` : ""}`;
      return flag.padEnd(34) + def.help + (def.default !== undefined ? ` (default ${def.default})` : "");
    })
    .join("\n");
}
