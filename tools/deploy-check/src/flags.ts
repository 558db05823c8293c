/**
 * weftd's flags as its `--help` prints them. @weft/daemon exports no API (it is an application), so the
 * manifest's arguments are checked against the built `weftd` itself: `weftd <args> --help` exits 0 only when its
 * real parser accepts every argument, and the help text gives each flag's kind (`<value>` or boolean) and default.
 */

export interface HelpFlag {
  readonly takesValue: boolean;
  /** The default as printed, when the help shows one. */
  readonly default?: string;
}

/** Flags listed by `weftd --help`: lines `  --name [<value>]   help text [(default X)]`. */
export function parseHelp(help: string): Map<string, HelpFlag> {
  const out = new Map<string, HelpFlag>();
  for (const line of help.split("\n")) {
    const m = /^ {2}--([a-z0-9-]+)( <value>)?\s{2,}.*?(?:\(default ([^)]*)\))?$/.exec(line);
    if (!m) continue;
    out.set(m[1]!, { takesValue: m[2] !== undefined, ...(m[3] !== undefined ? { default: m[3] } : {}) });
  }
  return out;
}

/**
 * The value each flag ends up with for `args` (`--name value`, `--name=value`, bare booleans): the last one
 * given, else the help's default. Throws for a flag the help does not list.
 */
export function effectiveFlags(args: readonly string[], help: ReadonlyMap<string, HelpFlag>): Map<string, string> {
  const out = new Map<string, string>();
  for (const [name, f] of help) if (f.default !== undefined) out.set(name, f.default);
  for (let i = 0; i < args.length; i++) {
    const m = /^--?([a-z0-9-]+)(?:=(.*))?$/s.exec(args[i]!);
    if (!m) throw new Error(`argument ${JSON.stringify(args[i])} is not a flag`);
    const f = help.get(m[1]!);
    if (!f) throw new Error(`--${m[1]} is not a weftd flag`);
    const value = m[2] ?? (f.takesValue ? args[++i] : "true");
    if (value === undefined) throw new Error(`--${m[1]} needs a value`);
    out.set(m[1]!, value);
  }
  return out;
}
