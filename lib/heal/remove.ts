// node:remove NAME: a node taken out of the cluster for good. The spec is edited first (the node
// deleted from nodes, the stack synthesized), so nothing is changed behind Terraform's back: the
// node's address and role come from Terraform's state, the cluster side is cleaned (drain, Node
// deleted, etcd member removed for a control plane, kubeadm reset on the host if it answers), and
// then the normal apply of the edited spec drops the node's steps and rolls the other control
// planes' load balancers (haproxy backends, keepalived peers) one at a time.
import { UserError } from "../errors.ts";
import { closeAll, connectAll } from "../ops/connect.ts";
import type { Progress } from "../progress.ts";
import { connectNode } from "../remote/ssh.ts";
import type { ClusterSpec, NodeSpec } from "../spec/schema.ts";
import { controlPlanes } from "../spec/topology.ts";
import {
  deleteNode,
  drainNode,
  etcdView,
  healthyControlPlane,
  removeMember,
  resetHost,
  stopLbTraffic,
  waitWhole,
} from "./cluster.ts";
import {
  memberLabel,
  memberOf,
  type PlannedAction,
  removalProblem,
  removeProblem,
  roleFromSteps,
  unnamedDropped,
} from "./plan.ts";
import { readStackSteps, readStateSteps, terraformApply } from "./terraform.ts";

export interface RemoveOptions {
  stackDir: string;
  force: boolean;
  dryRun: boolean;
  timeoutSeconds: number;
  drainTimeoutSeconds: number;
  log: Progress;
  confirm: (plan: PlannedAction[]) => Promise<void>;
}

export interface RemovedNode {
  node: string;
  role: string;
  address: string;
  removedMember?: string;
  reset: boolean;
}

export interface RemoveResult {
  nodes: RemovedNode[];
  plan: PlannedAction[];
  dryRun: boolean;
  members?: number;
  seconds: number;
}

export async function removeNodes(spec: ClusterSpec, names: string[], opts: RemoveOptions): Promise<RemoveResult> {
  const started = performance.now();
  const log = opts.log;
  const cps = controlPlanes(spec);
  const sessions = await connectAll(spec, cps, { phase: "ssh", log });
  try {
    const stack = readStackSteps(opts.stackDir);
    const state = await readStateSteps(spec, opts.stackDir);
    const gone: NodeSpec[] = [];
    for (const name of names) {
      const mine = state.filter((s) => s.node === name);
      const role = roleFromSteps(state, name);
      const problem = removeProblem({
        name,
        inSpec: spec.nodes.some((n) => n.name === name),
        inStack: stack.some((s) => s.node === name),
        inState: mine.length > 0,
        role,
        controlPlanesLeft: cps.length,
        force: opts.force,
      });
      if (problem) throw new UserError(`node:remove ${name}: ${problem}`);
      // Reached with the spec's SSH settings (the node's own overrides left the spec with it).
      gone.push({ name, address: mine[0]?.nodeAddress ?? "", role } as NodeSpec);
    }

    // Every node the edited spec drops must be named: the apply that follows drops all of them.
    const unnamed = unnamedDropped(
      state,
      spec.nodes.map((n) => n.name),
      names,
    );
    if (unnamed.length)
      throw new UserError(
        `node:remove: the spec also drops ${unnamed.join(", ")} (in Terraform's state, not in the spec). Name every node that leaves: bun run node:remove ${[...names, ...unnamed].join(" ")}. Nothing was changed.`,
      );

    const via = await healthyControlPlane(
      sessions.filter((s) => s.remote).map((s) => ({ name: s.node.name, remote: s.remote!, node: s.node })),
    );
    if (!via)
      throw new UserError(
        "node:remove: no control plane of the spec answers with a healthy etcd member. Nothing was changed.",
      );
    // Members come out one at a time, each while the members left keep their quorum.
    let view = gone.some((g) => g.role === "control-plane") ? await etcdView(via) : undefined;
    if (view) {
      let health = view.health;
      for (const g of gone.filter((x) => x.role === "control-plane")) {
        const m = memberOf(
          health.map((h) => h.member),
          g,
        );
        const p = removalProblem(health, m?.id, g.name);
        if (p) throw new UserError(`node:remove ${g.name}: ${p}`);
        health = health.filter((h) => h.member.id !== m?.id);
      }
    }
    const plan: PlannedAction[] = [];
    const goneCps = gone.filter((g) => g.role === "control-plane").map((g) => g.name);
    const staying = sessions.filter((s) => s.remote && !names.includes(s.node.name));
    if (goneCps.length)
      for (const s of staying)
        plan.push({
          host: s.node.name,
          phase: "lb",
          action: `haproxy: ${goneCps.join(", ")} to drain (no new connection to an apiserver about to go)`,
        });
    for (const g of gone) {
      const m = view
        ? memberOf(
            view.health.map((h) => h.member),
            g,
          )
        : undefined;
      plan.push(
        { host: via.node.name, phase: "drain", action: `kubectl drain ${g.name}` },
        { host: via.node.name, phase: "node", action: `kubectl delete node ${g.name}` },
        ...(g.role === "control-plane"
          ? [
              {
                host: via.node.name,
                phase: "etcd",
                action: m ? `remove ${g.name}'s member ${memberLabel(m)}` : "no member of it listed: nothing to remove",
              },
            ]
          : []),
        { host: g.name, phase: "reset", action: `kubeadm reset -f at ${g.address}, if it answers` },
      );
    }
    const steps = state.filter((s) => names.includes(s.node)).map((s) => s.address);
    plan.push({
      host: "local",
      phase: "terraform",
      action: `terraform apply of the edited spec: drops ${steps.join(", ")}${gone.some((g) => g.role === "control-plane") ? "; the other control planes' load balancers roll one at a time" : ""}`,
    });
    if (opts.dryRun)
      return {
        nodes: gone.map((g) => ({ node: g.name, role: g.role, address: g.address, reset: false })),
        plan,
        dryRun: true,
        seconds: (performance.now() - started) / 1000,
      };
    await opts.confirm(plan);

    // Out of the load balancers before their apiservers lose etcd: a new client sent there would get a 500.
    for (const s of goneCps.length ? staying : []) {
      log(s.node.name, "lb", `haproxy: ${goneCps.join(", ")} to drain (no new connection)`);
      await stopLbTraffic(s.remote!, goneCps);
    }
    const removed: RemovedNode[] = [];
    for (const g of gone) {
      log(via.node.name, "drain", `kubectl drain ${g.name}`);
      await drainNode(via.remote, g.name, opts.drainTimeoutSeconds);
      log(via.node.name, "node", `kubectl delete node ${g.name}`);
      await deleteNode(via.remote, g.name);
      let memberId: string | undefined;
      if (g.role === "control-plane") {
        view = await etcdView(via);
        const m = memberOf(
          view.health.map((h) => h.member),
          g,
        );
        if (m) {
          const p = removalProblem(view.health, m.id, g.name);
          if (p) throw new UserError(`node:remove ${g.name}: ${p}`, 1);
          log(via.node.name, "etcd", `removing ${g.name}'s member ${memberLabel(m)}`);
          await removeMember(via, m.id);
          memberId = m.id;
        }
      }
      let reset = false;
      const remote = await connectNode(spec, g, { readyTimeoutMs: 10_000 }).catch(() => undefined);
      if (remote) {
        log(g.name, "reset", "kubeadm reset -f, kubeadm-ha state removed");
        try {
          await resetHost(remote);
          reset = true;
        } finally {
          remote.close();
        }
      } else log(g.name, "reset", "does not answer SSH: nothing to reset");
      removed.push({ node: g.name, role: g.role, address: g.address, removedMember: memberId, reset });
    }

    const apply = await terraformApply(spec, opts.stackDir, [], log);
    if (apply.code !== 0)
      throw new UserError(
        `node:remove: terraform apply failed (exit ${apply.code}); ${names.join(", ")} ${names.length > 1 ? "are" : "is"} already out of the cluster, so running bun run deploy finishes the rest.\n${apply.tail}`,
        1,
      );
    // Every member left (the list now), each healthy, and /readyz through the VIP.
    const after = await waitWhole(spec, via, view ? (await etcdView(via)).health.length : 0, {
      timeoutSeconds: opts.timeoutSeconds,
      log,
    });
    return {
      nodes: removed,
      plan,
      dryRun: false,
      members: after?.health.length,
      seconds: Math.round((performance.now() - started) / 100) / 10,
    };
  } finally {
    closeAll(sessions);
  }
}
