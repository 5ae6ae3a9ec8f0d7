// etcd:restore's outcome as the user sees it: exit code, --json fields and text for a restore
// that was planned, done, done with warnings, failed or interrupted; an interrupt before any
// change; and the node lock that keeps a step in flight from undoing a rollback.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UserError } from "../../lib/errors.ts";
import { restoreLockSh } from "../../lib/etcd/node-state.ts";
import { KUBEADM_ETCD_ACCESS } from "../../lib/etcd/remote.ts";
import {
  type RestoreReport,
  type RestoreStatus,
  reportText,
  restoreExitCode,
  runRestore,
  signalExitCode,
} from "../../lib/etcd/restore.ts";
import { parseSpec } from "../../lib/spec/load.ts";

const plan = {
  file: "/b/prod-cp-1.db",
  sha256: "ab".repeat(32),
  stamp: "20250101T000000Z",
  token: "t",
  initialCluster: "cp-1=https://10.0.0.11:2380",
  bumpRevision: 1_000_000_000,
  bumpReason: "--bump-revision 1000000000 --mark-compacted (default)",
  stateDir: "/var/lib/kubeadm-ha/etcd-restore-20250101T000000Z",
  members: [
    {
      node: "cp-1",
      host: "10.0.0.11",
      name: "cp-1",
      peerUrl: "https://10.0.0.11:2380",
      endpoint: "https://10.0.0.11:2379",
      oldDataDir: "/var/lib/etcd",
      newDataDir: "/var/lib/etcd-restore-20250101T000000Z",
      etcdVersion: "3.5.16",
      tool: "etcdutl",
      ports: { etcdClient: 2379, etcdPeer: 2380, apiserver: 6443 },
    },
  ],
  steps: [],
};

const report = (status: RestoreStatus, extra: Partial<RestoreReport> = {}): RestoreReport => ({
  ...plan,
  status,
  ok: status === "restored" || status === "planned",
  warnings: [],
  seconds: 12.3,
  newClusterId: "c0ffee",
  apiserver: "https://10.0.0.10:8443/healthz answered ok",
  ...extra,
});

describe("etcd:restore outcome", () => {
  test("exit codes: 0 planned or restored, 3 restored with warnings, 1 failed, 128 + signal when interrupted", () => {
    expect(restoreExitCode(report("planned"))).toBe(0);
    expect(restoreExitCode(report("restored"))).toBe(0);
    expect(restoreExitCode(report("restored-with-warnings", { warnings: ["VIP silent"] }))).toBe(3);
    expect(restoreExitCode(report("failed", { error: "timed out" }))).toBe(1);
    expect(restoreExitCode(report("interrupted", { interrupted: "SIGINT" }))).toBe(130);
    expect(restoreExitCode(report("interrupted", { interrupted: "SIGTERM" }))).toBe(143);
    expect([signalExitCode("SIGINT"), signalExitCode("SIGTERM"), signalExitCode(undefined)]).toEqual([130, 143, 130]);
  });

  test("a restore with warnings is not ok: --json carries status, ok: false and every warning; the text lists them", () => {
    const warned = report("restored-with-warnings", {
      warnings: ["every apiserver answers /healthz directly but https://10.0.0.10:8443/healthz does not"],
    });
    const json = JSON.parse(JSON.stringify(warned));
    expect([json.status, json.ok]).toEqual(["restored-with-warnings", false]);
    expect(json.warnings).toEqual(warned.warnings);
    const text = reportText(warned);
    expect(text).toStartWith("restored /b/prod-cp-1.db in 12.3 s, WITH 1 WARNING\n");
    expect(text).toContain("WARNING: every apiserver answers /healthz directly");
    expect(reportText(report("restored"))).not.toContain("WARNING");
    expect(JSON.parse(JSON.stringify(report("restored")))).toMatchObject({
      status: "restored",
      ok: true,
      warnings: [],
    });
  });

  test("an interrupted restore says which signal, during which step, and what was rolled back", () => {
    const r = report("interrupted", {
      interrupted: "SIGTERM",
      stage: "stop",
      error: "interrupted by SIGTERM during stop",
      rolledBack: [{ node: "cp-1", ok: true, detail: "rolled back: old manifests in place; etcd on /var/lib/etcd" }],
    });
    const text = reportText(r);
    expect(text).toStartWith("RESTORE INTERRUPTED by SIGTERM during stop after 12.3 s\n");
    expect(text).toContain("cp-1       ok   rolled back: old manifests in place; etcd on /var/lib/etcd");
    expect(JSON.parse(JSON.stringify(r))).toMatchObject({ status: "interrupted", ok: false, interrupted: "SIGTERM" });
    expect(reportText(report("failed", { stage: "etcd health", error: "timed out", rolledBack: [] }))).toStartWith(
      "RESTORE FAILED during etcd health after 12.3 s: timed out",
    );
  });

  test("interrupted before anything changed: a UserError with the signal's exit code, no report", async () => {
    const spec = parseSpec(`
name: t
kubernetes: { version: "1.31.4", packages: { source: preinstalled } }
allowNonHA: true
controlPlaneEndpoint: { vip: 127.0.0.100, interface: lo }
nodes:
  - { name: cp-1, address: 127.0.0.1, role: control-plane }
`);
    const err = await runRestore(spec, "/nonexistent/snapshot.db", {
      access: KUBEADM_ETCD_ACCESS,
      signal: AbortSignal.abort("SIGTERM"),
    }).catch((e) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(err.exitCode).toBe(143);
    expect(err.message).toBe("etcd:restore interrupted by SIGTERM before anything was changed.");
  });

  test("the node lock: a step runs its change when the node was not rolled back, and changes nothing once it was", () => {
    const dir = mkdtempSync(join(tmpdir(), "kha-restore-lock-"));
    try {
      const step = (body: string) =>
        Bun.spawnSync(["bash", "-c", `set -euo pipefail\n${restoreLockSh(dir)}\n${body}`], {
          stdout: "pipe",
          stderr: "pipe",
        });
      const ran = step(`echo changed >${join(dir, "out")}; echo done`);
      expect([ran.exitCode, ran.stdout.toString()]).toEqual([0, "done\n"]);
      writeFileSync(join(dir, "rolled-back"), "2025-01-01T00:00:00Z\n");
      const refused = step(`echo changed-after-rollback >${join(dir, "out")}`);
      expect(refused.exitCode).toBe(75);
      expect(refused.stderr.toString()).toContain("rolled back meanwhile");
      expect(Bun.file(join(dir, "out")).size).toBe("changed\n".length);
      // The lock is held while the step runs: a rollback (flock on the same file) waits for it.
      const holder = Bun.spawn(["bash", "-c", `rm -f ${dir}/rolled-back\n${restoreLockSh(dir)}\nsleep 1`]);
      Bun.sleepSync(300);
      const t0 = Date.now();
      const waited = Bun.spawnSync(["flock", join(dir, "lock"), "true"]);
      expect(waited.exitCode).toBe(0);
      expect(Date.now() - t0).toBeGreaterThan(400);
      holder.kill();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
