/**
 * Helpers the out-of-workspace generator tests share (link-kind.spec.ts, guide.spec.ts): patching a generated
 * backend's files and linking its `file:` dependencies the way `npm install` would.
 */
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { expect } from "vitest";

/** Inserts `text` before the first `anchor` in `file`; fails the test, naming the anchor, when it is missing. */
export function insertBefore(file: string, anchor: string, text: string): void {
  const src = readFileSync(file, "utf8");
  const at = src.indexOf(anchor);
  expect(at, `${file} has no "${anchor}": the sample changed, update the test's patch (and the guide's example)`).toBeGreaterThanOrEqual(0);
  writeFileSync(file, src.slice(0, at) + text + src.slice(at));
}

/** What `npm install` does for `file:` directory dependencies: a symlink per package in node_modules. */
export function linkFileDependencies(pkgDir: string): string[] {
  const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
  const linked: string[] = [];
  for (const [name, spec] of Object.entries({ ...pkg.dependencies, ...pkg.devDependencies } as Record<string, string>)) {
    if (!spec.startsWith("file:")) continue;
    const target = resolve(pkgDir, spec.slice(5));
    expect(existsSync(join(target, "package.json")), `${name} -> ${target}`).toBe(true);
    const at = join(pkgDir, "node_modules", name);
    mkdirSync(dirname(at), { recursive: true });
    symlinkSync(target, at, "dir");
    linked.push(name);
  }
  return linked;
}
