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

/**
 * VRRP priority of each control plane: distinct and descending in list order, so
 * two backups never tie, and always below 255 so the tracked check keeps working.
 */
export function vrrpPriority(spec: ClusterSpec, node: NodeSpec): number {
  const index = controlPlanes(spec).findIndex((n) => n.name === node.name);
  if (index < 0) throw new Error(`${node.name} is not a control plane`);
  return Math.max(1, spec.loadBalancer.vrrp.basePriority - 10 * index);
}

/** The VIP endpoint as host:port. */
export const endpoint = (spec: ClusterSpec): string =>
  `${spec.controlPlaneEndpoint.vip}:${spec.controlPlaneEndpoint.port}`;

/** "1.31.4" -> "v1.31", the minor channel used by package repositories. */
export function kubernetesMinor(spec: ClusterSpec): string {
  const [major, minor] = spec.kubernetes.version.split(".");
  return `v${major}.${minor}`;
}
