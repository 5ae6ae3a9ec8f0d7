// Healing a cluster, the pure part: etcd quorum arithmetic, which member is a node's, which
// Terraform steps belong to a node, and the plans and refusals node:replace, node:remove and
// etcd:recover print. No SSH here, so every rule is unit-tested without hosts.
import type { MemberInfo } from "../etcd/member-list.ts";
import type { NodeSpec } from "../spec/schema.ts";

/** Members that must agree for etcd to accept a write: a majority. */
export const quorumOf = (members: number): number => Math.floor(members / 2) + 1;

/** A member and whether it answered a health check. */
export interface MemberHealth {
  member: MemberInfo;
  healthy: boolean;
}

/** etcd's peer URL for an address (IPv6 in brackets), as kubeadm writes it. */
export const peerUrlOf = (address: string): string =>
  `https://${address.includes(":") ? `[${address}]` : address}:2380`;

/**
 * The node's etcd member: the one whose peer URL is the node's address (also a member that was
 * added but never started, which has no name yet), else the one with the node's name.
 */
export function memberOf(members: MemberInfo[], node: Pick<NodeSpec, "name" | "address">): MemberInfo | undefined {
  const peer = peerUrlOf(node.address);
  return members.find((m) => m.peerUrls.includes(peer)) ?? members.find((m) => m.name === node.name);
}

/** A member's label in messages: its name, or "(never started)" with its peer URL. */
export const memberLabel = (m: MemberInfo): string =>
  `${m.name || "(never started)"} ${m.id} ${m.peerUrls.join(",")}`.trim();

/**
 * Why removing `target` (a member's id, or none) from the cluster would be unsafe, or undefined.
 * etcd needs a quorum to remove a member at all, and the members left need one too; and no other
 * member may be down, because the join that follows checks every member (kubeadm's check-etcd)
 * and two control planes are never touched at once.
 */
export function removalProblem(health: MemberHealth[], target: string | undefined, node: string): string | undefined {
  const n = health.length;
  const healthy = health.filter((h) => h.healthy).length;
  if (healthy < quorumOf(n))
    return `etcd has no quorum: ${healthy} of ${n} members healthy, ${quorumOf(n)} needed. No member can be removed now. If the others are lost for good, run \`bun run etcd:recover --from NODE\` with a surviving control plane first (see --help), then node:replace the others one at a time.`;
  const others = health.filter((h) => h.member.id !== target && !h.healthy);
  if (others.length)
    return `another etcd member is unhealthy too (${others.map((h) => memberLabel(h.member)).join("; ")}). node:replace changes one control plane at a time and its join checks every member: bring that one back, or replace it first. Nothing was changed for ${node}.`;
  if (target === undefined) return undefined;
  const left = health.filter((h) => h.member.id !== target);
  const leftHealthy = left.filter((h) => h.healthy).length;
  if (leftHealthy < quorumOf(left.length))
    return `removing ${node}'s member would leave ${leftHealthy} healthy of ${left.length}, below the quorum of ${quorumOf(left.length)}. Nothing was changed.`;
  return undefined;
}

/** The resource type of a step in the stack, by back-end. */
export const stepResourceType = (backend: "builtin" | "hashicorp"): string =>
  backend === "builtin" ? "terraform_data" : "null_resource";

export interface StackStep {
  /** Terraform address, e.g. terraform_data.join_cp_2. */
  address: string;
  /** The node the step runs on (its triggers.node). */
  node: string;
  /** The address the step reaches the node at (its triggers.address). */
  nodeAddress: string;
  /** The step's name without its type, e.g. join_cp_2. */
  name: string;
}

/**
 * The steps of a synthesized stack (cdk.tf.json), read from each step resource's triggers:
 * every resource that runs on a node (the membership resources of resetOnDestroy excepted: they
 * are the node's identity, not a step).
 */
export function stackSteps(cdkTfJson: unknown): StackStep[] {
  const resources = (cdkTfJson as { resource?: Record<string, Record<string, unknown>> }).resource ?? {};
  const out: StackStep[] = [];
  for (const type of ["terraform_data", "null_resource"]) {
    for (const [name, r] of Object.entries(resources[type] ?? {})) {
      const triggers = ((r as { triggers_replace?: unknown; triggers?: unknown }).triggers_replace ??
        (r as { triggers?: unknown }).triggers) as Record<string, string> | undefined;
      if (!triggers?.node || name.startsWith("membership_")) continue;
      out.push({ address: `${type}.${name}`, node: triggers.node, nodeAddress: triggers.address ?? "", name });
    }
  }
  return out;
}

/** One planned action: where, which phase, what. */
export interface PlannedAction {
  host: string;
  phase: string;
  action: string;
}

export interface ReplaceFacts {
  node: NodeSpec;
  /** Members as the healthy control plane sees them, with their health (empty for a worker). */
  health: MemberHealth[];
  /** The control plane the etcd and kubectl calls go through. */
  via: string;
  /** The node's steps to run again (terraform -replace). */
  steps: StackStep[];
  /** Whether the node's host answers SSH now. */
  reachable: boolean;
}

/** What node:replace will do, in order. */
export function replacePlan(f: ReplaceFacts): PlannedAction[] {
  const name = f.node.name;
  const plan: PlannedAction[] = [];
  if (f.node.role === "control-plane") {
    const member = memberOf(
      f.health.map((h) => h.member),
      f.node,
    );
    const n = f.health.length;
    plan.push({
      host: f.via,
      phase: "quorum",
      action: `check etcd keeps its quorum without ${name}: ${f.health.filter((h) => h.healthy).length} of ${n} healthy, ${quorumOf(Math.max(n - (member ? 1 : 0), 1))} needed after the removal`,
    });
    plan.push({
      host: f.via,
      phase: "etcd",
      action: member
        ? `remove ${name}'s stale member ${memberLabel(member)}`
        : `no member of ${name} in the list (${peerUrlOf(f.node.address)}): nothing to remove`,
    });
  }
  plan.push({
    host: f.via,
    phase: "node",
    action: `kubectl delete node ${name} (kubeadm's record of it)`,
  });
  plan.push({
    host: name,
    phase: "reset",
    action: f.reachable
      ? "kubeadm reset -f and remove kubeadm-ha's state on the host"
      : "host does not answer SSH: refuse (the replacement host must be up at the spec's address)",
  });
  plan.push({
    host: "local",
    phase: "terraform",
    action: `terraform apply -replace for ${f.steps.map((s) => s.address).join(", ")} -var join_via=${f.via} (join material minted on ${f.via}; a fresh token and certificate key: they derive from the new step ids)`,
  });
  plan.push({
    host: f.via,
    phase: "wait",
    action:
      f.node.role === "control-plane"
        ? `wait for ${
            f.health.length -
            (
              memberOf(
                f.health.map((h) => h.member),
                f.node,
              )
                ? 1
                : 0
            ) +
            1
          } etcd members healthy and /readyz through the VIP`
        : "wait for /readyz through the VIP",
  });
  return plan;
}

export const planText = (plan: PlannedAction[]): string =>
  `${plan.map((p, i) => `${String(i + 1).padStart(2)}. ${p.host.padEnd(10)} ${p.phase.padEnd(10)} ${p.action}`).join("\n")}\n`;

/**
 * Why the node's steps cannot be replaced: a node the stack does not know, or a stack synthesized
 * from another spec. (The first control plane is replaced like the others: with join_via naming
 * a healthy control plane its init step joins the running cluster instead of starting one.)
 */
export function stepsProblem(steps: StackStep[], node: NodeSpec, stackDir: string): string | undefined {
  const mine = steps.filter((s) => s.node === node.name);
  if (mine.length === 0)
    return `the stack in ${stackDir} has no steps for ${node.name}: synthesize it from this spec first (bun run synth), and deploy once.`;
  const stale = mine.find((s) => s.nodeAddress && s.nodeAddress !== node.address);
  if (stale)
    return `the stack in ${stackDir} has ${node.name} at ${stale.nodeAddress}, the spec at ${node.address}: synthesize it from this spec first (bun run synth).`;
  return undefined;
}

/** When etcd:recover is the way, and when only etcd:restore is: said in the help, the output and the README. */
export const RECOVER_VS_RESTORE =
  "Use etcd:recover when quorum is lost for good but one control plane still has its etcd data: it keeps every write that member had (no snapshot, nothing since the last backup is lost). Use etcd:restore when no member's data can be trusted or survived (every disk lost, or a bad write to undo): it goes back to the snapshot.";

/** The step resources in Terraform's state (`terraform show -json`), as stackSteps reads the stack. */
export function stateSteps(showJson: unknown): StackStep[] {
  const root = (showJson as { values?: { root_module?: { resources?: unknown[] } } }).values?.root_module;
  const out: StackStep[] = [];
  for (const r of (root?.resources ?? []) as {
    address: string;
    type: string;
    name: string;
    values?: { triggers_replace?: Record<string, string>; triggers?: Record<string, string> };
  }[]) {
    if (r.type !== "terraform_data" && r.type !== "null_resource") continue;
    const t = r.values?.triggers_replace ?? r.values?.triggers;
    if (!t?.node || r.name.startsWith("membership_")) continue;
    out.push({ address: r.address, node: t.node, nodeAddress: t.address ?? "", name: r.name });
  }
  return out;
}

/** A node's role as its steps say: control planes have a load-balancer step. */
export const roleFromSteps = (steps: StackStep[], node: string): "control-plane" | "worker" =>
  steps.some((s) => s.node === node && s.name.startsWith("loadbalancer_")) ? "control-plane" : "worker";

/**
 * Why node:remove must not go on: the node still in the spec (the spec is edited first, so
 * Terraform's state and the spec agree), a stack not synthesized from that spec, a node Terraform
 * never built, or too few control planes left without --force.
 */
export function removeProblem(opts: {
  name: string;
  inSpec: boolean;
  inStack: boolean;
  inState: boolean;
  role: "control-plane" | "worker";
  controlPlanesLeft: number;
  force: boolean;
}): string | undefined {
  const { name } = opts;
  if (opts.inSpec)
    return `${name} is still in the spec. Remove it from the nodes list first and run bun run synth: node:remove then cleans the cluster side and applies that spec, so Terraform's state and the spec stay the same. Nothing was changed.`;
  if (opts.inStack)
    return `the synthesized stack still has steps for ${name}: run bun run synth with the edited spec first. Nothing was changed.`;
  if (!opts.inState)
    return `Terraform's state has no steps for ${name}: it was never deployed, or is already removed. Nothing was changed.`;
  if (opts.role === "control-plane" && opts.controlPlanesLeft < 3 && !opts.force)
    return `removing ${name} leaves ${opts.controlPlanesLeft} control plane${opts.controlPlanesLeft === 1 ? "" : "s"}: with fewer than 3 etcd members the cluster no longer survives the loss of one. Add a control plane first, or pass --force. Nothing was changed.`;
  return undefined;
}

/** Nodes Terraform's state has and the edited spec dropped, but node:remove was not given: the apply would drop them unseen. */
export function unnamedDropped(state: StackStep[], specNodes: string[], names: string[]): string[] {
  return [...new Set(state.map((s) => s.node))].filter((n) => !specNodes.includes(n) && !names.includes(n));
}
