// certs:renew: every control plane's kubeadm certificates renewed and loaded, one control plane at
// a time, each only while the whole cluster is healthy (etcd: every member; the other apiservers
// ready), so the cluster keeps its quorum and the VIP always has an apiserver behind it. The
// per-node work is one script (lib/render/certs-renew.ts) run as root over SSH.
import { EXIT, UserError } from "../errors.ts";
import { type Progress, progress } from "../progress.ts";
import type { ConnectOptions } from "../remote/ssh.ts";
import { renderCertsRenewScript } from "../render/certs-renew.ts";
import type { ClusterSpec, NodeSpec } from "../spec/schema.ts";
import { controlPlanes } from "../spec/topology.ts";
import { closeAll, connectAll, hostProblems, type Session } from "./connect.ts";
import { runNodeScript, setApiserverTraffic, unhealthyControlPlanes } from "./control-plane-health.ts";

export interface RenewedNode {
  node: string;
  /** The certificates and kubeconfigs before the renewal, on the node (0600). */
  backup?: string;
  apiserverSerialBefore?: string;
  apiserverSerialAfter?: string;
  /** The renewed apiserver certificate's notAfter, as openssl prints it. */
  apiserverNotAfter?: string;
  restarted: string[];
  seconds: number;
}

export interface RenewOptions {
  /** Only these control planes (default: every one, in the spec's order). */
  nodes?: string[];
  dryRun?: boolean;
  connect?: ConnectOptions;
  log?: Progress;
  /** Called with the plan before anything changes (the command asks there). */
  confirm?: (plan: string[]) => Promise<void>;
}

/** Why `node` must not restart now, or undefined when every control plane is healthy. */
async function clusterProblem(sessions: Session[], node: string): Promise<string | undefined> {
  const problems = await unhealthyControlPlanes(sessions);
  if (!problems) return undefined;
  return `certs:renew restarts etcd and the apiserver on ${node} only while every control plane is healthy, because a restart with another member down can cost etcd its quorum and the VIP its last apiserver. Not healthy: ${problems}. Find out why with bun run verify, heal it (node:replace for a lost node), then run certs:renew again: nodes already renewed can be renewed again safely.`;
}

export function renewPlan(targets: NodeSpec[]): string[] {
  return targets.map(
    (n) =>
      `${n.name}: back up /etc/kubernetes/pki, kubeadm certs renew all, then restart kube-apiserver (drained first), etcd, kube-controller-manager and kube-scheduler; the next control plane only once ${n.name}'s apiserver is back in every load balancer`,
  );
}

export async function renewCertificates(spec: ClusterSpec, opts: RenewOptions = {}): Promise<RenewedNode[]> {
  const log = opts.log ?? progress;
  const cps = controlPlanes(spec);
  const unknown = (opts.nodes ?? []).filter((n) => !cps.some((c) => c.name === n));
  if (unknown.length)
    throw new UserError(
      `--node ${unknown.join(", ")}: not a control plane of "${spec.name}" (control planes: ${cps.map((n) => n.name).join(", ")}). Workers' kubelet certificates rotate by themselves.`,
    );
  const targets = opts.nodes?.length ? cps.filter((c) => opts.nodes?.includes(c.name)) : cps;
  const plan = renewPlan(targets);
  const sessions = await connectAll(spec, cps, { ...opts.connect, phase: "ssh", log });
  try {
    const first = await clusterProblem(sessions, targets[0]?.name ?? "");
    if (first) throw new UserError(first);
    if (opts.dryRun) {
      for (const line of plan) log(line.slice(0, line.indexOf(":")), "plan", line.slice(line.indexOf(":") + 2));
      return [];
    }
    await opts.confirm?.(plan);
    const script = renderCertsRenewScript(spec);
    const results: RenewedNode[] = [];
    const all = sessions.flatMap((s) => (s.remote ? [s.remote] : []));
    for (const [i, node] of targets.entries()) {
      // Checked again before each node: the one before must be back in full, and nothing else down.
      if (i > 0) {
        const problem = await clusterProblem(sessions, node.name);
        if (problem)
          throw new UserError(`${problem} Renewed so far: ${results.map((r) => r.node).join(", ")}.`, EXIT.failed);
      }
      const remote = sessions.find((s) => s.node.name === node.name)?.remote;
      if (!remote) throw new UserError(hostProblems([{ host: node.name, error: "not connected" }]).text, EXIT.failed);
      const t0 = Date.now();
      // Out of every haproxy before the apiserver fails /readyz, back after.
      await setApiserverTraffic(all, node.name, "drain", log);
      const r = await runNodeScript(remote, node.name, script, { timeoutMs: 15 * 60_000, log }).finally(() =>
        setApiserverTraffic(all, node.name, "ready", log),
      );
      const kv = r.result;
      if (r.code !== 0) {
        throw new UserError(
          `${node.name}: certs:renew failed: ${r.why}${kv.backup ? ` The certificates before the renewal are in ${kv.backup} on ${node.name}.` : ""}${results.length ? ` Renewed before it: ${results.map((x) => x.node).join(", ")}.` : ""}`,
          EXIT.failed,
        );
      }
      results.push({
        node: node.name,
        backup: kv.backup,
        apiserverSerialBefore: kv.apiserver_serial_before || undefined,
        apiserverSerialAfter: kv.apiserver_serial_after || undefined,
        apiserverNotAfter: kv.apiserver_not_after || undefined,
        restarted: (kv.restarted ?? "").split(",").filter(Boolean),
        seconds: Math.round((Date.now() - t0) / 100) / 10,
      });
    }
    return results;
  } finally {
    closeAll(sessions);
  }
}
