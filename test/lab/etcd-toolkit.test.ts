// The etcd toolkit against the lab's real three-member TLS etcd, run from kubeadm-shaped
// static-pod manifests by the kubelet stand-in: backup, restore, refusals and rollback.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { spawn } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UserError } from "../../lib/errors.ts";
import { runBackup } from "../../lib/etcd/backup.ts";
import { KUBEADM_ETCD_ACCESS } from "../../lib/etcd/remote.ts";
import { runRestore } from "../../lib/etcd/restore.ts";
import { loadSpec } from "../../lib/spec/load.ts";
import type { ClusterSpec } from "../../lib/spec/schema.ts";
import { LAB_OS_VERSIONS, labOsFromEnv } from "./debian-root.ts";
import {
  labDown,
  labEtcdAllHealthy,
  labEtcdctl,
  labExec,
  labPaths,
  labUp,
  linkDown,
  linkUp,
  PROJECT_ROOT,
  requireLab,
  waitLabEtcdHealthy,
} from "./lab.ts";

setDefaultTimeout(600_000);
const guard = requireLab();
const CPS = ["cp-1", "cp-2", "cp-3"];
// KHA_LAB_OS=debian13: the same tests on etcd 3.5 with etcdutl.
const OS = labOsFromEnv();
const ETCD = LAB_OS_VERSIONS[OS];

async function put(prefix: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const r = await labEtcdctl(["put", `${prefix}-${i}`, `value-${i}`]);
    if (r.code !== 0) throw new Error(`etcdctl put failed: ${r.stderr}`);
  }
}

async function count(prefix: string): Promise<number> {
  const r = await labEtcdctl(["get", `${prefix}-`, "--prefix", "--keys-only"]);
  if (r.code !== 0) throw new Error(`etcdctl get failed: ${r.stderr}`);
  return r.stdout.split("\n").filter((l) => l.startsWith(`${prefix}-`)).length;
}

/** Cluster ID as each member reports it (hex); every member must answer. */
async function clusterIds(): Promise<string[]> {
  const ids: string[] = [];
  for (const i of [1, 2, 3]) {
    const r = await labEtcdctl(["endpoint", "status", "-w", "json"], { endpoints: [`https://198.18.0.1${i}:2379`] });
    if (r.code !== 0) throw new Error(`cp-${i} not answering: ${r.stderr}`);
    ids.push(BigInt(/"cluster_id":(\d+)/.exec(r.stdout)![1]!).toString(16));
  }
  return ids;
}

const manifests = () =>
  Promise.all(CPS.map(async (h) => (await labExec(h, "cat /etc/kubernetes/manifests/etcd.yaml")).stdout));
const restoreDirs = () =>
  Promise.all(
    CPS.map(async (h) =>
      (await labExec(h, "ls -d /var/lib/kubeadm-ha/etcd-restore-* 2>/dev/null || true")).stdout.trim(),
    ),
  );

/** Whether every control plane's apiserver stand-in answers /healthz with 200 (TLS checked against the lab CA). */
async function apiserversHealthy(): Promise<boolean> {
  const codes = await Promise.all(
    [1, 2, 3].map(async (i) => {
      try {
        const res = await fetch(`https://198.18.0.1${i}:6443/healthz`, {
          tls: { ca: Bun.file(`${labPaths.runtimeDir}/pki/kubernetes-ca.crt`) },
          signal: AbortSignal.timeout(3000),
        } as RequestInit);
        await res.arrayBuffer();
        return res.status;
      } catch {
        return 0;
      }
    }),
  );
  return codes.every((c) => c === 200);
}

describe.skipIf(guard.skip)(`etcd toolkit in the lab (${OS}, etcd ${ETCD.etcd})`, () => {
  let spec: ClusterSpec;
  let work: string;
  let snapshot = "";
  beforeAll(async () => {
    await labUp({ os: OS });
    spec = loadSpec(labPaths.spec);
    work = mkdtempSync(join(tmpdir(), "kubeadm-ha-etcd-lab-"));
    await waitLabEtcdHealthy(60);
  });
  afterAll(async () => {
    rmSync(work, { recursive: true, force: true });
    await labDown();
  });

  test("backup, more writes, restore: keys before the backup are back, keys after it gone, 3 healthy members, one new cluster ID", async () => {
    // What kubeadm init leaves for kubeadm upgrade: its ClusterConfiguration in kube-system/kubeadm-config
    // (kept in etcd by the apiserver stand-in, so it is in the snapshot too), read through admin.conf.
    const kubectl = "kubectl --kubeconfig /etc/kubernetes/admin.conf -n kube-system";
    await labExec(
      "cp-1",
      `printf 'apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://127.0.0.1:6443\n  name: lab\n' > /etc/kubernetes/admin.conf
printf 'apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\netcd:\n  local:\n    dataDir: /var/lib/etcd\n' > /root/cc.yaml
${kubectl} create configmap kubeadm-config --from-file=ClusterConfiguration=/root/cc.yaml`,
    );
    const kubeletStarts = () =>
      Promise.all(
        [...CPS, "worker-1"].map(async (h) =>
          (await labExec(h, "systemctl show -p ActiveEnterTimestampMonotonic --value kubelet")).stdout.trim(),
        ),
      );
    await put("before", 25);
    const backup = await runBackup(spec, { outDir: join(work, "backups"), access: KUBEADM_ETCD_ACCESS });
    snapshot = backup.file;
    for (const f of [backup.file, backup.sha256File, backup.jsonFile]) expect(statSync(f).mode & 0o777).toBe(0o600);
    expect(statSync(join(work, "backups")).mode & 0o777).toBe(0o700);
    expect(backup.totalKeys).toBeGreaterThanOrEqual(25);
    expect(backup.members.map((m) => m.name).sort()).toEqual(CPS);
    // The remote temp copy is gone.
    expect((await labExec(backup.node, "ls /var/tmp | grep -c kubeadm-ha-snapshot || true")).stdout.trim()).toBe("0");

    await put("after", 25);
    expect(await count("after")).toBe(25);
    const before = await clusterIds();
    expect(new Set(before).size).toBe(1);
    const startsBefore = await kubeletStarts();

    const report = await runRestore(spec, snapshot, {
      access: KUBEADM_ETCD_ACCESS,
      waitSeconds: 120,
      revertAfterSeconds: 600,
    });
    expect(report.error).toBeUndefined();
    // This lab runs no keepalived/haproxy, so the VIP stays silent while every apiserver answers
    // directly: the restore is done, and says it needs a look instead of reporting ok.
    expect([report.status, report.ok]).toEqual(["restored-with-warnings", false]);
    expect(report.warnings).toEqual([
      expect.stringMatching(/answers \/healthz directly but https:\/\/198\.18\.0\.10:8443/),
    ]);
    expect(await labEtcdAllHealthy()).toBe(true);
    expect(await count("before")).toBe(25);
    expect(await count("after")).toBe(0);
    const after = await clusterIds();
    expect(new Set(after).size).toBe(1);
    expect(after[0]).not.toBe(before[0]);
    expect(report.newClusterId).toBe(after[0]);
    const list = await labEtcdctl(["member", "list", "-w", "json"]);
    expect(
      (JSON.parse(list.stdout.replace(/:(\d{16,})/g, ':"$1"')).members as { name: string }[]).map((m) => m.name).sort(),
    ).toEqual(CPS);
    // Each member runs from its new data dir, set in its manifest; the old data is kept.
    for (const [i, text] of (await manifests()).entries()) {
      expect(text).toContain(`--data-dir=${report.members[i]!.newDataDir}`);
      expect(text).toContain(`path: ${report.members[i]!.newDataDir}`);
      const mode = (
        await labExec(
          CPS[i]!,
          `stat -c %a ${report.members[i]!.newDataDir}; test -d /var/lib/etcd/member && echo old-kept`,
        )
      ).stdout;
      expect(mode).toBe("700\nold-kept\n");
    }
    // kubeadm's record follows the restored data dir, so kubeadm upgrade keeps it.
    const cc = (
      await labExec("cp-1", `${kubectl} get configmap kubeadm-config -o 'jsonpath={.data.ClusterConfiguration}'`)
    ).stdout;
    expect(cc).toContain(`dataDir: ${report.members[0]!.newDataDir}`);
    expect(report.kubeadmConfig).toBe(
      `kubeadm-config etcd.local.dataDir /var/lib/etcd -> ${report.members[0]!.newDataDir}`,
    );
    // Every kubelet (workers too) restarted after the restore, as the Kubernetes docs ask.
    const starts = await kubeletStarts();
    for (const [i, t] of starts.entries()) expect(t).not.toBe(startsBefore[i]);
    // Revisions bumped past anything a watcher saw, where every member's etcdutl can (etcd 3.5.10+).
    const revision = Number(
      /"revision":"?(\d+)/.exec((await labEtcdctl(["endpoint", "status", "-w", "json"])).stdout)?.[1] ?? 0,
    );
    if (report.bumpRevision) expect(revision).toBeGreaterThanOrEqual(report.bumpRevision);
    else expect(report.bumpReason).toContain("not bumped");
    console.log(`restore took ${report.seconds.toFixed(1)} s (${report.apiserver}); ${report.bumpReason}`);
  });

  test("a corrupted snapshot is refused and nothing on any host is touched", async () => {
    const bad = join(work, "corrupt.db");
    const data = readFileSync(snapshot);
    data[Math.floor(data.length / 2)]! ^= 0xff;
    writeFileSync(bad, data, { mode: 0o600 });
    copyFileSync(`${snapshot}.sha256`, `${bad}.sha256`);
    const manifestsBefore = await manifests();
    const dirsBefore = await restoreDirs();
    const idsBefore = await clusterIds();
    const err = await runRestore(spec, bad, { access: KUBEADM_ETCD_ACCESS }).catch((e) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toMatch(/sha256|corrupt/);
    // Without the sidecar the embedded checksum still catches it.
    rmSync(`${bad}.sha256`);
    await expect(runRestore(spec, bad, { access: KUBEADM_ETCD_ACCESS })).rejects.toThrow(
      /embedded .*does not match|corrupted/,
    );
    expect(await manifests()).toEqual(manifestsBefore);
    expect(await restoreDirs()).toEqual(dirsBefore);
    expect(await clusterIds()).toEqual(idsBefore);
  });

  test("a restore that loses a host half-way leaves every node on its old data", async () => {
    await put("kept", 10);
    const manifestsBefore = await manifests();
    const idsBefore = await clusterIds();
    const revertAfter = 75;
    const child = spawn(
      `${PROJECT_ROOT}/node_modules/.bin/bun`,
      [
        `${PROJECT_ROOT}/scripts/etcd-restore.ts`,
        snapshot,
        "--yes",
        "--json",
        "--wait",
        "40",
        "--revert-after",
        String(revertAfter),
        "--spec",
        labPaths.spec,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    let cut = false;
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
      // Once every node is stopped, cp-3 drops off the network.
      if (!cut && (stderr.match(/etcd and kube-apiserver stopped/g) ?? []).length === 3) {
        cut = true;
        void linkDown("cp-3");
      }
    });
    const code = await new Promise<number>((res) => child.on("exit", (c) => res(c ?? -1)));
    await linkUp("cp-3");
    process.stderr.write(stderr);
    expect(cut).toBe(true);
    expect(code).toBe(1);
    const envelope = JSON.parse(stdout) as {
      ok: boolean;
      error: { code: number };
      data: { ok: boolean; rolledBack: { node: string; ok: boolean }[] };
    };
    expect([envelope.ok, envelope.error.code]).toEqual([false, 1]);
    const report = envelope.data;
    expect(report.ok).toBe(false);
    expect(report.rolledBack.find((r) => r.node === "cp-1")?.ok).toBe(true);
    expect(report.rolledBack.find((r) => r.node === "cp-2")?.ok).toBe(true);
    expect(report.rolledBack.find((r) => r.node === "cp-3")?.ok).toBe(false);
    // cp-3's watchdog puts its old manifest back by itself.
    await waitLabEtcdHealthy(revertAfter + 90);
    expect(await manifests()).toEqual(manifestsBefore);
    expect(await clusterIds()).toEqual(idsBefore);
    expect(await count("kept")).toBe(10);
  });

  test("Ctrl-C while the apiservers are being stopped rolls every node back at once, says so, and exits 130", async () => {
    // Runs alone too (-t): then it takes its own backup.
    if (!snapshot)
      snapshot = (await runBackup(spec, { outDir: join(work, "backups"), access: KUBEADM_ETCD_ACCESS })).file;
    await put("kept-int", 10);
    const manifestsBefore = await manifests();
    const idsBefore = await clusterIds();
    expect(await apiserversHealthy()).toBe(true);
    // The default 900 s watchdog: only the command itself can bring the apiservers back in time.
    const child = spawn(
      `${PROJECT_ROOT}/node_modules/.bin/bun`,
      [`${PROJECT_ROOT}/scripts/etcd-restore.ts`, snapshot, "--yes", "--json", "--wait", "40", "--spec", labPaths.spec],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    let interruptedAt = 0;
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
      // The first node reports its apiserver stopped: the others are still stopping.
      if (!interruptedAt && / stop {7}/.test(stderr)) {
        interruptedAt = Date.now();
        child.kill("SIGINT");
      }
    });
    const exit = await new Promise<{ code: number | null; signal: string | null }>((res) =>
      child.on("exit", (code, signal) => res({ code, signal })),
    );
    process.stderr.write(stderr);
    expect(interruptedAt).toBeGreaterThan(0);
    // Back well before any watchdog: every apiserver answers, etcd on its old data dir.
    const deadline = interruptedAt + 60_000;
    while (!(await apiserversHealthy()) && Date.now() < deadline) await Bun.sleep(250);
    const healthy = await apiserversHealthy();
    console.log(
      `apiservers ${healthy ? "healthy" : "still down"} ${((Date.now() - interruptedAt) / 1000).toFixed(1)} s after Ctrl-C`,
    );
    expect(healthy).toBe(true);
    expect(exit).toEqual({ code: 130, signal: null });
    expect(stderr).toMatch(/interrupt .*SIGINT.*roll/);
    const envelope = JSON.parse(stdout) as {
      error: { code: number };
      data: { ok: boolean; status: string; interrupted: string; rolledBack: { node: string; ok: boolean }[] };
    };
    expect(envelope.error.code).toBe(130);
    const report = envelope.data;
    expect([report.ok, report.status, report.interrupted]).toEqual([false, "interrupted", "SIGINT"]);
    expect(report.rolledBack.map((r) => [r.node, r.ok])).toEqual(CPS.map((n) => [n, true]));
    await waitLabEtcdHealthy(30);
    expect(await manifests()).toEqual(manifestsBefore);
    expect(await clusterIds()).toEqual(idsBefore);
    expect(await count("kept-int")).toBe(10);
  });

  test("a host key that does not match known_hosts is refused", async () => {
    const known = readFileSync(labPaths.knownHosts, "utf8");
    const line = (host: string) => known.split("\n").find((l) => l.startsWith(`${host} `))!;
    const cp2Key = line("198.18.0.12").split(" ").slice(1).join(" ");
    const forged = known.replace(line("198.18.0.11"), `198.18.0.11 ${cp2Key}`);
    await expect(
      runBackup(spec, {
        node: "cp-1",
        outDir: join(work, "refused"),
        access: KUBEADM_ETCD_ACCESS,
        connect: { knownHostsText: forged },
      }),
    ).rejects.toThrow(/cp-1 .*HOST KEY MISMATCH/);
  });

  // One test for both OSes (no skip): etcd 3.5 bumps with etcdutl, etcd 3.4 refuses before any change.
  test(`--bump-revision: ${ETCD.etcdutl ? "etcd 3.5 runs etcdutl on every member and lifts the revision" : "etcd 3.4 (no etcdutl) refuses it before anything changes"}`, async () => {
    // Runs alone too (-t): then it takes its own backup.
    if (!snapshot)
      snapshot = (await runBackup(spec, { outDir: join(work, "backups"), access: KUBEADM_ETCD_ACCESS })).file;
    const bump = 1_000_000_000;
    if (!ETCD.etcdutl) {
      const manifestsBefore = await manifests();
      const err = await runRestore(spec, snapshot, { access: KUBEADM_ETCD_ACCESS, bumpRevision: bump }).catch((e) => e);
      expect(err).toBeInstanceOf(UserError);
      expect(err.message).toMatch(/needs etcdutl/);
      expect(await manifests()).toEqual(manifestsBefore);
      return;
    }
    const keys = await count("before");
    const report = await runRestore(spec, snapshot, {
      access: KUBEADM_ETCD_ACCESS,
      bumpRevision: bump,
      waitSeconds: 120,
      revertAfterSeconds: 600,
    });
    expect(report.error).toBeUndefined();
    expect(report.bumpRevision).toBe(bump);
    expect(report.members.map((m) => [m.tool, m.etcdVersion.split(".").slice(0, 2).join(".")])).toEqual(
      CPS.map(() => ["etcdutl", ETCD.etcd]),
    );
    expect(await labEtcdAllHealthy()).toBe(true);
    expect(await count("before")).toBe(keys);
    const status = await labEtcdctl(["endpoint", "status", "-w", "json"]);
    const revisions = [...status.stdout.matchAll(/"revision":(\d+)/g)].map((m) => Number(m[1]));
    expect(revisions).toHaveLength(3);
    for (const r of revisions) expect(r).toBeGreaterThan(bump);
  });
});
