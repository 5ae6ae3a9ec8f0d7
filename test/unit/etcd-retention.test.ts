// etcd:backup retention in a directory shared by clusters whose names are prefixes of each
// other (prod, prod-eu): only snapshots whose sidecars prove they are this cluster's count or
// go, and the snapshot just taken always stays.
import { afterAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { applyRetention, type SnapshotSidecar, snapshotName, writeSidecars } from "../../lib/etcd/snapshot.ts";

const work = mkdtempSync(join(tmpdir(), "kubeadm-ha-retention-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

let seq = 0;
/** A directory for one test. */
const fresh = () => mkdtempSync(join(work, `d${++seq}-`));

/** A backup as etcd:backup leaves it: the .db, its .sha256 and its JSON sidecar. */
function backup(dir: string, cluster: string, node: string, day: number): string {
  const at = new Date(Date.UTC(2025, 0, day, 3, 0, 0));
  const file = join(dir, snapshotName(cluster, node, at));
  const content = `${cluster}/${node}/${day}`;
  writeFileSync(file, content, { mode: 0o600 });
  const sha = createHash("sha256").update(content).digest("hex");
  const facts: SnapshotSidecar = {
    file,
    cluster,
    node,
    createdAt: at.toISOString(),
    sha256: sha,
    hash: 1,
    revision: day,
    totalKeys: 1,
    totalSize: content.length,
    etcdVersion: "3.5.16",
    members: [],
  };
  writeSidecars(file, sha, facts);
  return file;
}

const dbs = (dir: string) =>
  readdirSync(dir)
    .filter((f) => f.endsWith(".db"))
    .sort();
const name = (f: string) => f.slice(f.lastIndexOf("/") + 1);

describe("etcd:backup retention with clusters prod and prod-eu in one directory", () => {
  test("prod's retention deletes only prod's older snapshots, never prod-eu's (newer or older)", () => {
    const dir = fresh();
    const prod = [1, 2, 3, 4].map((d) => backup(dir, "prod", "cp-1", d));
    const eu = [2, 5, 6, 7].map((d) => backup(dir, "prod-eu", "cp-1", d));
    const removed = applyRetention(dir, "prod", 2, prod[3]!);
    expect(removed.map(name).sort()).toEqual([prod[0]!, prod[1]!].map(name));
    expect(dbs(dir)).toEqual([...prod.slice(2), ...eu].map(name).sort());
    for (const f of eu) for (const s of ["", ".sha256", ".json"]) expect(existsSync(f + s)).toBe(true);
    for (const f of removed) for (const s of ["", ".sha256", ".json"]) expect(existsSync(f + s)).toBe(false);
  });

  test("prod-eu's retention deletes only prod-eu's, keeping its newest even with keep 1", () => {
    const dir = fresh();
    const prod = [5, 6].map((d) => backup(dir, "prod", "cp-1", d));
    const eu = [1, 2, 3].map((d) => backup(dir, "prod-eu", "cp-1", d));
    expect(applyRetention(dir, "prod-eu", 1, eu[2]!).map(name).sort()).toEqual([eu[0]!, eu[1]!].map(name));
    expect(dbs(dir)).toEqual([...prod, eu[2]!].map(name).sort());
  });

  test("names alone cannot tell: prod's node eu-cp-1 and prod-eu's node cp-1 share a name; the sidecar decides", () => {
    const dir = fresh();
    // Same file-name shape: prod-eu-cp-1-<stamp>.db for cluster prod (node eu-cp-1) and prod-eu (node cp-1).
    const mine = [1, 2].map((d) => backup(dir, "prod", "eu-cp-1", d));
    const theirs = [3, 4].map((d) => backup(dir, "prod-eu", "cp-1", d));
    const newest = backup(dir, "prod", "eu-cp-1", 5);
    expect(applyRetention(dir, "prod", 2, newest).map(name)).toEqual([name(mine[0]!)]);
    expect(dbs(dir)).toEqual([mine[1]!, ...theirs, newest].map(name).sort());
    expect(applyRetention(dir, "prod-eu", 1, theirs[1]!).map(name)).toEqual([name(theirs[0]!)]);
  });

  test("a snapshot whose sidecars do not prove it is ours neither counts nor goes", () => {
    const dir = fresh();
    const noJson = backup(dir, "prod", "cp-1", 1);
    rmSync(`${noJson}.json`);
    const badJson = backup(dir, "prod", "cp-1", 2);
    writeFileSync(`${badJson}.json`, "{not json");
    const otherCluster = backup(dir, "prod", "cp-1", 3);
    writeFileSync(`${otherCluster}.json`, JSON.stringify({ cluster: "prod-eu", node: "cp-1" }));
    const otherSha = backup(dir, "prod", "cp-1", 4);
    writeFileSync(`${otherSha}.sha256`, `${"0".repeat(64)}  ${name(otherSha)}\n`);
    const noSha = backup(dir, "prod", "cp-1", 5);
    rmSync(`${noSha}.sha256`);
    const mine = [6, 7, 8].map((d) => backup(dir, "prod", "cp-1", d));
    expect(applyRetention(dir, "prod", 2, mine[2]!).map(name)).toEqual([name(mine[0]!)]);
    for (const f of [noJson, badJson, otherCluster, otherSha, noSha, mine[1]!, mine[2]!])
      expect(existsSync(f)).toBe(true);
  });

  test("the snapshot just taken stays even when a later-named one of the same cluster exists (clock skew)", () => {
    const dir = fresh();
    const future = backup(dir, "prod", "cp-2", 20);
    const old = backup(dir, "prod", "cp-1", 1);
    const justTaken = backup(dir, "prod", "cp-1", 10);
    const removed = applyRetention(dir, "prod", 1, justTaken);
    expect(existsSync(justTaken)).toBe(true);
    expect(removed.map(name).sort()).toEqual([future, old].map(name).sort());
  });
});
