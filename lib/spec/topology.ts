// Derived facts about a validated spec that several layers need.
import type { ClusterSpec, NodeSpec } from "./schema.ts";

export const controlPlanes = (spec: ClusterSpec): NodeSpec[] => spec.nodes.filter((n) => n.role === "control-plane");
export const workers = (spec: ClusterSpec): NodeSpec[] => spec.nodes.filter((n) => n.role === "worker");

/** The node that runs `kubeadm init`: the first control plane listed. */
export function firstControlPlane(spec: ClusterSpec): NodeSpec {
  const first = controlPlanes(spec)[0];
  if (!first) throw new Error("spec has no control plane (validation should have caught this)");
  return first;
}

// ---- VRRP priorities and weights --------------------------------------------------------------

/** The first control plane's priority when the spec gives none and it leaves room for the weights. */
export const DEFAULT_BASE_PRIORITY = 150;
/** Each control plane gets this much less than the one before it. */
export const PRIORITY_STEP = 10;

export interface VrrpWeights {
  /** Subtracted from a node's priority while its apiserver check fails (negative). */
  checkWeight: number;
  /** Added to the holder's priority while it holds the VIP (0 when stickyVip is off). */
  holderBonus: number;
}

/**
 * Weights derived from the spread of the priorities (highest - lowest = s), margin 1:
 * - holderBonus = s + 1: a healthy holder outranks every other node, so a node that
 *   comes back does not take the VIP back (one move per failure, not two).
 * - checkWeight = -(holderBonus + s + 1): a failing holder drops below every healthy
 *   peer even with its bonus, so the VIP leaves it.
 * - When ALL checks fail, every node loses the same amount and the holder keeps its
 *   bonus, so the VIP stays where it is instead of vanishing (during bootstrap no
 *   apiserver exists yet, and kubeadm init needs the VIP to reach the first one).
 */
export function vrrpWeightsFor(count: number, sticky: boolean): VrrpWeights {
  const spread = PRIORITY_STEP * (count - 1);
  const holderBonus = sticky ? spread + 1 : 0;
  return { checkWeight: -(holderBonus + spread + 1), holderBonus };
}

export const vrrpWeights = (spec: ClusterSpec): VrrpWeights =>
  vrrpWeightsFor(controlPlanes(spec).length, spec.loadBalancer.vrrp.stickyVip);

/**
 * The base priorities that keep every effective priority (with the check weight or the
 * holder bonus applied) inside VRRP's 1..254; outside it keepalived clamps them and nodes
 * tie. Empty (min > max) when no base fits.
 */
export function basePriorityRange(count: number, sticky: boolean): { min: number; max: number } {
  const spread = PRIORITY_STEP * (count - 1);
  const { checkWeight, holderBonus } = vrrpWeightsFor(count, sticky);
  return { min: 1 - checkWeight + spread, max: 254 - holderBonus };
}

/**
 * The first control plane's priority: the spec's, else 150 when it leaves room for the
 * weights (3 and 5 control planes), else the nearest value that does (183 for 7 with stickyVip).
 */
export function basePriority(spec: ClusterSpec): number {
  const given = spec.loadBalancer.vrrp.basePriority;
  if (given !== undefined) return given;
  const { min, max } = basePriorityRange(Math.max(1, controlPlanes(spec).length), spec.loadBalancer.vrrp.stickyVip);
  return min <= max ? Math.min(max, Math.max(min, DEFAULT_BASE_PRIORITY)) : DEFAULT_BASE_PRIORITY;
}

/**
 * VRRP priority of each control plane: distinct and descending in list order, so
 * two backups never tie, and always below 255 so the tracked check keeps working.
 */
export function vrrpPriority(spec: ClusterSpec, node: NodeSpec): number {
  const index = controlPlanes(spec).findIndex((n) => n.name === node.name);
  if (index < 0) throw new Error(`${node.name} is not a control plane`);
  return Math.max(1, basePriority(spec) - PRIORITY_STEP * index);
}

/** The VIP endpoint as host:port. */
export const endpoint = (spec: ClusterSpec): string =>
  `${spec.controlPlaneEndpoint.vip}:${spec.controlPlaneEndpoint.port}`;

/** "1.31.4" -> "v1.31", the minor channel used by package repositories. */
export function kubernetesMinor(spec: ClusterSpec): string {
  const [major, minor] = spec.kubernetes.version.split(".");
  return `v${major}.${minor}`;
}
