// A new local file that appears under its final name only when complete: bytes go to a temp
// file created exclusively next to it ("wx": never overwrites or follows a planted file), and
// commit() links it to the final name, which fails if that name exists. Snapshots are evidence:
// nothing here overwrites a file, and a failed or abandoned write leaves nothing behind.
import { randomBytes } from "node:crypto";
import {
  closeSync,
  existsSync,
  fsyncSync,
  linkSync,
  openSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { UserError } from "./errors.ts";

export interface ExclusiveFile {
  /** Write `b` at `position` (default: after the last write). */
  write(b: Buffer, position?: number): void;
  /** Bytes written so far, in append order. */
  readonly bytes: number;
  /** fsync, close and give the file its final name (refused if that name exists meanwhile). */
  commit(): void;
  /** Close and remove the temp file; a no-op after commit. */
  discard(): void;
}

const exists = (path: string) => new UserError(`${path} already exists; refusing to overwrite it.`);

export function createExclusiveFile(path: string, mode = 0o600): ExclusiveFile {
  if (existsSync(path)) throw exists(path);
  const tmp = join(dirname(path), `.${basename(path)}.part-${process.pid}-${randomBytes(4).toString("hex")}`);
  const fd = openSync(tmp, "wx", mode);
  let open = true;
  let done = false;
  let appended = 0;
  return {
    get bytes() {
      return appended;
    },
    write(b, position = appended) {
      for (let off = 0; off < b.length; ) off += writeSync(fd, b, off, b.length - off, position + off);
      appended = Math.max(appended, position + b.length);
    },
    commit() {
      fsyncSync(fd);
      open = false;
      closeSync(fd);
      // link() fails when the final name exists, so nothing is overwritten even if a file
      // appeared meanwhile; filesystems without hard links get a checked rename instead.
      try {
        linkSync(tmp, path);
        unlinkSync(tmp);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === "EEXIST") throw exists(path);
        if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP") throw e;
        if (existsSync(path)) throw exists(path);
        renameSync(tmp, path);
      }
      done = true;
    },
    discard() {
      if (open) closeSync(fd);
      open = false;
      if (!done) rmSync(tmp, { force: true });
    },
  };
}
