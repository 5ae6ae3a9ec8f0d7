// Flags every etcd command shares: which spec, and which client certificate etcdctl uses.
import { checkedFlag, SPEC_FLAG } from "../cli.ts";
import { absolutePathProblem } from "../spec/formats.ts";
import { type EtcdAccess, KUBEADM_ETCD_ACCESS } from "./remote.ts";

export const commonEtcdFlags = {
  ...SPEC_FLAG,
  cacert: {
    type: "string",
    value: "PATH",
    description: "etcd CA on the control planes (default /etc/kubernetes/pki/etcd/ca.crt)",
  },
  cert: {
    type: "string",
    value: "PATH",
    description: "etcd client certificate there (default kubeadm's healthcheck-client.crt)",
  },
  key: { type: "string", value: "PATH", description: "its key (default kubeadm's healthcheck-client.key)" },
} as const;

/** The etcd client certificate paths from the flags. */
export function etcdAccess(values: { cacert?: string; cert?: string; key?: string }): EtcdAccess {
  // The paths go into root scripts on the control planes: absolute, plain paths only.
  const path = (flag: "cacert" | "cert" | "key") =>
    checkedFlag(flag, values[flag] ?? KUBEADM_ETCD_ACCESS[flag], (v) =>
      absolutePathProblem(v, KUBEADM_ETCD_ACCESS[flag]),
    );
  return { cacert: path("cacert"), cert: path("cert"), key: path("key") };
}
