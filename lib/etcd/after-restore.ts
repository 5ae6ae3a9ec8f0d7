// What a restored cluster needs once etcd and the apiservers run on the snapshot (the
// Kubernetes docs' restore steps and kubeadm's own record): kubeadm-config points at the
// restored data dir, and everything that watched the old revisions starts over.
import { parse, stringify } from "yaml";
import { progress } from "../progress.ts";
import { connectNode, type Remote, sq } from "../remote/ssh.ts";
import type { ClusterSpec } from "../spec/schema.ts";
import { workers } from "../spec/topology.ts";
import { waitPortsClosedSh } from "./node-state.ts";

const ADMIN_CONF = "/etc/kubernetes/admin.conf";
const kubectl = `kubectl --kubeconfig ${ADMIN_CONF} -n kube-system`;

export interface RestoredMember {
  node: string;
  remote: Remote;
  oldDataDir: string;
  newDataDir: string;
}

/**
 * kubeadm keeps etcd's data dir in ClusterConfiguration (ConfigMap kube-system/kubeadm-config) and
 * regenerates etcd.yaml from it on `kubeadm upgrade`: left at the old dir, the next upgrade would
 * start etcd on the pre-restore data. Returns what it did, or throws with the reason.
 */
export async function pointKubeadmConfigAtRestoredData(members: RestoredMember[], stateDir: string): Promise<string> {
  const dirs = new Set(members.map((m) => m.newDataDir));
  if (dirs.size !== 1)
    throw new Error(
      `members were restored into different data dirs (${[...dirs].join(", ")}); kubeadm-config holds one, set etcd.local.dataDir in kube-system/kubeadm-config by hand`,
    );
  const newDir = [...dirs][0]!;
  const olds = new Set(members.map((m) => m.oldDataDir));
  let admin: RestoredMember | undefined;
  for (const m of members) {
    if ((await m.remote.exec(`test -f ${ADMIN_CONF}`, { sudo: true, timeoutMs: 30_000 })).code === 0) {
      admin = m;
      break;
    }
  }
  if (!admin) throw new Error(`no control plane has ${ADMIN_CONF}, so kube-system/kubeadm-config could not be read`);
  const text = await admin.remote.run(
    `${kubectl} get configmap kubeadm-config -o 'jsonpath={.data.ClusterConfiguration}'`,
    { sudo: true, timeoutMs: 60_000, what: "reading kube-system/kubeadm-config" },
  );
  const config = (parse(text) ?? {}) as { etcd?: { local?: { dataDir?: string }; external?: unknown } };
  if (config.etcd?.external) throw new Error("kubeadm-config names an external etcd; it was left as it is");
  const current = (config.etcd?.local?.dataDir ?? "/var/lib/etcd").replace(/\/+$/, "");
  if (current === newDir) return `kubeadm-config already names ${newDir}`;
  if (!olds.has(current))
    throw new Error(
      `kubeadm-config names etcd data dir ${current}, which none of the members used before the restore; set etcd.local.dataDir to ${newDir} by hand if that is right`,
    );
  config.etcd = { ...config.etcd, local: { ...config.etcd?.local, dataDir: newDir } };
  const patch = `${stateDir}/kubeadm-config.patch.json`;
  await admin.remote.put({ content: JSON.stringify({ data: { ClusterConfiguration: stringify(config) } }) }, patch, {
    mode: 0o600,
    sudo: true,
  });
  await admin.remote.run(`${kubectl} patch configmap kubeadm-config --type merge --patch-file ${sq(patch)}`, {
    sudo: true,
    timeoutMs: 60_000,
    what: "updating kube-system/kubeadm-config",
  });
  progress(admin.node, "kubeadm-config", `etcd.local.dataDir ${current} -> ${newDir}`);
  return `kubeadm-config etcd.local.dataDir ${current} -> ${newDir}`;
}

/** Static pods that cache API state (informers) and must start over on the restored revisions. */
const CONTROLLERS = [
  { name: "kube-controller-manager", port: 10257 },
  { name: "kube-scheduler", port: 10259 },
];

/**
 * The Kubernetes docs' last restore step: restart kube-controller-manager and kube-scheduler on
 * every control plane (their manifests moved out and back, as the kubelet restarts static pods)
 * and the kubelet on every node, so nothing acts on state newer than the snapshot.
 * Returns one warning per node where that could not be done.
 */
export async function restartStateConsumers(
  spec: ClusterSpec,
  members: RestoredMember[],
  stateDir: string,
  waitSeconds: number,
): Promise<string[]> {
  const warnings: string[] = [];
  const onControlPlane = async (m: RestoredMember) => {
    for (const c of CONTROLLERS) {
      const manifest = `/etc/kubernetes/manifests/${c.name}.yaml`;
      const aside = `${stateDir}/restart-${c.name}.yaml`;
      const out = await m.remote.run(
        `if [ ! -f ${sq(manifest)} ]; then echo absent; exit 0; fi
mv ${sq(manifest)} ${sq(aside)}
${waitPortsClosedSh}
wait_ports_closed ${waitSeconds} ${c.port} || echo "still listening"
mv ${sq(aside)} ${sq(manifest)}
echo restarted`,
        { sudo: true, timeoutMs: (waitSeconds + 30) * 1000, what: `restarting ${c.name}` },
      );
      if (!out.includes("absent")) progress(m.node, "restart", `${c.name}: ${out.trim().split("\n").pop()}`);
    }
    await m.remote.run("systemctl restart kubelet", { sudo: true, timeoutMs: 60_000, what: "restarting the kubelet" });
    progress(m.node, "restart", "kubelet restarted");
  };
  const onWorker = async (name: string) => {
    const node = workers(spec).find((w) => w.name === name)!;
    const remote = await connectNode(spec, node);
    try {
      await remote.run("systemctl restart kubelet", { sudo: true, timeoutMs: 60_000, what: "restarting the kubelet" });
      progress(name, "restart", "kubelet restarted");
    } finally {
      remote.close();
    }
  };
  const jobs: [string, Promise<void>][] = [
    ...members.map((m): [string, Promise<void>] => [m.node, onControlPlane(m)]),
    ...workers(spec).map((w): [string, Promise<void>] => [w.name, onWorker(w.name)]),
  ];
  const results = await Promise.allSettled(jobs.map(([, p]) => p));
  for (const [i, r] of results.entries()) {
    if (r.status === "fulfilled") continue;
    const node = jobs[i]![0];
    warnings.push(
      `${node}: could not restart kube-controller-manager/kube-scheduler/kubelet after the restore (${(r.reason as Error).message.slice(0, 200)}); restart them there (move the two manifests out of /etc/kubernetes/manifests and back, then systemctl restart kubelet)`,
    );
  }
  return warnings;
}
