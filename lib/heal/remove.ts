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
import { deleteNode, drainNode, etcdView, healthyControlPlane, removeMember, resetHost, waitWhole } from "./cluster.ts";
import { memberLabel, memberOf, type PlannedAction, removalProblem, removeProblem, roleFromSteps } from "./plan.ts";
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

export interface RemoveResult {
  node: string;
  role: string;
  address: string;
  plan: PlannedAction[];
  dryRun: boolean;
  removedMember?: string;
  reset: boolean;
  members?: number;
  seconds: number;
}

export async function removeNode(spec: ClusterSpec, name: string, opts: RemoveOptions): Promise<RemoveResult> {
  const started = performance.now();
  const log = opts.log;
  const cps = controlPlanes(spec);
  const sessions = await connectAll(spec, cps, { phase: "ssh", log });
  try {
    const stack = readStackSteps(opts.stackDir);
    const state = await readStateSteps(spec, opts.stackDir);
    const mine = state.filter((s) => s.node === name);
    const role = roleFromSteps(state, name);
    const address = mine[0]?.nodeAddress ?? "";
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
    // How to reach it: the spec's SSH settings (the node's own overrides left the spec with it).
    const gone = { name, address, role } as NodeSpec;

    const via = await healthyControlPlane(
      sessions.filter((s) => s.remote).map((s) => ({ name: s.node.name, remote: s.remote!, node: s.node })),
    );
    if (!via)
      throw new UserError(
        `node:remove ${name}: no control plane of the spec answers with a healthy etcd member. Nothing was changed.`,
      );
    const view = role === "control-plane" ? await etcdView(via) : undefined;
    const member = view
      ? memberOf(
          view.health.map((h) => h.member),
          gone,
        )
      : undefined;
    if (view) {
      const p = removalProblem(view.health, member?.id, name);
      if (p) throw new UserError(`node:remove ${name}: ${p}`);
    }
    const plan: PlannedAction[] = [
      { host: via.node.name, phase: "drain", action: `kubectl drain ${name}` },
      { host: via.node.name, phase: "node", action: `kubectl delete node ${name}` },
      ...(role === "control-plane"
        ? [
            {
              host: via.node.name,
              phase: "etcd",
              action: member
                ? `remove ${name}'s member ${memberLabel(member)}`
                : "no member of it listed: nothing to remove",
            },
          ]
        : []),
      { host: name, phase: "reset", action: `kubeadm reset -f at ${address}, if it answers` },
      {
        host: "local",
        phase: "terraform",
        action: `terraform apply of the edited spec: drops ${mine.map((s) => s.address).join(", ")}${role === "control-plane" ? "; the other control planes' load balancers roll one at a time" : ""}`,
      },
    ];
    if (opts.dryRun)
      return {
        node: name,
        role,
        address,
        plan,
        dryRun: true,
        reset: false,
        seconds: (performance.now() - started) / 1000,
      };
    await opts.confirm(plan);

    log(via.node.name, "drain", `kubectl drain ${name}`);
    await drainNode(via.remote, name, opts.drainTimeoutSeconds);
    log(via.node.name, "node", `kubectl delete node ${name}`);
    await deleteNode(via.remote, name);
    if (member) {
      log(via.node.name, "etcd", `removing ${name}'s member ${memberLabel(member)}`);
      await removeMember(via, member.id);
    }
    let reset = false;
    const remote = await connectNode(spec, gone, { readyTimeoutMs: 10_000 }).catch(() => undefined);
    if (remote) {
      log(name, "reset", "kubeadm reset -f, kubeadm-ha state removed");
      try {
        await resetHost(remote);
        reset = true;
      } finally {
        remote.close();
      }
    } else log(name, "reset", "does not answer SSH: nothing to reset");

    const apply = await terraformApply(spec, opts.stackDir, [], log);
    if (apply.code !== 0)
      throw new UserError(
        `node:remove ${name}: terraform apply failed (exit ${apply.code}); the node is already out of the cluster, so running bun run deploy finishes the rest.\n${apply.tail}`,
        1,
      );
    const want = view ? view.health.length - (member ? 1 : 0) : 0;
    const after = await waitWhole(spec, via, want, { timeoutSeconds: opts.timeoutSeconds, log });
    return {
      node: name,
      role,
      address,
      plan,
      dryRun: false,
      removedMember: member?.id,
      reset,
      members: after?.health.length,
      seconds: Math.round((performance.now() - started) / 100) / 10,
    };
  } finally {
    closeAll(sessions);
  }
}
