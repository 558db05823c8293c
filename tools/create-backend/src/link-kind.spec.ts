/**
 * A third-party backend that needs a link kind Weft does not know, end to end on the fake kernel: generated
 * with `npm run create-backend` into a directory OUTSIDE the workspace, given a GRE-style tunnel kind from its
 * own package (a LinkKindDefinition in `linkKinds`, no edit to Weft), and run through the conformance suite —
 * every check, teardown of every kind it declares included — plus a test of its own that the tunnel exists
 * while it runs and is gone after teardown.
 *
 * How the generated package finds Weft without a registry or a build: its package.json names this checkout's
 * packages as `file:` devDependencies; the test links them into its node_modules as `npm install` does for
 * `file:` directories (symlinks), and runs vitest with the workspace's `@weft/source` condition so the
 * packages resolve to their sources (a published backend resolves their dist/ instead). tsyringe and vitest are
 * this checkout's own copies, so the backend, the agent and the kit share one tsyringe. gre itself is not in
 * this machine's kernel (`ip link add ... type gre`: "Unknown device type"), so the fake is the only kernel here.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ExecaRunner } from "@weft/kernel";
import { describe, expect, it } from "vitest";
// @ts-expect-error: a plain .mjs script without type declarations
import { WORKSPACE_ROOT } from "./create-backend.mjs";
import { insertBefore, linkFileDependencies } from "./generated.spec-helper.js";

const runner = new ExecaRunner();
const NAME = "gre-tunnel";

/** The tunnel kind, as the backend's author writes it (src/gre-kind.ts of the generated package). */
const GRE_KIND_SOURCE = `/**
 * EXTENSION POINT: a link kind Weft does not define. GRE: \`ip link add NAME type gre ikey K okey K ttl T\`.
 * Registered by the module's \`linkKinds\` (index.ts); the agent gives it to the kernel adapter, the fake
 * kernel and the links reconciler, so the backend declares \`{ kind: "gre", attrs: {...} }\` like any link.
 */
import type { LinkKindDefinition } from "@weft/core";

export const GRE_LINK_KIND: LinkKindDefinition = {
  kind: "gre",
  createArgs(link, check) {
    const key = link.attrs?.key;
    if (key === undefined) throw new Error("attrs.key is required: the GRE key both ends use");
    const k = check.integer("link.attrs.key", Number(key), 1, 0xffffffff);
    return ["ikey", k, "okey", k, "ttl", check.integer("link.attrs.ttl", Number(link.attrs?.ttl ?? 64), 1, 255)];
  },
  read(info) {
    const key = typeof info.ikey === "string" ? Number(info.ikey.split(".").reduce((n, b) => n * 256 + Number(b), 0)) : undefined;
    return { attrs: { ...(key !== undefined ? { key } : {}), ...(typeof info.ttl === "number" ? { ttl: info.ttl } : {}) } };
  },
  incompatibility(desired, actual) {
    const d = desired.attrs ?? {};
    const a = actual.attrs ?? {};
    if (d.key !== a.key) return \`key \${String(a.key)} != \${String(d.key)}\`;
    if ((d.ttl ?? 64) !== (a.ttl ?? 64)) return \`ttl \${String(a.ttl)} != \${String(d.ttl ?? 64)}\`;
    return undefined;
  },
  fake: {
    // The kernel refuses a second GRE device with the same key (and no endpoints): File exists.
    create(link, links) {
      if (links.some((l) => l.kind === "gre" && l.attrs?.key === link.attrs?.key)) return { refuse: { code: "KERNEL_EXISTS", message: "RTNETLINK answers: File exists" } };
      return { fields: { attrs: { key: Number(link.attrs?.key), ttl: Number(link.attrs?.ttl ?? 64) } }, mtu: link.mtu ?? 1476 };
    },
  },
};

/** The tunnel this backend keeps on every node. */
export const GRE_TUNNEL = { name: "weft-gre0", kind: "gre", attrs: { key: 7, ttl: 64 }, up: true } as const;
`;

/** A test of the generated backend's own: the tunnel is there while it runs and gone after teardown. */
const GRE_SPEC_SOURCE = `import { TEST_TOPOLOGY, startTestAgent, testNetConf } from "@weft/backend-testkit";
import { describe, expect, it } from "vitest";
import backend from "./index.js";

describe("the gre tunnel kind", () => {
  it("creates the tunnel with its attributes, adopts it on restart, and removes it at teardown", async () => {
    const n = TEST_TOPOLOGY.node(1);
    const agent = await startTestAgent({
      backends: [backend],
      config: testNetConf({ Type: "${NAME}" }, "v4"),
      iface: { address: n.address },
      leases: { subnet: n.subnet, nodeName: n.nodeName },
    });
    const tunnel = async () => (await agent.kernel.listLinks()).find((l) => l.name === "weft-gre0");
    expect(await tunnel()).toMatchObject({ kind: "gre", up: true, mtu: 1476, attrs: { key: 7, ttl: 64 } });
    const r = await agent.restart();
    expect(r.recreated).toEqual([]);
    expect(r.writes).toBe(0);
    await agent.close("teardown");
    expect(await tunnel()).toBeUndefined();
  });
});
`;

describe("create-backend: a backend with a link kind of its own, outside the workspace", () => {
  it(
    "is generated by npm run create-backend, contributes a gre kind from its own package, and passes the conformance suite on the fake kernel",
    async () => {
      const work = mkdtempSync(join(tmpdir(), "weft-cb-gre-"));
      try {
        const target = join(work, NAME);
        const gen = await runner.run("npm", ["run", "-s", "create-backend", "--", NAME, "--dir", target], { cwd: WORKSPACE_ROOT, reject: false, timeoutMs: 60_000 });
        expect(gen.exitCode, gen.stderr).toBe(0);
        expect(gen.stdout).toContain(`created weft-backend-${NAME}`);
        const linked = linkFileDependencies(target);
        expect(linked).toEqual(expect.arrayContaining(["@weft/core", "@weft/kernel", "@weft/reconcile", "@weft/backend-testkit", "@weft/kernel-testing", "tsyringe", "vitest"]));

        // The author's additions: the kind in its own file, named by the module, one tunnel declared by the
        // backend and retracted at teardown. Nothing in this checkout is edited.
        writeFileSync(join(target, "src", "gre-kind.ts"), GRE_KIND_SOURCE);
        writeFileSync(join(target, "src", "gre.spec.ts"), GRE_SPEC_SOURCE);
        const index = join(target, "src", "index.ts");
        insertBefore(index, "const greTunnelModule", 'import { GRE_LINK_KIND } from "./gre-kind.js";\n\n');
        insertBefore(index, "  configSchema: greTunnelConfigSchema,", "  linkKinds: [GRE_LINK_KIND],\n");
        const backendFile = join(target, "src", `${NAME}-backend.ts`);
        insertBefore(backendFile, "@injectable()", 'import { GRE_TUNNEL } from "./gre-kind.js";\n\n');
        insertBefore(backendFile, "    await this.datapath.flush();", '    this.datapath.declare("gre", { links: [GRE_TUNNEL] });\n');
        insertBefore(backendFile, '    this.datapath.retract("local");', '    this.datapath.retract("gre");\n');
        // Vitest with the workspace's condition: the file: packages resolve to their sources, no build needed.
        writeFileSync(
          join(target, "vitest.weft-source.config.ts"),
          `import { mergeConfig } from "vitest/config";
import base from "./vitest.config.ts";
export default mergeConfig(base, { resolve: { conditions: ["@weft/source"] }, ssr: { resolve: { conditions: ["@weft/source"] } } });
`,
        );

        const vitest = await runner.run(process.execPath, [join(target, "node_modules", "vitest", "vitest.mjs"), "run", "--config", "vitest.weft-source.config.ts"], {
          cwd: target,
          env: { WEFT_TIER: "unit", WEFT_REPORT_DIR: "", CI: process.env.CI ?? "" },
          reject: false,
          timeoutMs: 300_000,
        });
        const out = vitest.stdout.replace(/\x1b\[[0-9;]*m/g, "");
        expect(vitest.exitCode, out + vitest.stderr).toBe(0);
        expect(out).toContain(`src/${NAME}.conformance.spec.ts`);
        expect(out).toContain("src/gre.spec.ts");
        expect(Number(/Tests\s+(\d+) passed/.exec(out)?.[1])).toBeGreaterThan(20);
        expect(out).not.toMatch(/failed|skipped/);
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    },
    360_000,
  );
});
