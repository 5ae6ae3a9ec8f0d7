// node:replace: a control plane or worker whose host was lost or reinstalled, brought back
// through the normal Terraform apply. Order: quorum check, stale etcd member removed (through a
// healthy control plane), Node deleted, host reset, the node's steps replaced, then wait until
// etcd is N/N healthy and /readyz answers through the VIP. Refuses before changing anything.
import { UserError } from "../errors.ts";
import type { NodeEtcd } from "../etcd/remote.ts";
import { closeAll, connectAll, type Session } from "../ops/connect.ts";
import type { Progress } from "../progress.ts";
import type { ClusterSpec, NodeSpec } from "../spec/schema.ts";
import { controlPlanes } from "../spec/topology.ts";
import { deleteNode, etcdView, healthyControlPlane, removeMember, resetHost, waitWhole } from "./cluster.ts";
import { memberLabel, memberOf, type PlannedAction, removalProblem, replacePlan, stepsProblem } from "./plan.ts";
import { readStackSteps, terraformApply } from "./terraform.ts";

export interface ReplaceOptions {
  stackDir: string;
  dryRun: boolean;
  timeoutSeconds: number;
  log: Progress;
  /** Called once the plan is known and safe, before the first change (the confirmation). */
  confirm: (plan: PlannedAction[]) => Promise<void>;
}

export interface ReplaceResult {
  node: string;
  role: string;
  plan: PlannedAction[];
  dryRun: boolean;
  removedMember?: string;
  clusterIdBefore?: string;
  clusterIdAfter?: string;
  members?: number;
  terraformSeconds?: number;
  seconds: number;
}

export function nodeByName(spec: ClusterSpec, name: string | undefined, command: string): NodeSpec {
  if (!name) throw new UserError(`${command} needs the node's NAME, e.g. bun run ${command} cp-2 --spec cluster.yaml.`);
  const node = spec.nodes.find((n) => n.name === name);
  if (!node)
    throw new UserError(
      `${command}: no node "${name}" in the spec (nodes: ${spec.nodes.map((n) => n.name).join(", ")}). Add a new node with deploy instead.`,
    );
  return node;
}

export async function replaceNode(spec: ClusterSpec, node: NodeSpec, opts: ReplaceOptions): Promise<ReplaceResult> {
  const started = performance.now();
  const log = opts.log;
  const others = controlPlanes(spec).filter((n) => n.name !== node.name);
  const sessions: Session[] = await connectAll(
    spec,
    spec.nodes.filter((n) => n.name === node.name || others.includes(n)),
    { phase: "ssh", log },
  );
  try {
    const steps = readStackSteps(opts.stackDir);
    const stepProblem = stepsProblem(steps, node, opts.stackDir);
    if (stepProblem) throw new UserError(`node:replace ${node.name}: ${stepProblem}`);
    const mySteps = steps.filter((s) => s.node === node.name);
    const target = sessions.find((s) => s.node.name === node.name)!;
    const live = sessions.filter((s) => s.remote && s.node.name !== node.name);
    const via: NodeEtcd | undefined = await healthyControlPlane(
      live.map((s) => ({ name: s.node.name, remote: s.remote!, node: s.node })),
    );
    if (!via)
      throw new UserError(
        `node:replace ${node.name}: no other control plane answers with a healthy etcd member (${others.map((n) => n.name).join(", ")}). If quorum is lost for good, run \`bun run etcd:recover --from NODE\` first. Nothing was changed.`,
      );
    const view = node.role === "control-plane" ? await etcdView(via) : undefined;
    const health = view?.health ?? [];
    const member = memberOf(
      health.map((h) => h.member),
      node,
    );
    if (node.role === "control-plane") {
      const problem = removalProblem(health, member?.id, node.name);
      if (problem) throw new UserError(`node:replace ${node.name}: ${problem}`);
    }
    const plan = replacePlan({ node, health, via: via.node.name, steps: mySteps, reachable: !!target.remote });
    if (opts.dryRun)
      return { node: node.name, role: node.role, plan, dryRun: true, seconds: (performance.now() - started) / 1000 };
    if (!target.remote)
      throw new UserError(
        `node:replace ${node.name}: the host at ${node.address} does not answer SSH (${target.error ?? "not connected"}). Install the replacement host at the spec's address (or change the address in the spec and synthesize), make its host key known (bun run trust-hosts), then run node:replace again. Nothing was changed.`,
      );
    await opts.confirm(plan);

    if (member) {
      log(via.node.name, "etcd", `removing ${node.name}'s member ${memberLabel(member)}`);
      await removeMember(via, member.id);
    }
    log(via.node.name, "node", `kubectl delete node ${node.name}`);
    await deleteNode(via.remote, node.name);
    log(node.name, "reset", "kubeadm reset -f, kubeadm-ha state removed");
    await resetHost(target.remote);
    target.remote.close();
    target.remote = undefined;

    log("terraform", "apply", `replacing ${mySteps.map((s) => s.name).join(", ")}`);
    // Join material is minted on the healthy control plane, not on the first one (which may be this node).
    const apply = await terraformApply(
      spec,
      opts.stackDir,
      mySteps.map((s) => s.address),
      log,
      { join_via: via.node.name },
    );
    if (apply.code !== 0)
      throw new UserError(
        `node:replace ${node.name}: terraform apply failed (exit ${apply.code}); the stale member and Node are already gone, so running node:replace again continues from here.\n${apply.tail}`,
        1,
      );
    const want = node.role === "control-plane" ? health.length - (member ? 1 : 0) + 1 : 0;
    const after = await waitWhole(spec, via, want, { timeoutSeconds: opts.timeoutSeconds, log });
    log(node.name, "done", `replaced in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    return {
      node: node.name,
      role: node.role,
      plan,
      dryRun: false,
      removedMember: member?.id,
      clusterIdBefore: view?.clusterId,
      clusterIdAfter: after?.clusterId,
      members: after?.health.length,
      terraformSeconds: Math.round(apply.seconds * 10) / 10,
      seconds: Math.round((performance.now() - started) / 100) / 10,
    };
  } finally {
    closeAll(sessions);
  }
}
