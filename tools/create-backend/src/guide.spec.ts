/**
 * docs/writing-a-backend.md is tested code. Every TypeScript block in it carries a marker in the line above:
 *   <!-- tested: <example>/<file> -->   a file or the lines an author adds, built and run here (or, for the gre
 *                                        example, the exact text tools/create-backend/src/link-kind.spec.ts runs);
 *   <!-- excerpt: <path> -->            a quote of a Weft source: its pieces (split at `// ...` lines) occur in
 *                                        that file, in order, line for line;
 *   <!-- summary: <path> -->            an outline of interfaces: every member it lists is declared there.
 * The process-backed example (section 3b) is generated with `npm run create-backend` OUT of the workspace,
 * given the guide's files and lines, and run through the conformance suite on the fakes (FakeManagedDaemons on
 * a FakeDaemonTable), teardown of every kind included, plus its own test; then the same package without the
 * guide's `retract("tund")` must FAIL the suite's teardown check.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ExecaRunner } from "@weft/kernel";
import { describe, expect, it } from "vitest";
// @ts-expect-error: a plain .mjs script without type declarations
import { WORKSPACE_ROOT } from "./create-backend.mjs";
import { insertBefore, linkFileDependencies } from "./generated.spec-helper.js";

const runner = new ExecaRunner();
const GUIDE_PATH = join(WORKSPACE_ROOT, "docs", "writing-a-backend.md");
const guide = readFileSync(GUIDE_PATH, "utf8");

interface Block {
  readonly marker: "tested" | "excerpt" | "summary" | undefined;
  readonly name: string;
  readonly lang: string;
  readonly code: string;
}

/** Every fenced block of the guide, with the marker comment on the line above it (if any). */
function blocks(text: string): Block[] {
  const out: Block[] = [];
  const re = /(?:<!-- (tested|excerpt|summary): (\S+) -->\n)?^```(\w*)\n([\s\S]*?)^```$/gm;
  for (const m of text.matchAll(re)) out.push({ marker: m[1] as Block["marker"], name: m[2] ?? "", lang: m[3] ?? "", code: m[4]!.replace(/\n$/, "") });
  return out;
}

/** The pieces of a block between `// ...` lines. */
const pieces = (code: string): string[] => code.split(/\n\/\/ \.\.\.\n/);

const tested = (name: string): string => {
  const b = blocks(guide).filter((x) => x.marker === "tested" && x.name === name);
  expect(b, `the guide has one block marked "tested: ${name}"`).toHaveLength(1);
  return b[0]!.code;
};

/** Lines trimmed, blank ones dropped: how an excerpt is compared with its source. */
const norm = (s: string): string[] =>
  s
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);

/** The text of a template literal `const NAME = \`...\`` in `source`, as the program sees it (`NAME` bound). */
function templateValue(source: string, name: string, bindings: Record<string, string>): string {
  const head = `const ${name} = \``;
  const start = source.indexOf(head);
  expect(start, `link-kind.spec.ts has no ${name}`).toBeGreaterThanOrEqual(0);
  let end = start + head.length;
  for (;;) {
    end = source.indexOf("`", end);
    if (source[end - 1] !== "\\") break;
    end++;
  }
  const body = source.slice(start + head.length, end);
  return new Function(...Object.keys(bindings), `return \`${body}\`;`)(...Object.values(bindings)) as string;
}

describe("docs/writing-a-backend.md", () => {
  it("marks every TypeScript block as tested code, an excerpt or a summary", () => {
    const ts = blocks(guide).filter((b) => b.lang === "ts");
    expect(ts.length).toBeGreaterThan(10);
    expect(ts.filter((b) => b.marker === undefined).map((b) => b.code.split("\n")[0])).toEqual([]);
  });

  it("quotes Weft's sources as they are", () => {
    const excerpts = blocks(guide).filter((b) => b.marker === "excerpt");
    expect(excerpts.length).toBeGreaterThanOrEqual(4);
    for (const b of excerpts) {
      const source = norm(readFileSync(join(WORKSPACE_ROOT, b.name), "utf8"));
      let from = 0;
      for (const piece of pieces(b.code)) {
        const want = norm(piece);
        let at = -1;
        for (let i = from; i + want.length <= source.length && at < 0; i++) if (want.every((l, j) => source[i + j] === l)) at = i;
        expect(at, `the guide quotes ${b.name}, which no longer has (after line ${from}):\n${piece}`).toBeGreaterThanOrEqual(0);
        from = at + want.length;
      }
    }
  });

  it("outlines interfaces with members their source declares", () => {
    const outlined: string[] = [];
    for (const b of blocks(guide).filter((x) => x.marker === "summary")) {
      const source = readFileSync(join(WORKSPACE_ROOT, b.name), "utf8");
      for (const m of b.code.matchAll(/^interface (\w+)[^{]*\{\n([\s\S]*?)^\}/gm)) {
        const body = new RegExp(`export interface ${m[1]}\\b[^{]*\\{([\\s\\S]*?)\\n\\}`).exec(source)?.[1];
        expect(body, `${b.name} declares no interface ${m[1]}`).toBeDefined();
        const members = [...m[2]!.matchAll(/^\s+(\w+)(\?)?[(:<]/gm)];
        outlined.push(m[1]!);
        expect(members.length).toBeGreaterThan(3);
        for (const [, member, optional] of members) {
          expect(body, `${m[1]}.${member}${optional ?? ""} in the guide`).toMatch(new RegExp(`^\\s+(readonly )?${member}${optional ? "\\?" : ""}[(:<]`, "m"));
        }
      }
    }
    expect(outlined).toEqual(["BackendModule", "Backend", "Datapath"]);
  });

  it("shows the tunnel example exactly as link-kind.spec.ts generates and runs it", () => {
    const spec = readFileSync(join(WORKSPACE_ROOT, "tools", "create-backend", "src", "link-kind.spec.ts"), "utf8");
    expect(tested("gre/src/gre-kind.ts")).toBe(templateValue(spec, "GRE_KIND_SOURCE", {}).replace(/\n$/, ""));
    expect(tested("gre/src/gre.spec.ts")).toBe(templateValue(spec, "GRE_SPEC_SOURCE", { NAME: "gre-tunnel" }).replace(/\n$/, ""));
    // The lines the test inserts, per file, in order: the guide's pieces for that file.
    const inserted = (variable: string) =>
      [...spec.matchAll(new RegExp(`insertBefore\\(${variable}, (?:"[^"]*"|'[^']*'), ("(?:[^"\\\\]|\\\\.)*"|'(?:[^'\\\\]|\\\\.)*')\\)`, "g"))].map((m) =>
        (new Function(`return ${m[1]};`)() as string).replace(/\n+$/, ""),
      );
    expect(inserted("index")).toHaveLength(2);
    expect(pieces(tested("gre/src/index.ts"))).toEqual(inserted("index"));
    expect(inserted("backendFile")).toHaveLength(3);
    expect(pieces(tested("gre/src/gre-tunnel-backend.ts"))).toEqual(inserted("backendFile"));
  });

  it(
    "builds the process-backed example from the guide out of the workspace; it passes the conformance suite on the fakes, and fails it without its teardown",
    async () => {
      const NAME = "tund";
      const work = mkdtempSync(join(tmpdir(), "weft-guide-tund-"));
      try {
        const target = join(work, NAME);
        const gen = await runner.run("npm", ["run", "-s", "create-backend", "--", NAME, "--dir", target], { cwd: WORKSPACE_ROOT, reject: false, timeoutMs: 60_000 });
        expect(gen.exitCode, gen.stderr).toBe(0);
        expect(linkFileDependencies(target)).toEqual(expect.arrayContaining(["@weft/core", "@weft/kernel", "@weft/reconcile", "@weft/backend-testkit", "@weft/kernel-testing"]));
        const src = (f: string) => join(target, "src", f);

        // The guide's new files, as they are in the guide.
        for (const f of ["tund-daemon.ts", "fake-tund.spec-helper.ts", "tund.spec.ts"]) writeFileSync(src(f), `${tested(`tund/src/${f}`)}\n`);
        // The guide's lines, where the guide says they go (the anchors are the generated sample's).
        const edit = (file: string, anchors: readonly string[]) => {
          const parts = pieces(tested(`tund/src/${file}`));
          expect(parts, `the guide's blocks for ${file}`).toHaveLength(anchors.length);
          parts.forEach((p, i) => insertBefore(src(file), anchors[i]!, p.startsWith("import ") ? `${p}\n\n` : `${p}\n`));
        };
        edit("index.ts", ["const tundModule", "    // One backend instance per agent container."]);
        edit("tund-backend.ts", ["@injectable()", "    await this.datapath.flush();", '    this.datapath.retract("local");']);
        edit("tund.conformance.spec.ts", ['import backend from "./index.js";', "  invalidConfigs: ["]);
        writeFileSync(
          join(target, "vitest.weft-source.config.ts"),
          `import { mergeConfig } from "vitest/config";
import base from "./vitest.config.ts";
export default mergeConfig(base, { resolve: { conditions: ["@weft/source"] }, ssr: { resolve: { conditions: ["@weft/source"] } } });
`,
        );
        const vitest = async (...args: string[]) => {
          const r = await runner.run(process.execPath, [join(target, "node_modules", "vitest", "vitest.mjs"), "run", "--config", "vitest.weft-source.config.ts", "--reporter", "verbose", ...args], {
            cwd: target,
            env: { WEFT_TIER: "unit", WEFT_REPORT_DIR: "", CI: process.env.CI ?? "" },
            reject: false,
            timeoutMs: 300_000,
          });
          return { exitCode: r.exitCode, out: (r.stdout + r.stderr).replace(/\x1b\[[0-9;]*m/g, "") };
        };

        const good = await vitest();
        expect(good.exitCode, good.out).toBe(0);
        expect(good.out).toContain(`src/${NAME}.conformance.spec.ts`);
        expect(good.out).toContain(`src/${NAME}.spec.ts`);
        expect(good.out).toContain("teardown removes everything the backend created");
        expect(Number(/Tests\s+(\d+) passed/.exec(good.out)?.[1])).toBeGreaterThan(20);
        expect(good.out).not.toMatch(/Tests\s.*(failed|skipped)|^\s*[×↓]/m);

        // Without the guide's retract, teardown leaves tund running (and its TUN): the suite must say so.
        const backendFile = src(`${NAME}-backend.ts`);
        const retract = '    this.datapath.retract("tund");\n';
        expect(readFileSync(backendFile, "utf8")).toContain(retract);
        writeFileSync(backendFile, readFileSync(backendFile, "utf8").replace(retract, ""));
        const bad = await vitest(`src/${NAME}.conformance.spec.ts`, "-t", "teardown");
        expect(bad.exitCode, bad.out).not.toBe(0);
        expect(bad.out).toMatch(/FAIL .*teardown removes everything the backend created/);
        expect(bad.out).toContain("weft-tund");
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    },
    360_000,
  );
});
