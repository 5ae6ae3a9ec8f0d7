// Replace a directory with a freshly written tree of files: written into a sibling temp
// directory first, then swapped in, so a file of an earlier run (a removed node) never
// lingers and a reader never sees a half-written tree.
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";

export interface TreeEntry {
  /** Relative path inside the tree. */
  path: string;
  content: string;
  /** Octal mode string, e.g. "0644"; set exactly, whatever the umask. */
  mode: string;
}

export function replaceTree(dir: string, files: TreeEntry[]): void {
  const parent = dirname(dir);
  const name = basename(dir);
  mkdirSync(parent, { recursive: true });
  const suffix = `${process.pid}-${randomBytes(4).toString("hex")}`;
  const fresh = join(parent, `.${name}.new-${suffix}`);
  mkdirSync(fresh);
  try {
    const made = new Set<string>();
    for (const f of files) {
      if (f.path.startsWith("/") || f.path.split("/").includes(".."))
        throw new Error(`tree path ${f.path} is not relative`);
      const target = join(fresh, f.path);
      const d = dirname(target);
      if (!made.has(d)) {
        mkdirSync(d, { recursive: true });
        made.add(d);
      }
      writeFileSync(target, f.content);
      chmodSync(target, Number.parseInt(f.mode, 8));
    }
    if (existsSync(dir)) {
      const old = join(parent, `.${name}.old-${suffix}`);
      renameSync(dir, old);
      renameSync(fresh, dir);
      rmSync(old, { recursive: true, force: true });
    } else {
      renameSync(fresh, dir);
    }
  } finally {
    rmSync(fresh, { recursive: true, force: true });
  }
  // Leftovers of a run that was killed between its two renames.
  for (const e of readdirSync(parent))
    if (e.startsWith(`.${name}.old-`)) rmSync(join(parent, e), { recursive: true, force: true });
}
