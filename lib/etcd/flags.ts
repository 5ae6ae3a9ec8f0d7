// Flags every etcd command shares: which spec, and which client certificate etcdctl uses.
import { checkedFlag } from "../cli.ts";
import { absolutePathProblem } from "../spec/formats.ts";
import { loadSpec, specPath } from "../spec/load.ts";
import type { ClusterSpec } from "../spec/schema.ts";
import { type EtcdAccess, KUBEADM_ETCD_ACCESS } from "./remote.ts";

export const commonEtcdFlags = {
  spec: { type: "string" },
  cacert: { type: "string" },
  cert: { type: "string" },
  key: { type: "string" },
} as const;

export const COMMON_HELP =
  "--spec FILE picks the cluster spec (default $CLUSTER_SPEC or cluster.yaml). --cacert/--cert/--key are the etcd client certificate paths on the control planes (default kubeadm's /etc/kubernetes/pki/etcd/ca.crt and healthcheck-client.crt/.key).";

export function specAndAccess(values: { spec?: string; cacert?: string; cert?: string; key?: string }): {
  spec: ClusterSpec;
  access: EtcdAccess;
} {
  // The paths go into root scripts on the control planes: absolute, plain paths only.
  const path = (flag: "cacert" | "cert" | "key") =>
    checkedFlag(flag, values[flag] ?? KUBEADM_ETCD_ACCESS[flag], (v) =>
      absolutePathProblem(v, KUBEADM_ETCD_ACCESS[flag]),
    );
  const access = { cacert: path("cacert"), cert: path("cert"), key: path("key") };
  return { spec: loadSpec(specPath(values.spec)), access };
}
