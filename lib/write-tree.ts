// Replace a directory with a tree of files, exactly: written into a sibling temp directory
// first, then swapped in, so a file of an earlier run (a removed node) never lingers and a
// reader never sees a half-written tree. A tree already on disk exactly as wanted (same
// files, contents and modes, nothing else) is left alone: on slow disks writing ~80 files
// in ~60 directories costs more than the rest of a synth, and reading them costs ~3 ms.
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  existsSync,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { basename, dirname, join, relative } from "node:path";

export interface TreeEntry {
  /** Relative path inside the tree. */
  path: string;
  content: string;
  /** Octal mode string, e.g. "0644"; set exactly, whatever the umask. */
  mode: string;
}

/** Write `files` as the whole content of `dir`. Returns whether anything was written. */
export function replaceTree(dir: string, files: TreeEntry[]): boolean {
  for (const f of files)
    if (f.path.startsWith("/") || f.path.split("/").includes("..") || f.path.includes("\\"))
      throw new Error(`tree path ${f.path} is not a plain relative path`);
  if (treeIs(dir, files)) return false;
  const parent = dirname(dir);
  const name = basename(dir);
  mkdirSync(parent, { recursive: true });
  const suffix = `${process.pid}-${randomBytes(4).toString("hex")}`;
  const fresh = join(parent, `.${name}.new-${suffix}`);
  mkdirSync(fresh);
  try {
    const made = new Set<string>();
    const umask = process.umask();
    for (const f of files) {
      const target = join(fresh, f.path);
      const d = dirname(target);
      if (!made.has(d)) {
        mkdirSync(d, { recursive: true });
        made.add(d);
      }
      const mode = Number.parseInt(f.mode, 8);
      writeFileSync(target, f.content, { mode });
      // Only when the umask took bits away (one syscall per file saved otherwise).
      if ((mode & umask) !== 0) chmodSync(target, mode);
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
  return true;
}

/** Whether dir holds exactly `files` (content and mode) and nothing else, not even an empty directory. */
function treeIs(dir: string, files: TreeEntry[]): boolean {
  if (!existsSync(dir)) return false;
  const want = new Map(files.map((f) => [f.path, f]));
  const dirs = new Set<string>();
  for (const f of files) for (let d = dirname(f.path); d !== "."; d = dirname(d)) dirs.add(d);
  let seen = 0;
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const path = relative(dir, join(e.parentPath, e.name));
    if (e.isDirectory()) {
      if (!dirs.has(path)) return false;
      continue;
    }
    const f = want.get(path);
    if (!f || !e.isFile()) return false;
    seen++;
    const fd = openSync(join(dir, path), "r");
    try {
      const st = fstatSync(fd);
      if ((st.mode & 0o7777) !== Number.parseInt(f.mode, 8)) return false;
      const expected = Buffer.from(f.content);
      if (st.size !== expected.length) return false;
      const actual = Buffer.allocUnsafe(st.size);
      if (readSync(fd, actual, 0, st.size, 0) !== st.size || !actual.equals(expected)) return false;
    } finally {
      closeSync(fd);
    }
  }
  return seen === want.size;
}
