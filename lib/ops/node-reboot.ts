// node:reboot: one control plane rebooted (kernel update, maintenance) with no failed request
// through the VIP: refused unless every control plane is healthy, the Node drained, the node's
// script (lib/render/node-reboot.ts) moves the VIP, the apiserver and etcd off the node in order
// and reboots it; then the command waits for the host to boot, its etcd and apiserver to be
// healthy and counted by the load balancers, and uncordons the Node.
import { EXIT, UserError } from "../errors.ts";
import { drainNode } from "../heal/cluster.ts";
import { type Progress, progress } from "../progress.ts";
import { type ConnectOptions, connectNode, type Remote, sq } from "../remote/ssh.ts";
import { renderNodeRebootScript } from "../render/node-reboot.ts";
import { settleSeconds } from "../render/static-pod-restart.ts";
import type { ClusterSpec } from "../spec/schema.ts";
import { controlPlanes } from "../spec/topology.ts";
import { closeAll, connectAll, type Session } from "./connect.ts";
import {
  controlPlaneProblems,
  runNodeScript,
  setApiserverTraffic,
  unhealthyControlPlanes,
} from "./control-plane-health.ts";
import { ADMIN_CONF } from "./kubeconfig.ts";
import { holdersOf } from "./verify.ts";

export interface RebootResult {
  node: string;
  /** Who held the VIP before and after (the VIP moves only when the rebooted node held it). */
  holderBefore?: string;
  holderAfter?: string;
  /** From the reboot until SSH answered again, and until the node served again. */
  downSeconds: number;
  seconds: number;
}

export interface RebootOptions {
  timeoutSeconds: number;
  dryRun?: boolean;
  connect?: ConnectOptions;
  log?: Progress;
  confirm?: (plan: string[]) => Promise<void>;
}

// Changes at every boot: the kernel's boot id, and PID 1's start time (a container's reboot keeps the kernel).
const BOOT_MARK = "printf '%s:%s\\n' \"$(cat /proc/sys/kernel/random/boot_id)\" \"$(cut -d' ' -f22 /proc/1/stat)\"";

/** The VIP holder among the connected control planes (the first, should there be two). */
async function holder(spec: ClusterSpec, sessions: Session[]): Promise<string | undefined> {
  const live = sessions.flatMap((s) => (s.remote ? [{ node: s.node, remote: s.remote }] : []));
  return (await holdersOf(spec, live))[0];
}

export function rebootPlan(name: string, wasHolder: boolean): string[] {
  return [
    `${name}: kubectl drain (cordon, evict its pods)`,
    ...(wasHolder ? [`${name}: move the VIP to a healthy peer first (it holds the VIP now)`] : []),
    `${name}: take the apiserver out of every load balancer (its shutdown delay), then stop etcd (a leader hands over)`,
    `${name}: reboot; wait for SSH, etcd healthy and the apiserver ready and counted by the load balancers; kubectl uncordon`,
  ];
}

export async function rebootNode(spec: ClusterSpec, name: string, opts: RebootOptions): Promise<RebootResult> {
  const log = opts.log ?? progress;
  const cps = controlPlanes(spec);
  const node = cps.find((n) => n.name === name);
  if (!node) {
    const other = spec.nodes.find((n) => n.name === name);
    throw new UserError(
      other
        ? `node:reboot handles control planes; ${name} is a worker: kubectl drain ${name}, reboot it, kubectl uncordon ${name} (no load balancer or etcd is involved).`
        : `node:reboot: no node named ${name} in the spec (control planes: ${cps.map((n) => n.name).join(", ")}).`,
    );
  }
  if (cps.length < 2)
    throw new UserError(
      `node:reboot needs another control plane to serve while ${name} reboots; this cluster has one. Reboot it in a maintenance window.`,
    );
  const sessions = await connectAll(spec, cps, { ...opts.connect, phase: "ssh", log });
  let fresh: Remote | undefined;
  /** The haproxies that hold the node drained, until they have it back. */
  let drained: Remote[] | undefined;
  try {
    const problems = await unhealthyControlPlanes(sessions);
    if (problems)
      throw new UserError(
        `node:reboot takes ${name}'s etcd member and apiserver away only while every control plane is healthy: with another member down etcd could lose its quorum, with another apiserver down the VIP its last backend. Not healthy: ${problems}. Find out why with bun run verify and heal it first.`,
      );
    const holderBefore = await holder(spec, sessions);
    const plan = rebootPlan(name, holderBefore === name);
    if (opts.dryRun) {
      for (const line of plan) log(name, "plan", line.slice(line.indexOf(":") + 2));
      return { node: name, holderBefore, downSeconds: 0, seconds: 0 };
    }
    await opts.confirm?.(plan);
    const t0 = Date.now();
    const target = sessions.find((s) => s.node.name === name)?.remote as Remote;
    const via = sessions.find((s) => s.node.name !== name && s.remote)?.remote as Remote;
    log(name, "drain", `kubectl drain ${name} (from ${via.name})`);
    await drainNode(via, name, 300);
    const mark = (await target.run(BOOT_MARK, { what: "reading the boot id" })).trim();
    const peers = sessions.filter((s) => s.node.name !== name).map((s) => s.remote as Remote);
    await setApiserverTraffic([...peers, target], name, "drain", log);
    drained = peers;
    const r = await runNodeScript(target, name, renderNodeRebootScript(spec), { timeoutMs: 10 * 60_000, log });
    if (r.code !== 0 || r.result.rebooting !== "yes")
      throw new UserError(
        `${name}: node:reboot stopped before the reboot: ${r.why}. Its pods were started again; kubectl uncordon ${name} once it serves.`,
        EXIT.failed,
      );
    target.close();
    const down = Date.now();
    // Up again: a new boot answers SSH (the host keys are the same; a mismatch still fails).
    const deadline = down + opts.timeoutSeconds * 1000;
    log(name, "boot", "waiting for the host to come back");
    for (;;) {
      if (Date.now() > deadline)
        throw new UserError(
          `${name} did not come back within ${opts.timeoutSeconds} s of its reboot (no SSH login with a new boot). Look at its console; once it is up, kubectl uncordon ${name}.`,
          EXIT.failed,
        );
      await Bun.sleep(2000);
      const c = await connectNode(spec, node, { ...opts.connect, readyTimeoutMs: 5000 }).catch(() => undefined);
      if (!c) continue;
      const now = await c.run(BOOT_MARK, { timeoutMs: 10_000 }).catch(() => "");
      if (now.trim() && now.trim() !== mark) {
        fresh = c;
        break;
      }
      c.close();
    }
    const downSeconds = Math.round((Date.now() - down) / 100) / 10;
    log(name, "boot", `back after ${downSeconds} s; waiting for etcd and the apiserver`);
    for (;;) {
      const bad = await controlPlaneProblems(fresh);
      if (!bad.length) break;
      if (Date.now() > deadline)
        throw new UserError(
          `${name} is up again but ${bad.join(" and ")} ${opts.timeoutSeconds} s after the reboot. Look at the kubelet (journalctl -u kubelet) and bun run verify; kubectl uncordon ${name} once it serves.`,
          EXIT.failed,
        );
      await Bun.sleep(1000);
    }
    // Back in every haproxy: its checks count the apiserver UP again within rise x interval.
    await setApiserverTraffic([...drained, fresh], name, "ready", log);
    drained = undefined;
    await Bun.sleep(settleSeconds(spec) * 1000);
    log(name, "uncordon", `kubectl uncordon ${name}`);
    await via.run(`kubectl --kubeconfig ${ADMIN_CONF} uncordon ${sq(name)} 2>&1`, {
      sudo: true,
      what: `kubectl uncordon ${name}`,
      timeoutMs: 60_000,
    });
    const holderAfter = await holder(
      spec,
      sessions.filter((s) => s.node.name !== name).concat({ node, remote: fresh }),
    );
    log(name, "done", `serving again; the VIP is on ${holderAfter ?? "no node (!)"}`);
    return { node: name, holderBefore, holderAfter, downSeconds, seconds: Math.round((Date.now() - t0) / 100) / 10 };
  } finally {
    // Whatever stopped the command: the peers' haproxies take the node back once its checks pass.
    if (drained) await setApiserverTraffic(drained, name, "ready", log);
    fresh?.close();
    closeAll(sessions);
  }
}
