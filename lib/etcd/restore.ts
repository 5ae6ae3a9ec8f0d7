// etcd:restore: the whole stacked cluster from one snapshot. Nothing on a host is
// touched until the snapshot is verified and every control plane is reachable;
// from the first stopped node on, any failure or interrupt (SIGINT, SIGTERM) puts
// every node back on its old manifest and data dir at once (and each stopped node
// carries a watchdog that does the same by itself if the tool loses it).
import { randomBytes } from "node:crypto";
import { constants } from "node:os";
import { dirname } from "node:path";
import { UserError } from "../errors.ts";
import { progress } from "../progress.ts";
import { hostProblems } from "../remote/host-problems.ts";
import { type ConnectOptions, connectNode, type Remote, sq } from "../remote/ssh.ts";
import type { ClusterSpec } from "../spec/schema.ts";
import { controlPlanes } from "../spec/topology.ts";
import { pointKubeadmConfigAtRestoredData, type RestoredMember, restartStateConsumers } from "./after-restore.ts";
import { APISERVER_MANIFEST, ETCD_MANIFEST, patchEtcdManifest } from "./manifest.ts";
import { type NodePorts, restoreLockSh, restoreStateDir, rollbackScript, waitPortsClosedSh } from "./node-state.ts";
import {
  type EtcdAccess,
  endpointHealth,
  endpointLeader,
  etcdScriptOk,
  memberList,
  type NodeEtcd,
  probeNode,
  remoteSnapshotStatus,
} from "./remote.ts";
import { type SnapshotStatus, stamp as utcStamp, verifySnapshotFile } from "./snapshot.ts";

export interface RestoreOptions {
  access: EtcdAccess;
  connect?: ConnectOptions;
  dryRun?: boolean;
  /**
   * --bump-revision N --mark-compacted (etcdutl 3.5.10+ / 3.6): a number asks for it (refused where
   * a member lacks it), false turns it off, undefined (the default) uses DEFAULT_BUMP_REVISION
   * wherever every member supports it, as etcd's recovery guide recommends for Kubernetes.
   */
  bumpRevision?: number | false;
  /** Seconds to wait for etcd and the apiserver to come back. */
  waitSeconds?: number;
  /** Seconds after which a stopped node rolls itself back unless the restore was committed. */
  revertAfterSeconds?: number;
  /**
   * Aborted (reason: the signal's name, e.g. "SIGINT") to interrupt: before any change the
   * restore throws; after, it stops waiting and rolls every stopped node back at once.
   */
  signal?: AbortSignal;
  now?: Date;
}

/**
 * etcd's recovery guide: restoring for Kubernetes, bump revisions far past any a client has seen and
 * mark them compacted, so watches (controllers, kubelets) start over instead of missing changes.
 */
export const DEFAULT_BUMP_REVISION = 1_000_000_000;

export interface MemberPlan {
  node: string;
  host: string;
  name: string;
  peerUrl: string;
  endpoint: string;
  oldDataDir: string;
  newDataDir: string;
  etcdVersion: string;
  tool: string;
  ports: NodePorts;
}

export interface RestorePlan {
  file: string;
  sha256: string;
  snapshot?: SnapshotStatus;
  stamp: string;
  token: string;
  initialCluster: string;
  stateDir: string;
  oldClusterId?: string;
  /** --bump-revision used with --mark-compacted, or null (not supported by every member, or turned off). */
  bumpRevision: number | null;
  /** Why bumpRevision is what it is, in one sentence (shown with the plan). */
  bumpReason: string;
  members: MemberPlan[];
  steps: string[];
}

/**
 * planned: --dry-run; restored: done, nothing to report; restored-with-warnings: the cluster runs
 * on the snapshot but something needs a look (each in `warnings`); failed / interrupted: every
 * stopped node was put back (`rolledBack`).
 */
export type RestoreStatus = "planned" | "restored" | "restored-with-warnings" | "failed" | "interrupted";

export interface RestoreReport extends RestorePlan {
  status: RestoreStatus;
  /** true only for planned and restored: a restore with warnings is not ok. */
  ok: boolean;
  warnings: string[];
  newClusterId?: string;
  apiserver?: string;
  /** What happened to kube-system/kubeadm-config's etcd.local.dataDir (absent when it could not be updated: see warnings). */
  kubeadmConfig?: string;
  seconds: number;
  /** The step that was running when the restore failed or was interrupted. */
  stage?: string;
  /** The signal that interrupted it. */
  interrupted?: string;
  rolledBack?: { node: string; ok: boolean; detail: string }[];
  error?: string;
}

/** Exit codes of etcd:restore (README's command table). */
export const RESTORE_EXIT = { ok: 0, failed: 1, warnings: 3 } as const;

/** 0 planned or restored, 1 failed (rolled back), 3 restored with warnings, 128 + signal number when interrupted (130 SIGINT, 143 SIGTERM). */
export function restoreExitCode(r: Pick<RestoreReport, "status" | "interrupted">): number {
  switch (r.status) {
    case "planned":
    case "restored":
      return RESTORE_EXIT.ok;
    case "restored-with-warnings":
      return RESTORE_EXIT.warnings;
    case "interrupted":
      return signalExitCode(r.interrupted);
    default:
      return RESTORE_EXIT.failed;
  }
}

/** 128 + the signal's number, the shell's convention (SIGINT when unknown). */
export function signalExitCode(signal: string | undefined): number {
  const n = constants.signals[signal as keyof typeof constants.signals];
  return 128 + (typeof n === "number" ? n : constants.signals.SIGINT);
}

/** Thrown inside the restore when its signal is aborted. */
class Interrupted extends Error {
  constructor(readonly signal: string) {
    super(`interrupted by ${signal}`);
  }
}

const signalName = (signal: AbortSignal): string =>
  typeof signal.reason === "string" && signal.reason ? signal.reason : "SIGINT";

/** p, or an Interrupted rejection as soon as the signal is aborted (p itself goes on; what it does on the nodes is serialised with their rollback by the restore lock). */
function orInterrupt<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((res, rej) => {
    const onAbort = () => rej(new Interrupted(signalName(signal)));
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        res(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        rej(e);
      },
    );
  });
}

interface Member {
  n: NodeEtcd;
  plan: MemberPlan;
  remote: Remote;
}

const port = (url: string | undefined, fallback: number): number => {
  const m = url ? /:(\d+)(\/|$)/.exec(url.replace(/^[a-z]+:\/\//, "")) : null;
  return m ? Number(m[1]) : fallback;
};

/** Run fn on every member in parallel; wait for all, then throw the first failure. */
async function onAll<T>(members: Member[], fn: (m: Member) => Promise<T>): Promise<T[]> {
  const settled = await Promise.allSettled(members.map(fn));
  const failed = settled.find((s) => s.status === "rejected") as PromiseRejectedResult | undefined;
  if (failed) throw failed.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
}

async function waitUntil<T>(what: string, seconds: number, check: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + seconds * 1000;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) {
      throw new UserError(
        `timed out after ${seconds} s waiting for ${what}${last ? ` (last error: ${(last as Error).message.slice(0, 300)})` : ""}.`,
      );
    }
    await Bun.sleep(500);
  }
}

/** The node whose etcd leads now (every member asked at once; the first answer with a known leader wins). */
async function findLeader(members: Member[], access: EtcdAccess): Promise<string | undefined> {
  const st = await Promise.all(members.map((m) => endpointLeader(m.n, access)));
  const leaderId = st.find((x) => x)?.leader;
  const i = st.findIndex((x) => x && x.memberId === leaderId);
  return i >= 0 ? members[i]!.plan.node : undefined;
}

/** Verify the file, reach and read every control plane, and work out the plan. Touches nothing. */
async function prepare(
  spec: ClusterSpec,
  file: string,
  opts: RestoreOptions,
): Promise<{ plan: RestorePlan; members: Member[] }> {
  progress("local", "verify", file);
  const v = await verifySnapshotFile(file);
  if (!v.sidecarChecked)
    progress("local", "verify", "no .sha256 sidecar; relying on the checksum embedded in the snapshot");
  const cps = controlPlanes(spec);
  const stamp = utcStamp(opts.now);
  const stateDir = restoreStateDir(stamp);
  const remotes = await Promise.allSettled(cps.map((node) => connectNode(spec, node, opts.connect)));
  const unreachable = remotes.flatMap((r, i) =>
    r.status === "rejected"
      ? [{ host: cps[i]!.name, error: r.reason, aliases: [cps[i]!.ssh?.host ?? cps[i]!.address] }]
      : [],
  );
  if (unreachable.length) {
    for (const r of remotes) if (r.status === "fulfilled") r.value.close();
    // One paragraph per distinct problem, naming the control planes it applies to.
    throw new UserError(
      `every control plane must be reachable before a restore starts; nothing was changed.\n\n${hostProblems(unreachable).text}`,
    );
  }
  const members: Member[] = [];
  try {
    for (const [i, r] of remotes.entries()) {
      const remote = (r as PromiseFulfilledResult<Remote>).value;
      const node = cps[i]!;
      const n = await probeNode(remote, node);
      const mf = n.manifest;
      if (!mf?.dataDir) {
        throw new UserError(
          `${node.name}: ${ETCD_MANIFEST} is missing or has no --data-dir; this tool restores kubeadm's stacked etcd only. Nothing was changed.`,
        );
      }
      const apiserverText = await remote.exec(`cat ${sq(APISERVER_MANIFEST)} 2>/dev/null || true`, {
        sudo: true,
        timeoutMs: 30_000,
      });
      const apiPort = Number(/--secure-port=(\d+)/.exec(apiserverText.stdout)?.[1] ?? 6443);
      const oldDataDir = mf.dataDir.replace(/\/+$/, "");
      members.push({
        n,
        remote,
        plan: {
          node: node.name,
          host: remote.host,
          name: mf.name ?? node.name,
          peerUrl: mf.peerUrl ?? `https://${node.address}:2380`,
          endpoint: n.endpoint,
          oldDataDir,
          // A second restore gets /var/lib/etcd-restore-<new>, not .../etcd-restore-<old>-restore-<new>.
          newDataDir: `${oldDataDir.replace(/-restore-\d{8}T\d{6}Z$/, "")}-restore-${stamp}`,
          etcdVersion: n.version,
          tool: n.hasEtcdutl ? "etcdutl" : "etcdctl",
          ports: { etcdClient: port(n.endpoint, 2379), etcdPeer: port(mf.peerUrl, 2380), apiserver: apiPort },
        },
      });
    }
    const versions = new Set(members.map((m) => m.plan.etcdVersion));
    if (versions.size > 1)
      progress(
        "local",
        "plan",
        `members run different etcd versions (${[...versions].join(", ")}); each restores with its own tools`,
      );
    const lacking = members.filter((m) => !m.n.supportsBumpRevision);
    const lackingText = lacking.map((m) => `${m.plan.node} has ${m.plan.tool} ${m.plan.etcdVersion}`).join(", ");
    let bumpRevision: number | null;
    let bumpReason: string;
    if (typeof opts.bumpRevision === "number") {
      if (lacking.length)
        throw new UserError(
          `--bump-revision needs etcdutl with --bump-revision/--mark-compacted (etcd 3.5.10+ or 3.6); ${lackingText} without them. Run without the flag, or upgrade etcd first. Nothing was changed.`,
        );
      bumpRevision = opts.bumpRevision;
      bumpReason = `--bump-revision ${bumpRevision} --mark-compacted, as asked`;
    } else if (opts.bumpRevision === false) {
      bumpRevision = null;
      bumpReason =
        "revisions not bumped (--no-bump-revision): watchers that saw newer revisions may miss changes until they re-list";
    } else if (lacking.length) {
      bumpRevision = null;
      bumpReason = `revisions not bumped: ${lackingText}, without etcdutl --bump-revision (etcd 3.5.10+); the restarts at the end make controllers and kubelets list again`;
    } else {
      bumpRevision = DEFAULT_BUMP_REVISION;
      bumpReason = `--bump-revision ${DEFAULT_BUMP_REVISION} --mark-compacted (etcd's recovery guide for Kubernetes; --no-bump-revision turns it off)`;
    }
    const exists = await onAll(members, async (m) => {
      const r = await m.remote.exec(`test -e ${sq(m.plan.newDataDir)} || test -e ${sq(stateDir)}`, {
        sudo: true,
        timeoutMs: 30_000,
      });
      return r.code === 0 ? m.plan.node : "";
    });
    if (exists.some(Boolean))
      throw new UserError(
        `${exists.filter(Boolean).join(", ")}: ${members[0]!.plan.newDataDir} or ${stateDir} already exists; wait a second and run again. Nothing was changed.`,
      );
    const oldClusterId = await memberList(members[0]!.n, opts.access)
      .then((l) => l.clusterId || undefined)
      .catch(() => undefined);
    const initialCluster = members.map((m) => `${m.plan.name}=${m.plan.peerUrl}`).join(",");
    const token = `kubeadm-ha-restore-${stamp.toLowerCase()}-${randomBytes(3).toString("hex")}`;
    const plan: RestorePlan = {
      file,
      sha256: v.sha256,
      snapshot: v.status,
      stamp,
      token,
      initialCluster,
      stateDir,
      oldClusterId,
      bumpRevision,
      bumpReason,
      members: members.map((m) => m.plan),
      steps: [
        `upload the snapshot to ${stateDir}/snapshot.db (0600) on ${members.map((m) => m.plan.node).join(", ")} and check its sha256 there`,
        `stop: copy etcd.yaml and kube-apiserver.yaml to ${stateDir}/orig, arm a ${opts.revertAfterSeconds ?? 900} s self-rollback, move both out of /etc/kubernetes/manifests, wait until etcd and the apiserver stopped listening`,
        ...members.map(
          (m) =>
            `${m.plan.node}: ${m.plan.tool} snapshot restore --name ${m.plan.name} --initial-advertise-peer-urls ${m.plan.peerUrl} --data-dir ${m.plan.newDataDir}${bumpRevision ? ` --bump-revision ${bumpRevision} --mark-compacted` : ""}`,
        ),
        `all members: --initial-cluster ${initialCluster} --initial-cluster-token ${token}`,
        `patch etcd.yaml (--data-dir, etcd-data mount and hostPath -> the new dir; original kept in ${stateDir}/orig) and put it back; old data dirs stay untouched`,
        "wait until every member is healthy, the member list has every node and the cluster ID is new",
        `put kube-apiserver.yaml back and wait until https://${spec.controlPlaneEndpoint.vip}:${spec.controlPlaneEndpoint.port}/healthz answers`,
        "on any failure: every node back to its old manifests and data dir",
        "once verified: commit, point kube-system/kubeadm-config etcd.local.dataDir at the restored dir, restart kube-controller-manager and kube-scheduler on every control plane and the kubelet on every node",
        bumpReason,
      ],
    };
    return { plan, members };
  } catch (e) {
    for (const r of remotes) if (r.status === "fulfilled") r.value.close();
    throw e;
  }
}

export function planText(plan: RestorePlan): string {
  const rows = plan.members.map(
    (m) =>
      `  ${m.node.padEnd(10)} ${m.name.padEnd(10)} ${m.peerUrl.padEnd(28)} ${m.oldDataDir} -> ${m.newDataDir}  (${m.tool} ${m.etcdVersion})`,
  );
  const s = plan.snapshot;
  return [
    `restore plan for ${plan.file}`,
    `  sha256 ${plan.sha256}${s ? `, revision ${s.revision}, ${s.totalKeys} keys, ${s.totalSize} bytes` : ""}`,
    `  current cluster ID ${plan.oldClusterId ?? "(unknown: etcd not answering)"}`,
    "members:",
    ...rows,
    "steps:",
    ...plan.steps.map((s, i) => `  ${i + 1}. ${s}`),
  ].join("\n");
}

export async function runRestore(
  spec: ClusterSpec,
  file: string,
  opts: RestoreOptions,
  confirm?: (plan: RestorePlan) => Promise<boolean>,
): Promise<RestoreReport> {
  const t0 = Date.now();
  const signal = opts.signal;
  const untouched = (e: unknown) => {
    if (e instanceof Interrupted)
      throw new UserError(`etcd:restore ${e.message} before anything was changed.`, signalExitCode(e.signal));
    throw e;
  };
  const preparing = prepare(spec, file, opts);
  const { plan, members } = await orInterrupt(preparing, signal).catch((e) => {
    // Interrupted while connecting: close the sessions once they are open.
    if (e instanceof Interrupted)
      preparing
        .then((p) => {
          for (const m of p.members) m.remote.close();
        })
        .catch(() => undefined);
    return untouched(e);
  });
  const closeAll = () => {
    for (const m of members) m.remote.close();
  };
  if (opts.dryRun) {
    closeAll();
    return { ...plan, status: "planned", ok: true, warnings: [], seconds: (Date.now() - t0) / 1000 };
  }
  const confirmed = await (confirm ? orInterrupt(confirm(plan), signal) : Promise.resolve(true)).catch((e) => {
    closeAll();
    return untouched(e);
  });
  if (!confirmed) {
    closeAll();
    throw new UserError("restore not confirmed; nothing was changed.");
  }
  const wait = opts.waitSeconds ?? 180;
  const revertAfter = opts.revertAfterSeconds ?? 900;
  const S = plan.stateDir;
  const stopped = new Set<string>();
  const warnings: string[] = [];
  let stage = "upload";
  /** Run a stage's work on the nodes, giving up on it at once when interrupted. */
  const step = <T>(name: string, p: () => Promise<T>): Promise<T> => {
    stage = name;
    if (signal?.aborted) return Promise.reject(new Interrupted(signalName(signal)));
    return orInterrupt(p(), signal);
  };
  const lock = restoreLockSh(S);
  try {
    // 1. Upload while everything still runs: the cluster is down for less time.
    await step("upload", () =>
      onAll(members, async (m) => {
        progress(m.plan.node, "upload", `${S}/snapshot.db`);
        await m.remote.run(`install -d -m 0700 ${sq(S)} ${sq(`${S}/orig`)} && chown ${sq(m.remote.user)} ${sq(S)}`, {
          sudo: true,
          timeoutMs: 30_000,
        });
        // Hashed on the node as it arrives: no second read of the copy there.
        const sha = await m.remote.putHashed(file, `${S}/snapshot.db`, { mode: 0o600 });
        if (sha !== plan.sha256)
          throw new UserError(
            `${m.plan.node}: uploaded snapshot has sha256 ${sha}, expected ${plan.sha256}; the copy is corrupt.`,
          );
        await m.remote.put({ content: rollbackScript(S, m.plan.ports) }, `${S}/rollback.sh`, {
          mode: 0o700,
          sudo: true,
        });
        await m.remote.run(`chown -R root:root ${sq(S)}`, { sudo: true, timeoutMs: 30_000 });
      }),
    );
    if (!plan.snapshot) {
      // No etcd tool on this machine: let the first member's etcd read the file before anything stops.
      const st = await step("verify", () => remoteSnapshotStatus(members[0]!.n, `${S}/snapshot.db`)).catch(
        (e: Error) => {
          if (e instanceof Interrupted) throw e;
          throw new UserError(
            `${file}: etcd on ${members[0]!.plan.node} cannot read this snapshot (${e.message.slice(0, 200)}); it is corrupted.`,
          );
        },
      );
      plan.snapshot = st;
      progress(members[0]!.plan.node, "verify", `snapshot status: revision ${st.revision}, ${st.totalKeys} keys`);
    }

    // 2. Stop apiservers and etcd everywhere: originals saved first, self-rollback armed, then moved aside.
    // A leader that gets SIGTERM hands leadership to a connected peer and waits for it (up to
    // etcd's request timeout, ~7 s) even when that peer is stopping too. So the followers go
    // first, together with every apiserver; the leader, left without peers, then exits at once.
    const leaderNode = await step("stop", () => findLeader(members, opts.access));
    const stopOn = async (m: Member, first: boolean) => {
      const { ports } = m.plan;
      const etcdNow = !first || leaderNode === undefined || m.plan.node !== leaderNode;
      // The watchdog must not inherit the lock (fd 9): it would hold it while it sleeps.
      const setup = first
        ? `cp -p ${sq(ETCD_MANIFEST)} "$S/orig/etcd.yaml"
if [ -f ${sq(APISERVER_MANIFEST)} ]; then cp -p ${sq(APISERVER_MANIFEST)} "$S/orig/kube-apiserver.yaml"; fi
setsid nohup bash "$S/rollback.sh" --after ${revertAfter} >"$S/watchdog.log" 2>&1 </dev/null 9>&- &
echo $! >"$S/watchdog.pid"`
        : "";
      const gone = etcdNow ? `${ports.apiserver} ${ports.etcdClient} ${ports.etcdPeer}` : `${ports.apiserver}`;
      // Nothing new stops once interrupted; a stop already on its way meets the rollback at the lock.
      if (signal?.aborted) throw new Interrupted(signalName(signal));
      stopped.add(m.plan.node);
      await etcdScriptOk(
        m.remote,
        `S=${sq(S)}
${lock}
${setup}
rm -f ${sq(APISERVER_MANIFEST)}${etcdNow ? ` ${sq(ETCD_MANIFEST)}` : ""}
exec 9>&-
${waitPortsClosedSh}
wait_ports_closed ${wait} ${gone} || { echo "etcd or kube-apiserver still listening ${wait} s after their manifests were moved away" >&2; exit 1; }`,
        "stopping etcd and kube-apiserver",
        { timeoutMs: (wait + 30) * 1000 },
      );
      progress(
        m.plan.node,
        "stop",
        etcdNow ? "etcd and kube-apiserver stopped" : "kube-apiserver stopped; etcd (leader) stops after its followers",
      );
    };
    await step("stop", () => onAll(members, (m) => stopOn(m, true)));
    const leader = members.find((m) => m.plan.node === leaderNode);
    if (leader) await step("stop", () => stopOn(leader, false));

    // 3. Restore each member from the same snapshot into a new data dir (nothing live changes here).
    await step("restore", () =>
      onAll(members, async (m) => {
        const p = m.plan;
        const bump = plan.bumpRevision ? ` --bump-revision ${plan.bumpRevision} --mark-compacted` : "";
        progress(p.node, "restore", `${p.tool} snapshot restore -> ${p.newDataDir}`);
        await etcdScriptOk(
          m.remote,
          `etcd_tools
S=${sq(S)}
cd "$S"
snaptool snapshot restore ${sq(`${S}/snapshot.db`)} --name ${sq(p.name)} --initial-cluster ${sq(plan.initialCluster)} --initial-cluster-token ${sq(plan.token)} --initial-advertise-peer-urls ${sq(p.peerUrl)} --data-dir ${sq(p.newDataDir)}${bump} >"$S/restore.log" 2>&1 || { tail -n 5 "$S/restore.log" >&2; exit 1; }
chmod 0700 ${sq(p.newDataDir)}
if [ -d ${sq(p.oldDataDir)} ]; then chown -R --reference=${sq(p.oldDataDir)} ${sq(p.newDataDir)}; fi`,
          "etcd snapshot restore",
          { timeoutMs: 30 * 60_000 },
        );
      }),
    );

    // 4. Start etcd on the new data dirs.
    await step("start etcd", () =>
      onAll(members, async (m) => {
        const orig = await m.remote.run(`cat ${sq(`${S}/orig/etcd.yaml`)}`, { sudo: true, timeoutMs: 30_000 });
        const patched = patchEtcdManifest(orig, m.plan.newDataDir, `${m.plan.node}:${ETCD_MANIFEST}`);
        await m.remote.put({ content: patched }, `${S}/etcd.yaml.restored`, { mode: 0o600, sudo: true });
        if (signal?.aborted) throw new Interrupted(signalName(signal));
        // Same mode and owner as the original; moved in with one rename so the kubelet never reads half a file.
        await etcdScriptOk(
          m.remote,
          `${lock}
cd ${sq(S)}
chmod --reference=orig/etcd.yaml etcd.yaml.restored
chown --reference=orig/etcd.yaml etcd.yaml.restored
cp -p etcd.yaml.restored ${sq(`${dirname(ETCD_MANIFEST)}/.etcd.yaml.kubeadm-ha`)}
mv ${sq(`${dirname(ETCD_MANIFEST)}/.etcd.yaml.kubeadm-ha`)} ${sq(ETCD_MANIFEST)}`,
          "installing the patched etcd.yaml",
          { timeoutMs: 30_000 },
        );
        progress(m.plan.node, "start", `etcd.yaml -> ${m.plan.newDataDir}`);
      }),
    );

    // 5. Healthy members, complete member list, one new cluster ID.
    const expected = new Map(members.map((m) => [m.plan.name, m.plan.peerUrl]));
    const ids = await step("etcd health", () =>
      waitUntil("all etcd members healthy with a complete member list", wait, async () => {
        const health = await Promise.all(members.map((m) => endpointHealth(m.n, opts.access)));
        if (!health.every((h) => h.healthy)) return undefined;
        const lists = await Promise.all(members.map((m) => memberList(m.n, opts.access)));
        for (const l of lists) {
          if (l.members.length !== expected.size) return undefined;
          for (const mem of l.members) if (expected.get(mem.name) !== mem.peerUrls[0]) return undefined;
        }
        return lists.map((l) => l.clusterId);
      }),
    );
    const newClusterId = ids[0]!;
    if (new Set(ids).size !== 1)
      throw new UserError(
        `members report different cluster IDs (${ids.join(", ")}): the restore produced a split cluster.`,
      );
    if (plan.oldClusterId && newClusterId === plan.oldClusterId) {
      throw new UserError(
        `cluster ID is still ${newClusterId}: etcd is running on the old data, not the restored one.`,
      );
    }
    progress(
      "cluster",
      "etcd",
      `${members.length}/${members.length} healthy, cluster ID ${plan.oldClusterId ?? "?"} -> ${newClusterId}`,
    );

    // 6. Apiservers back; the VIP must answer.
    await step("start apiservers", () =>
      onAll(members, (m) =>
        etcdScriptOk(
          m.remote,
          `${lock}
if [ -f ${sq(`${S}/orig/kube-apiserver.yaml`)} ]; then cp -p ${sq(`${S}/orig/kube-apiserver.yaml`)} ${sq(APISERVER_MANIFEST)}; fi`,
          "putting kube-apiserver.yaml back",
          { timeoutMs: 30_000 },
        ),
      ),
    );
    const vip = `https://${spec.controlPlaneEndpoint.vip}:${spec.controlPlaneEndpoint.port}/healthz`;
    const direct = members.map((m) => `https://${m.n.node.address}:${m.plan.ports.apiserver}/healthz`);
    let directSince = 0;
    const apiserver = await step("apiserver health", () =>
      waitUntil(`the apiserver at ${vip}`, wait, async () => {
        const r = await members[0]!.remote.exec(`curl -ksf --max-time 3 ${sq(vip)}`, { timeoutMs: 15_000 });
        if (r.code === 0) return { text: `${vip} answered ${r.stdout.trim() || "200"}`, vipOk: true };
        // Every apiserver healthy but the VIP silent for a while: the restore worked and the
        // load balancer is the problem; say so instead of undoing a good restore.
        const each = await Promise.all(
          members.map((m, i) => m.remote.exec(`curl -ksf --max-time 3 ${sq(direct[i]!)}`, { timeoutMs: 15_000 })),
        );
        if (!each.every((x) => x.code === 0)) {
          directSince = 0;
          return undefined;
        }
        directSince ||= Date.now();
        return Date.now() - directSince > 15_000
          ? { text: `every apiserver answers /healthz directly; ${vip} does not`, vipOk: false }
          : undefined;
      }),
    );
    if (!apiserver.vipOk)
      warnings.push(
        `every apiserver answers /healthz directly but ${vip} does not: check keepalived and haproxy on the control planes (bun run verify names the broken piece).`,
      );
    progress("cluster", "apiserver", apiserver.text);

    // 7. Commit: the watchdogs stand down. Past this point a rollback would split the cluster
    // (committed nodes stay), so an interrupt no longer undoes anything and a node that cannot
    // be committed is a warning with the command that saves it.
    stage = "commit";
    const committed = await Promise.allSettled(
      members.map((m) =>
        etcdScriptOk(
          m.remote,
          `${lock}
date -u +%FT%TZ >${sq(`${S}/committed`)}
kill "$(cat ${sq(`${S}/watchdog.pid`)})" 2>/dev/null || true
rm -f ${sq(`${S}/snapshot.db`)}`,
          "committing the restore",
          { timeoutMs: 30_000 },
        ),
      ),
    );
    for (const [i, c] of committed.entries()) {
      if (c.status === "fulfilled") continue;
      const node = members[i]!.plan.node;
      warnings.push(
        `${node}: the restore could not be committed there (${(c.reason as Error).message.slice(0, 200)}); its watchdog puts the OLD etcd.yaml back ${revertAfter} s after it was stopped, which breaks that member. Run on ${node} now: sudo sh -c 'date > ${S}/committed; kill "$(cat ${S}/watchdog.pid)"'`,
      );
    }
    if (signal?.aborted)
      warnings.push(
        `${signalName(signal)} arrived after the restored cluster was verified; the restore was committed instead of rolled back.`,
      );

    // 8. Committed: kubeadm's record and the state caches follow the restored cluster. Failures
    // here are warnings with the fix; nothing is undone for them.
    stage = "after restore";
    const restored: RestoredMember[] = members.map((m) => ({
      node: m.plan.node,
      remote: m.remote,
      oldDataDir: m.plan.oldDataDir,
      newDataDir: m.plan.newDataDir,
    }));
    const kubeadmConfig = await pointKubeadmConfigAtRestoredData(restored, S).catch((e: Error) => {
      warnings.push(
        `kube-system/kubeadm-config still names the old etcd data dir, so the next kubeadm upgrade would bring etcd back on the pre-restore data: ${e.message}`,
      );
      return undefined;
    });
    warnings.push(...(await restartStateConsumers(spec, restored, S, wait)));
    const status: RestoreStatus = warnings.length ? "restored-with-warnings" : "restored";
    return {
      ...plan,
      status,
      ok: status === "restored",
      warnings,
      newClusterId,
      apiserver: apiserver.text,
      kubeadmConfig,
      seconds: (Date.now() - t0) / 1000,
    };
  } catch (e) {
    const error = (e as Error).message;
    const interrupted = e instanceof Interrupted ? e.signal : undefined;
    const back = members.filter((m) => stopped.has(m.plan.node)).map((m) => m.plan.node);
    progress(
      "cluster",
      interrupted ? "interrupt" : "rollback",
      `${interrupted ? `${interrupted} during ${stage}` : `restore failed during ${stage}: ${error.slice(0, 300)}`}; rolling back ${back.join(", ") || "nothing (no node was stopped)"} now`,
    );
    const rolledBack = await Promise.all(
      members.map(async (m) => {
        if (!stopped.has(m.plan.node)) return { node: m.plan.node, ok: true, detail: "never stopped; untouched" };
        try {
          const out = await m.remote.run(`bash ${sq(`${S}/rollback.sh`)}`, {
            sudo: true,
            timeoutMs: 150_000,
            what: "rollback",
          });
          const said = out.trim().split("\n").pop() || "old manifests in place";
          progress(m.plan.node, "rollback", said);
          if (said.startsWith("committed"))
            return { node: m.plan.node, ok: false, detail: `was already committed: left on ${m.plan.newDataDir}` };
          return { node: m.plan.node, ok: true, detail: `${said}; etcd on ${m.plan.oldDataDir}` };
        } catch (re) {
          const d = `could not roll back now (${(re as Error).message.slice(0, 200)}); its watchdog puts the old manifests back ${revertAfter} s after the stop, or run: sudo bash ${S}/rollback.sh`;
          progress(m.plan.node, "rollback", d);
          return { node: m.plan.node, ok: false, detail: d };
        }
      }),
    );
    return {
      ...plan,
      status: interrupted ? "interrupted" : "failed",
      ok: false,
      warnings,
      error: interrupted ? `interrupted by ${interrupted} during ${stage}` : error,
      stage,
      interrupted,
      rolledBack,
      seconds: (Date.now() - t0) / 1000,
    };
  } finally {
    closeAll();
  }
}

export function reportText(r: RestoreReport): string {
  if (r.status === "failed" || r.status === "interrupted") {
    return [
      r.status === "interrupted"
        ? `RESTORE INTERRUPTED by ${r.interrupted} during ${r.stage} after ${r.seconds.toFixed(1)} s`
        : `RESTORE FAILED during ${r.stage} after ${r.seconds.toFixed(1)} s: ${r.error}`,
      "every stopped node was put back on its old manifests and data dir:",
      ...(r.rolledBack ?? []).map((x) => `  ${x.node.padEnd(10)} ${x.ok ? "ok  " : "LATE"} ${x.detail}`),
      `original manifests are kept in ${r.stateDir}/orig on each node.`,
    ].join("\n");
  }
  return [
    `restored ${r.file} in ${r.seconds.toFixed(1)} s${r.warnings.length ? `, WITH ${r.warnings.length} WARNING${r.warnings.length > 1 ? "S" : ""}` : ""}`,
    `  cluster ID ${r.oldClusterId ?? "?"} -> ${r.newClusterId}; ${r.apiserver}`,
    ...r.members.map(
      (m) =>
        `  ${m.node.padEnd(10)} now on ${m.newDataDir} (old data kept in ${m.oldDataDir}; original etcd.yaml in ${r.stateDir}/orig)`,
    ),
    ...r.warnings.map((w) => `WARNING: ${w}`),
    "Check your workloads; delete the old data dirs once you are satisfied.",
  ].join("\n");
}
