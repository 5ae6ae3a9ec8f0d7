// Snapshot files on the machine that runs the tool: names, sidecars (sha256 and
// JSON facts), integrity checks that need no etcd binary, status through a local
// etcdutl/etcdctl when there is one, and retention.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  closeSync,
  existsSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { basename, join } from "node:path";
import { UserError } from "../errors.ts";

export interface SnapshotStatus {
  hash: number;
  revision: number;
  totalKeys: number;
  totalSize: number;
}

export interface SnapshotSidecar extends SnapshotStatus {
  file: string;
  cluster: string;
  node: string;
  createdAt: string;
  sha256: string;
  etcdVersion: string;
  clusterId?: string;
  members: { id: string; name: string; peerUrls: string[] }[];
}

/** 2025-01-02T03:04:05.678Z -> 20250102T030405Z (sorts by time, safe in file names). */
export const stamp = (d = new Date()): string =>
  d
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");

export const snapshotName = (cluster: string, node: string, d = new Date()): string =>
  `${cluster}-${node}-${stamp(d)}.db`;

export const sha256Sidecar = (file: string): string => `${file}.sha256`;
export const jsonSidecar = (file: string): string => `${file}.json`;

/** Parse `snapshot status -w json` of etcdctl 3.4 or etcdutl 3.5+ ({"hash":..,"revision":..,"totalKey":..,"totalSize":..}). */
export function parseStatusJson(text: string): SnapshotStatus {
  const line = text
    .split("\n")
    .map((l) => l.trim())
    .find((l) => l.startsWith("{") && l.includes('"totalSize"'));
  if (!line) throw new Error(`no status JSON in: ${text.slice(0, 200)}`);
  const j = JSON.parse(line) as Record<string, number>;
  return {
    hash: j.hash ?? 0,
    revision: j.revision ?? 0,
    totalKeys: j.totalKey ?? j.totalKeys ?? 0,
    totalSize: j.totalSize ?? 0,
  };
}

/**
 * etcd appends the sha256 of the database to every snapshot it streams (the file
 * is then 32 bytes past a 512-byte boundary). Checking it finds truncation and
 * flipped bytes that `snapshot status` happily reports as fine.
 */
export async function checkEmbeddedHash(path: string): Promise<{ ok: boolean; reason?: string }> {
  const size = statSync(path).size;
  if (size < 512 + 32) return { ok: false, reason: `only ${size} bytes, too small to be an etcd snapshot` };
  if (size % 512 !== 32) {
    return {
      ok: false,
      reason: `size ${size} is not a database plus etcd's 32-byte checksum (truncated, or a copied member/snap/db rather than a snapshot)`,
    };
  }
  const h = createHash("sha256");
  const body = size - 32;
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.alloc(4 * 1024 * 1024);
    let pos = 0;
    while (pos < body) {
      const n = readSync(fd, buf, 0, Math.min(buf.length, body - pos), pos);
      if (n <= 0) break;
      h.update(buf.subarray(0, n));
      pos += n;
    }
    const tail = Buffer.alloc(32);
    readSync(fd, tail, 0, 32, body);
    if (!h.digest().equals(tail))
      return { ok: false, reason: "the checksum etcd embedded in the file does not match its content (corrupted)" };
  } finally {
    closeSync(fd);
  }
  return { ok: true };
}

/**
 * The file's sha256 and etcd's embedded checksum from ONE sha256 pass over the bytes as they
 * arrive (in order): the database part is hashed once; the whole-file hash continues from a copy
 * of that state with the 32-byte tail, and the database hash is compared with the tail.
 */
export class StreamingSnapshotCheck {
  private readonly h = createHash("sha256");
  /** The last (up to) 32 bytes seen, not yet hashed: etcd's checksum if the stream ends here. */
  private held = Buffer.alloc(0);
  private seen = 0;
  private size = -1;

  /**
   * The next bytes of the file. `offset` (checked: bytes must come in order) and `size` are
   * optional, for a stream whose length is known only at its end.
   */
  update(chunk: Buffer, offset = this.seen, size?: number): void {
    if (offset !== this.seen) throw new Error(`snapshot bytes out of order: ${offset} after ${this.seen}`);
    if (size !== undefined) this.size = size;
    if (chunk.length >= 32) {
      this.h.update(this.held);
      this.h.update(chunk.subarray(0, chunk.length - 32));
      this.held = Buffer.from(chunk.subarray(chunk.length - 32));
    } else {
      const both = Buffer.concat([this.held, chunk]);
      const keep = Math.min(32, both.length);
      this.h.update(both.subarray(0, both.length - keep));
      this.held = both.subarray(both.length - keep);
    }
    this.seen += chunk.length;
  }

  private done?: { sha256: string; embedded: { ok: boolean; reason?: string } };

  /** The file's sha256 and the embedded-checksum verdict (the same answer on every call). */
  result(): { sha256: string; embedded: { ok: boolean; reason?: string } } {
    this.done ??= this.finish();
    return this.done;
  }

  private finish(): { sha256: string; embedded: { ok: boolean; reason?: string } } {
    const size = this.size >= 0 ? this.size : this.seen;
    if (this.seen !== size) throw new Error(`snapshot hash saw ${this.seen} of ${size} bytes`);
    const whole = this.h.copy();
    whole.update(this.held);
    const sha256 = whole.digest("hex");
    if (size < 512 + 32)
      return { sha256, embedded: { ok: false, reason: `only ${size} bytes, too small to be an etcd snapshot` } };
    if (size % 512 !== 32)
      return {
        sha256,
        embedded: {
          ok: false,
          reason: `size ${size} is not a database plus etcd's 32-byte checksum (truncated, or a copied member/snap/db rather than a snapshot)`,
        },
      };
    if (!this.h.digest().equals(this.held))
      return {
        sha256,
        embedded: {
          ok: false,
          reason: "the checksum etcd embedded in the file does not match its content (corrupted)",
        },
      };
    return { sha256, embedded: { ok: true } };
  }
}

export async function fileSha256(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of Bun.file(path).stream()) h.update(chunk);
  return h.digest("hex");
}

/** Read `<file>.sha256` (sha256sum format); undefined when absent. */
export function readSha256Sidecar(file: string): string | undefined {
  const p = sha256Sidecar(file);
  if (!existsSync(p)) return undefined;
  const hex = readFileSync(p, "utf8").trim().split(/\s+/)[0] ?? "";
  if (!/^[0-9a-f]{64}$/.test(hex))
    throw new UserError(
      `${p} does not hold a sha256 (expected "<64 hex digits>  <file name>"). Restore it from where the backup came from, or delete it to rely on the embedded checksum.`,
    );
  return hex;
}

export function writeSidecars(file: string, sha: string, facts: SnapshotSidecar): void {
  writeFileSync(sha256Sidecar(file), `${sha}  ${basename(file)}\n`, { mode: 0o600, flag: "wx" });
  writeFileSync(jsonSidecar(file), `${JSON.stringify(facts, null, 2)}\n`, { mode: 0o600, flag: "wx" });
}

/** Which etcd tool can read snapshots on this machine, if any. */
export function localSnapshotTool(): { bin: string; kind: "etcdutl" | "etcdctl" } | undefined {
  for (const kind of ["etcdutl", "etcdctl"] as const) {
    const r = spawnSync("sh", ["-c", `command -v ${kind}`], { encoding: "utf8" });
    if (r.status === 0 && r.stdout.trim()) {
      const bin = r.stdout.trim();
      // etcdctl 3.6 dropped `snapshot status`; only use etcdctl when it still has it.
      if (kind === "etcdctl") {
        const help = spawnSync(bin, ["snapshot", "--help"], {
          encoding: "utf8",
          env: { ...process.env, ETCDCTL_API: "3" },
        });
        if (!`${help.stdout}${help.stderr}`.includes("status")) continue;
      }
      return { bin, kind };
    }
  }
  return undefined;
}

/** `snapshot status` with a local tool. Throws a UserError for a file the tool cannot read. */
export function localSnapshotStatus(path: string, tool = localSnapshotTool()): SnapshotStatus | undefined {
  if (!tool) return undefined;
  const r = spawnSync(tool.bin, ["snapshot", "status", path, "-w", "json"], {
    encoding: "utf8",
    env: { ...process.env, ETCDCTL_API: "3" },
    timeout: 120_000,
  });
  if (r.status !== 0) {
    const why =
      (r.stderr || r.stdout || "").split("\n").find((l) => /error|fault|panic|invalid/i.test(l)) ?? `exit ${r.status}`;
    throw new UserError(
      `${path}: ${tool.kind} cannot read this snapshot (${why.trim().slice(0, 160)}); it is truncated or corrupted. Use another backup.`,
    );
  }
  return parseStatusJson(r.stdout);
}

export interface Verified {
  file: string;
  sha256: string;
  sidecarChecked: boolean;
  status?: SnapshotStatus;
  tool?: string;
}

/** Everything we can check locally before a snapshot is trusted: existence, sidecar sha256, embedded checksum, status. */
export async function verifySnapshotFile(file: string): Promise<Verified> {
  if (!existsSync(file) || !statSync(file).isFile())
    throw new UserError(`snapshot ${file} does not exist or is not a file. Pass the .db file etcd:backup wrote.`);
  const sha = await fileSha256(file);
  const expected = readSha256Sidecar(file);
  if (expected && expected !== sha) {
    throw new UserError(
      `${file}: sha256 is ${sha} but ${basename(sha256Sidecar(file))} says ${expected}: the file changed after the backup (corrupted or replaced). Refusing to use it; pick another backup.`,
    );
  }
  const embedded = await checkEmbeddedHash(file);
  if (!embedded.ok)
    throw new UserError(
      `${file}: not a usable etcd snapshot: ${embedded.reason}. Refusing to use it; pick another backup.`,
    );
  const tool = localSnapshotTool();
  const status = localSnapshotStatus(file, tool);
  return { file, sha256: sha, sidecarChecked: expected !== undefined, status, tool: tool?.kind };
}

const SNAPSHOT_NAME = /^(.+)-(\d{8}T\d{6}Z)\.db$/;

/**
 * Whether `file` is provably a complete snapshot of `cluster`: its JSON sidecar names the
 * cluster, its node and name agree with the file name, and both sidecars carry the same sha256.
 * File names alone cannot tell (prod's node eu-cp-1 and prod-eu's node cp-1 give the same
 * name), so a file without such sidecars is someone else's as far as retention goes.
 */
function provablyOurs(file: string, cluster: string): boolean {
  const m = SNAPSHOT_NAME.exec(basename(file));
  if (!m) return false;
  let facts: Partial<SnapshotSidecar>;
  let sha: string | undefined;
  try {
    facts = JSON.parse(readFileSync(jsonSidecar(file), "utf8")) as Partial<SnapshotSidecar>;
    sha = readSha256Sidecar(file);
  } catch {
    return false;
  }
  return (
    facts?.cluster === cluster &&
    typeof facts.node === "string" &&
    m[1] === `${cluster}-${facts.node}` &&
    sha !== undefined &&
    facts.sha256 === sha
  );
}

/** Complete snapshots of `cluster` in `dir`, proven by their sidecars, newest first. */
export function listGoodSnapshots(dir: string, cluster: string): string[] {
  if (!existsSync(dir)) return [];
  const stampOf = (f: string) => SNAPSHOT_NAME.exec(f)![2]!;
  return readdirSync(dir)
    .filter((f) => SNAPSHOT_NAME.test(f) && provablyOurs(join(dir, f), cluster))
    .sort((a, b) => stampOf(b).localeCompare(stampOf(a)) || b.localeCompare(a))
    .map((f) => join(dir, f));
}

/**
 * Keep `justTaken` and the newest other good snapshots of `cluster`, `keep` in all (never fewer
 * than one); delete the older ones with their sidecars. Files not proven to be this cluster's stay.
 */
export function applyRetention(dir: string, cluster: string, keep: number, justTaken: string): string[] {
  const others = listGoodSnapshots(dir, cluster).filter((f) => f !== justTaken);
  const doomed = others.slice(Math.max(1, keep) - 1);
  for (const f of doomed) for (const p of [f, sha256Sidecar(f), jsonSidecar(f)]) rmSync(p, { force: true });
  return doomed;
}
