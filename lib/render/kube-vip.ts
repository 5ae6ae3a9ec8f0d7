// loadBalancer.mode kube-vip: the kube-vip static pod on every control plane, in ARP mode with
// leader election through a Kubernetes lease (the leader holds the VIP), and optionally IPVS
// load balancing over every apiserver (lb_enable).
//
// Written against kube-vip v1.2.3's source (tag commit 7ce55caf, the DEFAULT_KUBE_VIP_IMAGE pin):
// pkg/kubevip/config_envvar.go (the environment variable names), pkg/kubevip/config_generator.go
// (`kube-vip manifest pod`: args [manager], NET_ADMIN + NET_RAW, the kubeconfig mounted at
// /etc/kubernetes/admin.conf, hostAliases kubernetes -> 127.0.0.1) and pkg/manager/manager.go
// (with cp_enable and that kubeconfig, kube-vip talks to https://kubernetes:<port>, i.e. the
// local apiserver, never the VIP it serves itself). kube-vip does not run in this project's
// tests: test/unit/render-kube-vip.test.ts holds the manifest to the names read from that source.
import { stringify } from "yaml";
import type { ClusterSpec, NodeSpec } from "../spec/schema.ts";
import { DEFAULT_KUBE_VIP_IMAGE } from "../versions.ts";
import { APISERVER_PORT } from "./haproxy.ts";
import { MANIFESTS_DIR } from "./static-pods.ts";

export const KUBE_VIP_MANIFEST = `${MANIFESTS_DIR}/kube-vip.yaml`;
export const ADMIN_CONF = "/etc/kubernetes/admin.conf";
/**
 * From Kubernetes 1.29 admin.conf is bound to kubeadm:cluster-admins, a group that gets its
 * rights only when kubeadm init has run its RBAC phase: during init on the first control plane
 * kube-vip must use super-admin.conf (system:masters), and admin.conf again afterwards.
 */
export const SUPER_ADMIN_CONF = "/etc/kubernetes/super-admin.conf";
/** kube-vip's default lease for the control-plane VIP (config_generator.go). */
export const KUBE_VIP_LEASE = "plndr-cp-lock";

export function kubeVipImage(spec: ClusterSpec): string {
  return spec.loadBalancer.kubeVip?.image ?? DEFAULT_KUBE_VIP_IMAGE;
}

/** The manifest with `kubeconfig` as the hostPath behind /etc/kubernetes/admin.conf in the pod. */
export function renderKubeVipManifest(spec: ClusterSpec, node: NodeSpec, kubeconfig = ADMIN_CONF): string {
  const { vip, interface: iface, prefix } = spec.controlPlaneEndpoint;
  const lb = spec.loadBalancer.kubeVip?.loadBalancing ?? false;
  const env: Record<string, string> = {
    vip_arp: "true",
    port: String(APISERVER_PORT),
    vip_nodename: node.name,
    vip_interface: iface,
    vip_subnet: String(prefix ?? 32),
    cp_enable: "true",
    cp_namespace: "kube-system",
    // Services of type LoadBalancer are not this project's business.
    svc_enable: "false",
    vip_leaderelection: "true",
    vip_leasename: KUBE_VIP_LEASE,
    // kube-vip's defaults (seconds): the VIP moves within about the lease duration of a leader's loss.
    vip_leaseduration: "5",
    vip_renewdeadline: "3",
    vip_retryperiod: "1",
    ...(lb ? { lb_enable: "true", lb_port: String(APISERVER_PORT) } : {}),
    address: vip,
  };
  const doc = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: "kube-vip",
      namespace: "kube-system",
      labels: { component: "kube-vip", tier: "control-plane", "app.kubernetes.io/managed-by": "kubeadm-ha" },
    },
    spec: {
      hostNetwork: true,
      // kube-vip resolves "kubernetes" to reach the apiserver on this node (its certificate names it).
      hostAliases: [{ ip: "127.0.0.1", hostnames: ["kubernetes"] }],
      containers: [
        {
          name: "kube-vip",
          image: kubeVipImage(spec),
          imagePullPolicy: "IfNotPresent",
          args: ["manager"],
          env: Object.entries(env).map(([name, value]) => ({ name, value })),
          securityContext: { capabilities: { add: ["NET_ADMIN", "NET_RAW"], drop: ["ALL"] } },
          volumeMounts: [{ name: "kubeconfig", mountPath: ADMIN_CONF, readOnly: true }],
        },
      ],
      volumes: [{ name: "kubeconfig", hostPath: { path: kubeconfig, type: "File" } }],
    },
  };
  return `# kubeadm-ha: kube-vip for ${node.name}. Generated: edit the spec, not this file.\n${stringify(doc)}`;
}

/**
 * sed expressions switching the manifest's kubeconfig hostPath (only the `path:` line of the
 * volume, never the mountPath) between admin.conf and super-admin.conf; the init step runs them.
 */
export function kubeconfigSwitch(from: string, to: string): string {
  return `s#^\\( *\\)path: ${from}$#\\1path: ${to}#`;
}
