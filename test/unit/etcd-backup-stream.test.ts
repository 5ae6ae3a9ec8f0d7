// The backup's save-and-stream script, run by a real bash with coreutils' tail against a fake
// etcdctl that writes snapshot.db.part in bursts and renames it, as etcdctl does: stdout carries
// exactly the final file's bytes, stderr ends with its size; a failed save exits 1 with its log.
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { saveAndStreamScript } from "../../lib/etcd/backup.ts";

const work = mkdtempSync(join(tmpdir(), "kubeadm-ha-savestream-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A fake etcdctl: `snapshot save PATH` writes PATH.part in `bursts` pieces, then renames it (or fails). */
function fakeEtcdctl(name: string, body: string): string {
  const path = join(work, name);
  writeFileSync(path, `#!/bin/bash\nset -e\nfor a; do p="$a"; done\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

async function run(etcdctl: string, dir: string) {
  const script = `set -euo pipefail\numask 077\netcd_tools() { ETCDCTL=${etcdctl}; }\n${saveAndStreamScript(dir, "--endpoints=x")}\n`;
  const p = Bun.spawn(["bash", "-s"], { stdin: new Blob([script]), stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([
    new Response(p.stdout).arrayBuffer(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  return { out: Buffer.from(out), err, code };
}

describe("save and stream", () => {
  test("bytes written while the stream runs, through the rename, arrive once and in order", async () => {
    const slow = fakeEtcdctl(
      "slow",
      `exec 4>"$p.part"; for i in $(seq 1 12); do head -c 300000 /dev/urandom >&4; sleep 0.03; done; exec 4>&-; mv "$p.part" "$p"`,
    );
    const dir = mkdtempSync(join(work, "d-"));
    const r = await run(slow, dir);
    expect(r.code).toBe(0);
    const file = readFileSync(join(dir, "snapshot.db"));
    expect(file.length).toBe(12 * 300000);
    expect(Buffer.compare(r.out, file)).toBe(0);
    expect(r.err).toMatch(new RegExp(`^SIZE=${file.length}$`, "m"));
  });

  test("a save that finished before the stream began is sent whole", async () => {
    const fast = fakeEtcdctl("fast", `head -c 100000 /dev/urandom >"$p"`);
    const dir = mkdtempSync(join(work, "d-"));
    const r = await run(fast, dir);
    expect(r.code).toBe(0);
    expect(Buffer.compare(r.out, readFileSync(join(dir, "snapshot.db")))).toBe(0);
    expect(r.err).toMatch(/^SIZE=100000$/m);
  });

  test("a save that fails half-way exits 1 with the end of its log, and no size", async () => {
    const failing = fakeEtcdctl(
      "failing",
      `exec 4>"$p.part"; head -c 200000 /dev/urandom >&4; sleep 0.1; rm -f "$p.part"; echo "Error: rpc error: code = Unavailable" >&2; exit 1`,
    );
    const dir = mkdtempSync(join(work, "d-"));
    const r = await run(failing, dir);
    expect(r.code).toBe(1);
    expect(r.err).toContain("code = Unavailable");
    expect(r.err).not.toMatch(/SIZE=/);
  });
});
