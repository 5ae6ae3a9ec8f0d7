// Shared by the failover test and the failover benchmarks: bring the lab up with the stack
// applied (once per test file / bench run), inject the faults the seed's section 8 and the
// lab issue name, and put every host back. Only lab addresses (198.18.0.0/24) are contacted.

import { healthzStatus, tcpOpen as tcpOpenAnywhere } from "../../lib/ops/chaos.ts";
import { labEtcdctl, labExec, labStatus, labUp, linkUp, requireLab } from "../lab/lab.ts";
import { run, sleep } from "../lab/sys.ts";
import { labSpec, synthLab, terraform } from "./apply.ts";
import { assertLabAddress } from "./poller.ts";

export const VIP = "198.18.0.10";
export const PORT = 8443;
export const CONTROL_PLANES: readonly string[] = ["cp-1", "cp-2", "cp-3"];

/**
 * The steps failover depends on: prepare + load balancer on every control plane (terraform
 * adds the prepare steps by dependency). The kubeadm steps only talk to the lab's recording
 * stand-in and change nothing the failover path uses, so they are left out with -target, as
 * the lab issue allows.
 */
export const LB_TARGETS = CONTROL_PLANES.map((h) => `-target=terraform_data.loadbalancer_${h.replace("-", "_")}`);

/** terraform apply of the load-balancer steps of the (already synthesized) lab stack. */
export const applyLoadBalancers = () => terraform(["apply", "-input=false", "-auto-approve", ...LB_TARGETS]);

const log = (msg: string) => process.stderr.write(`[failover-lab] ${msg}\n`);

/** GET https://VIP:PORT/healthz on a fresh connection: the HTTP status, 0 when nothing answered. */
export async function healthz(timeoutMs = 1500, host = VIP, port = PORT): Promise<number> {
  assertLabAddress(host);
  return healthzStatus(host, port, timeoutMs);
}

/** Whether a TCP connection to host:port is accepted within timeoutMs (lab addresses only). */
export function tcpOpen(host = VIP, port = PORT, timeoutMs = 1500): Promise<boolean> {
  assertLabAddress(host);
  return tcpOpenAnywhere(host, port, timeoutMs);
}

/** Control planes whose eth0 carries the VIP (an isolated or killed host may still carry it). */
export async function vipHolders(): Promise<string[]> {
  // `ip -n` straight into each host's network namespace: milliseconds, where labStatus
  // (SSH + etcdctl per host) takes long enough to blur a VIP move time.
  const r = await Promise.all(
    CONTROL_PLANES.map(async (h) => {
      const out = await run(["ip", "-n", `kha-${h}`, "-o", "-4", "addr", "show"], { timeoutMs: 5000 });
      return out.code === 0 && out.stdout.includes(` ${VIP}/`) ? h : undefined;
    }),
  );
  return r.filter((h): h is string => !!h);
}

/** Each answering member as `etcdctl endpoint status` sees it (simple output keeps the hex IDs exact). */
async function etcdEndpoints(): Promise<{ host: string; endpoint: string; id: string; leader: boolean }[]> {
  const r = await labEtcdctl(["endpoint", "status"], { timeoutMs: 5000 });
  // "https://198.18.0.11:2379, 8e9e05c52164694d, 3.4.23, 20 kB, true, false, 2, 8, 8, "
  return r.stdout
    .split("\n")
    .map((l) => l.split(",").map((f) => f.trim()))
    .filter((f) => /^https:\/\/198\.18\.0\.\d+:2379$/.test(f[0] ?? ""))
    .map((f) => ({
      host: `cp-${Number(/198\.18\.0\.(\d+)/.exec(f[0]!)![1]) - 10}`,
      endpoint: f[0]!,
      id: f[1]!,
      leader: f[4] === "true",
    }));
}

/** The etcd leader's host (cp-N), or "?" when no member answered as leader. */
export async function etcdLeader(): Promise<string> {
  return (await etcdEndpoints()).find((e) => e.leader)?.host ?? "?";
}

/** Hand etcd's leadership to `host` (etcdctl move-leader, sent to the current leader). */
export async function moveEtcdLeaderTo(host: string): Promise<void> {
  const eps = await etcdEndpoints();
  const leader = eps.find((e) => e.leader);
  const target = eps.find((e) => e.host === host);
  if (!leader || !target) throw new Error(`no etcd leader or no member on ${host}: ${JSON.stringify(eps)}`);
  if (leader.host === host) return;
  const r = await labEtcdctl(["move-leader", target.id], { endpoints: [leader.endpoint], timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`etcdctl move-leader ${target.id} failed: ${r.stderr}`);
}

export async function etcdHealthyCount(): Promise<number> {
  const st = await labStatus();
  return st.hosts.filter((h) => h.name.startsWith("cp-") && h.etcdHealthy).length;
}

export interface Health {
  ok: boolean;
  holders: string[];
  healthz: number;
  etcdHealthy: number;
}

export async function health(): Promise<Health> {
  const [st, code] = await Promise.all([labStatus(), healthz()]);
  const holders = st.hosts.filter((h) => h.vipHolder).map((h) => h.name);
  const etcdHealthy = st.hosts.filter((h) => h.name.startsWith("cp-") && h.etcdHealthy).length;
  return { ok: holders.length === 1 && code === 200 && etcdHealthy === 3, holders, healthz: code, etcdHealthy };
}

/** Wait until the lab is healthy: VIP on exactly one host, /healthz 200, three healthy etcd members. */
export async function waitHealthy(timeoutMs = 60_000): Promise<Health & { seconds: number }> {
  const start = performance.now();
  let h = await health();
  while (!h.ok && performance.now() - start < timeoutMs) {
    await sleep(250);
    h = await health();
  }
  return { ...h, seconds: (performance.now() - start) / 1000 };
}

/** Wait until the predicate holds; returns ms waited, or -1 on timeout. */
export async function until(pred: () => Promise<boolean> | boolean, timeoutMs: number, stepMs = 100): Promise<number> {
  const start = performance.now();
  for (;;) {
    if (await pred()) return performance.now() - start;
    if (performance.now() - start > timeoutMs) return -1;
    await sleep(stepMs);
  }
}

/**
 * The failover lab stands for a cluster kubeadm made (its kubeadm steps are left out, above), so each
 * control plane gets the admin.conf kubeadm writes — the VIP endpoint and the cluster CA; no client
 * certificate, as the apiserver stand-in authenticates no one — which kubectl (node:reboot's drain) reads.
 */
const ADMIN_CONF_SH = `[ -e /etc/kubernetes/admin.conf ] || { umask 077; cat >/etc/kubernetes/admin.conf <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: $(base64 -w0 /etc/kubernetes/pki/ca.crt)
    server: https://${VIP}:${PORT}
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: kubernetes-admin
  name: kubernetes-admin@kubernetes
current-context: kubernetes-admin@kubernetes
users:
- name: kubernetes-admin
  user: {}
KUBECONFIG
}`;

/**
 * The lab with the stack applied: reuses a healthy applied lab, else brings the lab up
 * (fresh when KHA_FRESH_LAB=1) and runs terraform init + apply of the lab spec once.
 * Throws when the lab cannot run (requireLab decides skip vs fail for tests).
 */
export async function ensureAppliedLab(): Promise<{ applied: boolean; seconds: number }> {
  const start = performance.now();
  await labUp({ fresh: process.env.KHA_FRESH_LAB === "1" });
  staticPods = labSpec().loadBalancer.mode === "static-pod";
  await restoreAll();
  const hosts = await Promise.all(CONTROL_PLANES.map((h) => labExec(h, "command -v nft >/dev/null && echo yes")));
  if (hosts.some((r) => r.stdout.trim() !== "yes")) {
    throw new Error("nft is missing on the lab hosts: apt-get install nftables on this machine (hosts overlay /)");
  }
  for (const h of CONTROL_PLANES) await labExec(h, ADMIN_CONF_SH);
  let applied = false;
  const active = await Promise.all(CONTROL_PLANES.map((h) => labExec(h, `${LB_RUNNING()} && echo yes`)));
  if (active.some((r) => r.stdout.trim() !== "yes") || (await waitHealthy(10_000)).ok === false) {
    log("applying the lab stack (terraform init + apply)");
    synthLab();
    const init = await terraform(["init", "-input=false"]);
    if (init.code !== 0) throw new Error(`terraform init failed:\n${init.out.slice(-4000)}`);
    const apply = await applyLoadBalancers();
    if (apply.code !== 0) throw new Error(`terraform apply failed:\n${apply.out.slice(-6000)}`);
    applied = true;
  }
  const h = await waitHealthy(60_000);
  if (!h.ok) throw new Error(`the lab is not healthy after apply: ${JSON.stringify(h)}`);
  return { applied, seconds: (performance.now() - start) / 1000 };
}

// ---- faults ---------------------------------------------------------------------------------

/** The lab spec's loadBalancer.mode is static-pod: keepalived and haproxy run under the kubelet stand-in, not systemd (set by ensureAppliedLab). */
export let staticPods = false;
/** A shell test that keepalived and haproxy run on a host, in either mode. */
export const LB_RUNNING = () =>
  staticPods
    ? "pgrep -x keepalived >/dev/null && pgrep -x haproxy >/dev/null"
    : "systemctl is-active keepalived haproxy >/dev/null";
/** The units a hard kill takes down: in static-pod mode keepalived and haproxy live in the kubelet stand-in's cgroup. */
const UNITS = () => (staticPods ? ["kubelet-standin"] : ["keepalived", "haproxy", "kubelet-standin"]);
/**
 * Kill haproxy on a host and keep it dead: its unit (Restart= off) or, as a static pod, its
 * processes (the entrypoint then records it). Returns the moment of the kill (epoch ms).
 */
export async function killHaproxy(host: string): Promise<number> {
  if (!staticPods) return hardKill(host, ["haproxy"]);
  // The stand-in restarts a pod's process that exits (back-off from 1 s): kill it at once, and again
  // whenever it comes back, until restoreAll (the bench's "dies and stays dead").
  const r = await labExec(
    host,
    "date +%s%N; pkill -KILL -x haproxy; (while :; do pkill -KILL -x haproxy; sleep 0.2; done) </dev/null >/dev/null 2>&1 & echo $! > /run/kha-bench-haproxy-killer.pid",
  );
  if (r.code !== 0) throw new Error(`kill haproxy on ${host}: ${r.stderr}`);
  return killedAt(r.stdout);
}
/** The first line a fault command printed with `date +%s%N`, as epoch ms. */
const killedAt = (stdout: string) => Number(stdout.trim().split("\n")[0]) / 1e6;
const DROPIN = (unit: string) => `/run/systemd/system/${unit}.service.d/kha-failover-norestart.conf`;

/**
 * Hard kill, as a crash or power loss would: SIGKILL keepalived, haproxy, the apiserver
 * stand-in and etcd (the kubelet stand-in's cgroup), with systemd's Restart= switched off for
 * the duration so nothing is resurrected behind the test's back. Returns the moment of the
 * kill (epoch ms): the daemon-reload before it takes up to a second on a loaded machine, which
 * a fault time taken before the call would count as failover time.
 */
export async function hardKill(host: string, units: readonly string[] = UNITS()): Promise<number> {
  const dropins = units
    .map((u) => `mkdir -p ${DROPIN(u).replace(/\/[^/]+$/, "")} && printf '[Service]\\nRestart=no\\n' > ${DROPIN(u)}`)
    .join(" && ");
  const kills = units.map((u) => `systemctl kill --signal=SIGKILL ${u}.service`).join("; ");
  const r = await labExec(host, `${dropins} && systemctl daemon-reload && date +%s%N && ${kills}; true`);
  if (r.code !== 0) throw new Error(`hard kill on ${host}: ${r.stderr}`);
  return killedAt(r.stdout);
}

/** Undo hardKill (idempotent): Restart= back, units started again. */
export async function hardRestore(host: string): Promise<void> {
  const units = UNITS();
  const rm = ["keepalived", "haproxy", "kubelet-standin"].map((u) => `rm -f ${DROPIN(u)}`).join("; ");
  await labExec(
    host,
    `[ -f /run/kha-bench-haproxy-killer.pid ] && kill "$(cat /run/kha-bench-haproxy-killer.pid)"; rm -f /run/kha-bench-haproxy-killer.pid; ${rm}; systemctl daemon-reload; systemctl reset-failed ${units.join(" ")} 2>/dev/null; systemctl start ${units.join(" ")}`,
  );
}

/** Everything the tests and benches break, put back on every host (idempotent, never throws). */
export async function restoreAll(): Promise<void> {
  for (const h of CONTROL_PLANES) {
    await linkUp(h).catch(() => {});
    await hardRestore(h).catch(() => {});
    await labExec(
      h,
      "nft delete table inet kha_bench 2>/dev/null; nft delete table ip kha_bench 2>/dev/null; pkill -f kha-bench-50[0] 2>/dev/null; pkill -f kha-bench-strea[m] 2>/dev/null; true",
    ).catch(() => {});
  }
  // Bench variants may have left a chaos table (the chaos command's own rollback timer also removes it).
  for (const h of CONTROL_PLANES)
    await labExec(
      h,
      "nft delete table inet kubeadm_ha_chaos 2>/dev/null; nft delete table arp kubeadm_ha_chaos 2>/dev/null; true",
    ).catch(() => {});
}

export { requireLab };
