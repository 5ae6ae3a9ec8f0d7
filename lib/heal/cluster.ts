// Healing a cluster, the remote part: etcd's members and their health seen through a healthy
// control plane, removing a member, deleting a Node, resetting a host, and waiting until the
// cluster is whole again. Each call goes through lib/etcd (tools found on the node, kubeadm's
// certificates) over lib/remote; the rules they follow are in plan.ts.
import { UserError } from "../errors.ts";
import { etcdScript, etcdScriptOk, KUBEADM_ETCD_ACCESS, memberList, type NodeEtcd, probeNode } from "../etcd/remote.ts";
import { etcdctlFlags } from "../etcd/tools-sh.ts";
import { healthzStatus } from "../ops/chaos.ts";
import { parseEndpointHealth } from "../ops/verify.ts";
import type { Progress } from "../progress.ts";
import { type Remote, sq } from "../remote/ssh.ts";
import { serversStateCommand } from "../render/haproxy.ts";
import { RESET_HOST_SH } from "../render/reset-host.ts";
import type { ClusterSpec } from "../spec/schema.ts";
import type { MemberHealth } from "./plan.ts";

const ADMIN_CONF = "/etc/kubernetes/admin.conf";

export interface EtcdView {
  via: NodeEtcd;
  clusterId: string;
  health: MemberHealth[];
}

/** Members and their health, through `n`'s etcd: each started member's client URL is asked once. */
export async function etcdView(n: NodeEtcd): Promise<EtcdView> {
  const { clusterId, members } = await memberList(n, KUBEADM_ETCD_ACCESS);
  const urls = members.flatMap((m) => m.clientUrls.slice(0, 1));
  const r = urls.length
    ? await etcdScript(
        n.remote,
        `etcd_tools\n"$ETCDCTL" ${etcdctlFlags(KUBEADM_ETCD_ACCESS, urls.join(","))} --command-timeout=3s endpoint health 2>&1 || true`,
        { timeoutMs: 60_000 },
      )
    : { stdout: "" };
  const seen = parseEndpointHealth(r.stdout);
  return {
    via: n,
    clusterId,
    health: members.map((member) => ({
      member,
      healthy: member.clientUrls.length > 0 && seen.get(member.clientUrls[0]!)?.healthy === true,
    })),
  };
}

/** The first control plane of `candidates` whose own etcd member answers healthy (its probe, for etcdView). */
export async function healthyControlPlane(
  candidates: { name: string; remote: Remote; node: NodeEtcd["node"] }[],
): Promise<NodeEtcd | undefined> {
  for (const c of candidates) {
    const n = await probeNode(c.remote, c.node).catch(() => undefined);
    if (!n) continue;
    const r = await etcdScript(
      c.remote,
      `etcd_tools\n"$ETCDCTL" ${etcdctlFlags(KUBEADM_ETCD_ACCESS, n.endpoint)} --command-timeout=3s endpoint health 2>&1`,
      { timeoutMs: 30_000 },
    ).catch(() => undefined);
    if (r?.code === 0 && /is healthy/.test(r.stdout)) return n;
  }
  return undefined;
}

export async function removeMember(n: NodeEtcd, id: string): Promise<void> {
  if (!/^[0-9a-f]{1,16}$/.test(id)) throw new Error(`not an etcd member id: ${id}`);
  await etcdScriptOk(
    n.remote,
    `etcd_tools\n"$ETCDCTL" ${etcdctlFlags(KUBEADM_ETCD_ACCESS, n.endpoint)} --command-timeout=10s member remove ${id}`,
    `etcdctl member remove ${id}`,
  );
}

/** haproxy on a control plane sends no new connection to `servers` (control planes about to go); open ones finish. */
export async function stopLbTraffic(remote: Remote, servers: string[]): Promise<string> {
  return remote.run(`bash -c ${sq(serversStateCommand(servers, "drain"))} 2>&1`, {
    sudo: true,
    what: `haproxy: ${servers.join(", ")} to drain (no new connection)`,
    timeoutMs: 30_000,
  });
}

/** kubectl delete node NAME through a control plane's admin.conf; a Node that is not there is fine. */
export async function deleteNode(remote: Remote, name: string): Promise<string> {
  return remote.run(`kubectl --kubeconfig ${ADMIN_CONF} delete node ${sq(name)} --ignore-not-found 2>&1`, {
    sudo: true,
    what: `kubectl delete node ${name}`,
  });
}

/** kubectl drain NAME (DaemonSets stay, emptyDir data goes) through a control plane's admin.conf. */
export async function drainNode(remote: Remote, name: string, timeoutSeconds: number): Promise<string> {
  return remote.run(
    `kubectl --kubeconfig ${ADMIN_CONF} drain ${sq(name)} --ignore-daemonsets --delete-emptydir-data --timeout=${timeoutSeconds}s 2>&1`,
    { sudo: true, what: `kubectl drain ${name}`, timeoutMs: (timeoutSeconds + 30) * 1000 },
  );
}

export { RESET_HOST_SH };

/** RESET_HOST_SH on the node, as root. */
export async function resetHost(remote: Remote): Promise<string> {
  return remote.run(`bash -c ${sq(RESET_HOST_SH)} 2>&1`, { sudo: true, what: "kubeadm reset", timeoutMs: 300_000 });
}

/** /readyz through the VIP, from this machine. */
export const vipReady = (spec: ClusterSpec): Promise<number> =>
  healthzStatus(spec.controlPlaneEndpoint.vip, spec.controlPlaneEndpoint.port, 2000, "/readyz");

/**
 * Wait until etcd lists `members` members, every one started and healthy, and the API answers
 * /readyz through the VIP. Returns the final view; a UserError (exit 1) after `timeoutSeconds`.
 */
export async function waitWhole(
  spec: ClusterSpec,
  n: NodeEtcd,
  members: number,
  opts: { timeoutSeconds: number; log: Progress },
): Promise<EtcdView | undefined> {
  const end = Date.now() + opts.timeoutSeconds * 1000;
  let last = "";
  for (;;) {
    const view = members > 0 ? await etcdView(n).catch((e: Error) => e) : undefined;
    const etcdOk =
      members === 0 ||
      (!(view instanceof Error) &&
        view !== undefined &&
        view.health.length === members &&
        view.health.every((h) => h.healthy));
    const ready = etcdOk ? await vipReady(spec) : 0;
    if (etcdOk && ready === 200) return view instanceof Error ? undefined : view;
    const now =
      view instanceof Error
        ? `etcd: ${view.message}`
        : view
          ? `etcd ${view.health.filter((h) => h.healthy).length}/${view.health.length} healthy (want ${members}/${members}), /readyz ${ready || "-"}`
          : `/readyz ${ready || "no answer"}`;
    if (now !== last) opts.log(n.node.name, "wait", now);
    last = now;
    if (Date.now() > end) throw new UserError(`the cluster is not whole after ${opts.timeoutSeconds} s: ${last}.`, 1);
    await Bun.sleep(1000);
  }
}
