// The whole cluster as an ordered list of steps: what the constructs turn into
// Terraform resources and what `drift` compares hosts against.
import type { ClusterSpec } from "../spec/schema.ts";
import { controlPlanes, firstControlPlane, workers } from "../spec/topology.ts";
import { etcdBackupTimerStep } from "./etcd-backup-timer.ts";
import { cniStep, initStep, joinStep } from "./kube-phases.ts";
import { loadBalancerStep } from "./loadbalancer.ts";
import { prepareStep } from "./prepare.ts";
import type { Step } from "./types.ts";

/** What the renderers need beyond the spec: the cluster CA (public part) generated with the secrets. */
export interface RenderContext {
  caCertPem: string;
  /** sha256:<hex> of the CA's SubjectPublicKeyInfo, as kubeadm's discovery expects. */
  caCertHash: string;
}

export function renderCluster(spec: ClusterSpec, ctx: RenderContext): Step[] {
  const cps = controlPlanes(spec);
  const first = firstControlPlane(spec);
  const steps: Step[] = [
    ...spec.nodes.map((n) => prepareStep(spec, n)),
    ...cps.map((n) => loadBalancerStep(spec, n)),
    initStep(spec, ctx),
    cniStep(spec),
    ...cps.filter((n) => n.name !== first.name).map((n) => joinStep(spec, n, ctx)),
    ...workers(spec).map((n) => joinStep(spec, n, ctx)),
    // With or without a schedule: without one, the step removes a timer an earlier spec installed.
    ...cps.map((n) => etcdBackupTimerStep(spec, n)),
  ];
  return steps;
}
