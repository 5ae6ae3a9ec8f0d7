// etcd:recover --from NODE: quorum is lost for good; the surviving member's own data becomes a
// new one-member cluster, as etcd's disaster-recovery guide says: start it once with
// --force-new-cluster (added to the static pod manifest), then remove the flag and start it again.
// Every write that member had is kept; no snapshot is involved. node:replace grows it back.
import { UserError } from "../errors.ts";
import { ETCD_MANIFEST, hasEtcdFlag, withEtcdFlag } from "../etcd/manifest.ts";
import { MANIFEST_BACKUP_DIR } from "../etcd/patch-remote.ts";
import { etcdScript, KUBEADM_ETCD_ACCESS, type NodeEtcd, probeNode } from "../etcd/remote.ts";
import { stamp } from "../etcd/snapshot.ts";
import { etcdctlFlags } from "../etcd/tools-sh.ts";
import { closeAll, connectAll } from "../ops/connect.ts";
import type { Progress } from "../progress.ts";
import { type Remote, sq } from "../remote/ssh.ts";
import type { ClusterSpec, NodeSpec } from "../spec/schema.ts";
import { controlPlanes } from "../spec/topology.ts";
import { etcdView, vipReady } from "./cluster.ts";
import { type PlannedAction, RECOVER_VS_RESTORE } from "./plan.ts";

const FLAG = "force-new-cluster";

export interface RecoverOptions {
  dryRun: boolean;
  timeoutSeconds: number;
  log: Progress;
  confirm: (plan: PlannedAction[]) => Promise<void>;
}

export interface RecoverResult {
  from: string;
  plan: PlannedAction[];
  dryRun: boolean;
  clusterId?: string;
  members?: number;
  /** Seconds from the first change to /readyz through the VIP. */
  secondsToApi?: number;
  backup?: string;
  next: string;
}

/** Whether etcd answers a linearized health check on `endpoint`, asked from the node. */
async function answers(n: NodeEtcd, endpoint: string): Promise<boolean> {
  const r = await etcdScript(
    n.remote,
    `etcd_tools\n"$ETCDCTL" ${etcdctlFlags(KUBEADM_ETCD_ACCESS, endpoint)} --command-timeout=3s endpoint health 2>&1`,
    { timeoutMs: 30_000 },
  ).catch(() => undefined);
  return r?.code === 0 && /is healthy/.test(r.stdout);
}

/** Whether any etcd process listens on the node: a member still running on the old data. */
async function etcdRunsOn(remote: Remote): Promise<boolean> {
  const r = await remote.exec("ss -Hltn '( sport = :2379 or sport = :2380 )' | grep -q . && echo running || true", {
    sudo: true,
    timeoutMs: 20_000,
  });
  return r.stdout.includes("running");
}

/** Whether the endpoint answers at all (status, not health: a member without quorum answers status). */
async function statusAnswers(n: NodeEtcd, endpoint: string): Promise<boolean> {
  const r = await etcdScript(
    n.remote,
    `etcd_tools\n"$ETCDCTL" ${etcdctlFlags(KUBEADM_ETCD_ACCESS, endpoint)} --command-timeout=2s endpoint status 2>&1`,
    { timeoutMs: 20_000 },
  ).catch(() => undefined);
  return r?.code === 0;
}

async function writeManifest(remote: Remote, text: string): Promise<void> {
  const tmp = "/etc/kubernetes/.etcd.yaml.kubeadm-ha";
  await remote.put({ content: text }, tmp, { mode: 0o600, sudo: true });
  await remote.run(`mv ${sq(tmp)} ${sq(ETCD_MANIFEST)}`, { sudo: true, what: "replacing etcd.yaml" });
}

/** Wait until etcd on the node runs without --force-new-cluster (when `without`) and answers healthy. */
async function waitHealthy(n: NodeEtcd, opts: { without: boolean; timeoutSeconds: number; what: string }) {
  const end = Date.now() + opts.timeoutSeconds * 1000;
  for (;;) {
    const old = opts.without
      ? (await n.remote.exec(`ps -eo args | grep -c -- '^etcd .*--${FLAG}' || true`, { sudo: true })).stdout.trim() !==
        "0"
      : false;
    if (!old && (await answers(n, n.endpoint))) return;
    if (Date.now() > end)
      throw new UserError(`${n.node.name}: etcd did not ${opts.what} within ${opts.timeoutSeconds} s.`, 1);
    await Bun.sleep(500);
  }
}

export function recoverPlan(from: string, others: string[]): PlannedAction[] {
  return [
    { host: from, phase: "check", action: "its etcd data is there, and its member has no quorum" },
    {
      host: from,
      phase: "check",
      action: `no other member runs on old data (${others.join(", ")}: etcd not listening, client port not answering)`,
    },
    { host: from, phase: "manifest", action: `back up ${ETCD_MANIFEST}, add --${FLAG}` },
    { host: from, phase: "etcd", action: "etcd starts as a one-member cluster on its own data; wait until healthy" },
    { host: from, phase: "manifest", action: `remove --${FLAG} again; etcd restarts normally` },
    { host: from, phase: "wait", action: "etcd healthy with one member, /readyz through the VIP" },
    { host: "local", phase: "next", action: `node:replace ${others.join(", then ")} (one at a time) to grow back` },
  ];
}

export async function recoverFrom(spec: ClusterSpec, node: NodeSpec, opts: RecoverOptions): Promise<RecoverResult> {
  const log = opts.log;
  if (node.role !== "control-plane")
    throw new UserError(
      `etcd:recover --from ${node.name}: not a control plane; name the control plane whose etcd data survived.`,
    );
  const others = controlPlanes(spec).filter((n) => n.name !== node.name);
  const next = `grow back with bun run node:replace ${others.map((n) => n.name).join(", then ")} (one at a time). ${RECOVER_VS_RESTORE}`;
  const sessions = await connectAll(spec, controlPlanes(spec), { phase: "ssh", log });
  try {
    const mine = sessions.find((s) => s.node.name === node.name)!;
    if (!mine.remote)
      throw new UserError(
        `etcd:recover --from ${node.name}: it does not answer SSH (${mine.error ?? "not connected"}); recover from a control plane that is up. Nothing was changed.`,
      );
    const n = await probeNode(mine.remote, node);
    if (!n.manifest || !n.manifestText)
      throw new UserError(
        `etcd:recover --from ${node.name}: it has no ${ETCD_MANIFEST}: its etcd is not there to recover from. Nothing was changed.`,
      );
    const dataDir = n.manifest.dataDir ?? "/var/lib/etcd";
    const data = await mine.remote.exec(`test -d ${sq(dataDir)}/member && echo yes || true`, { sudo: true });
    if (!data.stdout.includes("yes"))
      throw new UserError(
        `etcd:recover --from ${node.name}: ${dataDir}/member does not exist there: no data to recover from. Use etcd:restore with a snapshot. Nothing was changed.`,
      );
    const interrupted = hasEtcdFlag(n.manifestText, FLAG);
    if (!interrupted && (await answers(n, n.endpoint))) {
      const view = await etcdView(n).catch(() => undefined);
      throw new UserError(
        `etcd:recover --from ${node.name}: etcd still has a quorum (${view ? `${view.health.filter((h) => h.healthy).length} of ${view.health.length} members healthy` : "its member answers healthy"}). Nothing is lost: replace the dead control planes with node:replace, one at a time. Nothing was changed.`,
      );
    }
    const running: string[] = [];
    for (const o of others) {
      const s = sessions.find((x) => x.node.name === o.name)!;
      if (s.remote ? await etcdRunsOn(s.remote) : await statusAnswers(n, `https://${o.address}:2379`))
        running.push(o.name);
    }
    if (running.length && !interrupted)
      throw new UserError(
        `etcd:recover --from ${node.name}: etcd still runs on ${running.join(", ")} with the old cluster's data. A second cluster from those members could accept writes of its own. Stop etcd there (move /etc/kubernetes/manifests/etcd.yaml away) or replace the host, then run etcd:recover again. Nothing was changed.`,
      );
    const plan = recoverPlan(
      node.name,
      others.map((o) => o.name),
    );
    if (opts.dryRun) return { from: node.name, plan, dryRun: true, next };
    await opts.confirm(plan);

    const started = performance.now();
    const original = withEtcdFlag(n.manifestText, FLAG, false);
    const backup = `${MANIFEST_BACKUP_DIR}/etcd.yaml.${stamp()}`;
    await mine.remote.run(
      `install -d -m 0700 ${sq(MANIFEST_BACKUP_DIR)} && cp -p ${sq(ETCD_MANIFEST)} ${sq(backup)} && chmod 0600 ${sq(backup)}`,
      { sudo: true, what: "backing up etcd.yaml" },
    );
    let flagged = interrupted;
    try {
      if (!interrupted) {
        log(node.name, "manifest", `--${FLAG} added (original in ${backup})`);
        await writeManifest(mine.remote, withEtcdFlag(original, FLAG, true));
        flagged = true;
      }
      await waitHealthy(n, {
        without: false,
        timeoutSeconds: opts.timeoutSeconds,
        what: "start as a new one-member cluster",
      });
      log(node.name, "etcd", "one-member cluster on its own data; removing the flag");
    } finally {
      // Also when the start failed: the flag must not stay for the next restart.
      if (flagged) await writeManifest(mine.remote, original);
    }
    await waitHealthy(n, { without: true, timeoutSeconds: opts.timeoutSeconds, what: "restart without the flag" });
    const view = await etcdView(n);
    const end = Date.now() + opts.timeoutSeconds * 1000;
    while ((await vipReady(spec)) !== 200) {
      if (Date.now() > end)
        throw new UserError(`/readyz through the VIP did not answer within ${opts.timeoutSeconds} s.`, 1);
      await Bun.sleep(500);
    }
    const secondsToApi = Math.round((performance.now() - started) / 100) / 10;
    log(node.name, "done", `API serving through the VIP ${secondsToApi} s after the first change; ${next}`);
    return {
      from: node.name,
      plan,
      dryRun: false,
      clusterId: view.clusterId,
      members: view.health.length,
      secondsToApi,
      backup,
      next,
    };
  } finally {
    closeAll(sessions);
  }
}
