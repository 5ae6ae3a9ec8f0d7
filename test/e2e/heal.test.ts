// Healing on the lab, one applied lab for every scenario (each full apply costs minutes):
// a control plane's disk destroyed and node:replace (keys kept, etcd 3/3 with the same cluster
// ID, the VIP answering but for the failover), then a worker's.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { LAB, labBreakDisk, labDown, labEtcdctl, labExec, labPaths, requireLab } from "../lab/lab.ts";
import { BUN, envelopeOf, ROOT } from "../unit/cli-helpers.ts";
import { applyLab, STACK_DIR } from "./apply.ts";
import { outage, startPoller } from "./poller.ts";

const guard = requireLab();
/** The longest the VIP may fail after a control plane dies (keepalived + haproxy failover, README). */
const FAILOVER_BOUND_MS = 3000;

async function heal(args: string[]) {
  const started = performance.now();
  const proc = Bun.spawn([BUN, ...args, "--spec", labPaths.spec, "--stack-dir", STACK_DIR, "--yes", "--json"], {
    cwd: ROOT,
    env: { ...process.env, KUBEADM_HA_SECRETS_DIR: labPaths.secretsDir, CLUSTER_SPEC: undefined },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (code !== 0) process.stderr.write(stderr.slice(-6000));
  return {
    code,
    stdout,
    stderr,
    seconds: (performance.now() - started) / 1000,
    envelope: envelopeOf({ code, stdout, stderr }),
  };
}

const put = async (key: string, value: string, endpoints?: string[]) => {
  const r = await labEtcdctl(["put", key, value], { endpoints });
  expect(r.code).toBe(0);
};
const keys = async (prefix: string) =>
  (await labEtcdctl(["get", prefix, "--prefix", "--keys-only"])).stdout.split("\n").filter(Boolean).sort();
const members = async () => {
  const r = await labEtcdctl(["member", "list", "-w", "json"]);
  const j = JSON.parse(r.stdout) as {
    header: { cluster_id: number };
    members: { name: string; clientURLs?: string[] }[];
  };
  return { clusterId: /"cluster_id":(\d+)/.exec(r.stdout)![1]!, members: j.members };
};
const healthyCount = async () =>
  ((await labEtcdctl(["endpoint", "health", "--cluster"])).stdout.match(/is healthy/g) ?? []).length;

describe.skipIf(guard.skip)("healing on the lab", () => {
  beforeAll(async () => {
    await applyLab({ log: !!process.env.KHA_E2E_VERBOSE });
  }, 900_000);
  afterAll(async () => {
    if (!process.env.KHA_KEEP_LAB) await labDown();
  }, 300_000);

  let before: Awaited<ReturnType<typeof members>>;
  let poller: ReturnType<typeof startPoller>;
  let faultAt = 0;
  const cp = ["https://198.18.0.11:2379", "https://198.18.0.13:2379"];

  test("lab break --disk: the host answers SSH, its etcd, data and /etc/kubernetes are gone", async () => {
    // cp-2, which the next test replaces: keys written before, the VIP watched from the fault on.
    before = await members();
    for (let i = 0; i < 20; i++) await put(`heal/before/${i}`, String(i));
    poller = startPoller(LAB.vip, LAB.port);
    faultAt = poller.now();
    await labBreakDisk("cp-2");
    const r = await labExec(
      "cp-2",
      "test -e /etc/kubernetes/admin.conf || test -e /var/lib/etcd/member || test -e /etc/kubeadm-ha; echo $?",
    );
    expect(r.stdout.trim()).toBe("1");
    const ssh = Bun.spawnSync([
      "ssh",
      "-F",
      "/dev/null",
      "-i",
      labPaths.key,
      "-o",
      "BatchMode=yes",
      "-o",
      `UserKnownHostsFile=${labPaths.knownHosts}`,
      "-o",
      "StrictHostKeyChecking=yes",
      `${LAB.user}@198.18.0.12`,
      "true",
    ]);
    expect(ssh.exitCode).toBe(0);
    expect(await healthyCount()).toBe(2);
  }, 120_000);

  test("node:replace of a control plane whose disk died: every key kept, etcd 3/3 with the same cluster ID, the VIP answering", async () => {
    // Writes while the node is gone and being replaced.
    let writing = true;
    let written = 0;
    const writer = (async () => {
      while (writing) {
        await put(`heal/during/${written}`, "x", cp);
        written++;
        await Bun.sleep(200);
      }
    })();
    const r = await heal(["scripts/node-replace.ts", "cp-2"]);
    writing = false;
    await writer;
    const samples = await poller.stop();
    expect(r.code).toBe(0);
    expect(r.envelope.ok).toBe(true);
    expect(r.envelope.data.removedMember).toBeString();
    process.stderr.write(
      `node:replace cp-2: ${r.seconds.toFixed(1)} s (terraform ${r.envelope.data.terraformSeconds} s)\n`,
    );
    const after = await members();
    expect(after.clusterId).toBe(before.clusterId);
    expect(after.members.map((m) => m.name).sort()).toEqual(["cp-1", "cp-2", "cp-3"]);
    expect(await healthyCount()).toBe(3);
    expect(await keys("heal/before/")).toHaveLength(20);
    expect(await keys("heal/during/")).toHaveLength(written);
    expect(written).toBeGreaterThan(5);
    const o = outage(samples, faultAt);
    process.stderr.write(
      `VIP during the replacement: ${o.failed} of ${o.total} failed, last ${o.lastFailureAfterFaultMs} ms after the start\n`,
    );
    expect(o.lastFailureAfterFaultMs).toBeLessThanOrEqual(FAILOVER_BOUND_MS);
    // The join ran with a fresh token on the replaced host.
    expect((await labExec("cp-2", "cat /var/log/kubeadm-standin.log")).stdout).toMatch(/ kubeadm join /);
  }, 600_000);

  test("node:replace of a worker whose disk died", async () => {
    await labBreakDisk("worker-1");
    const r = await heal(["scripts/node-replace.ts", "worker-1"]);
    expect(r.code).toBe(0);
    process.stderr.write(`node:replace worker-1: ${r.seconds.toFixed(1)} s\n`);
    expect((await labExec("worker-1", "test -s /etc/kubernetes/kubelet.conf && echo joined")).stdout.trim()).toBe(
      "joined",
    );
  }, 600_000);
});
