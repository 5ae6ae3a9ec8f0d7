// Static pod manifests for the lab's control planes, in the shape kubeadm writes them, so
// the etcd toolkit patches the same fields it patches on a real cluster. The kubelet
// stand-in runs containers[0].command as a plain process: image, probes and resources are
// there for shape only. Every etcd flag here is one etcd 3.4 (Debian 12) and 3.5 (Debian 13) accept.
import { stringify } from "yaml";

export interface ManifestNode {
  name: string;
  address: string;
}

const PKI = "/etc/kubernetes/pki";

export function etcdManifest(node: ManifestNode, members: ManifestNode[]): string {
  const initialCluster = members.map((m) => `${m.name}=https://${m.address}:2380`).join(",");
  const pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      annotations: { "kubeadm.kubernetes.io/etcd.advertise-client-urls": `https://${node.address}:2379` },
      labels: { component: "etcd", tier: "control-plane" },
      name: "etcd",
      namespace: "kube-system",
    },
    spec: {
      containers: [
        {
          command: [
            "etcd",
            `--advertise-client-urls=https://${node.address}:2379`,
            `--cert-file=${PKI}/etcd/server.crt`,
            "--client-cert-auth=true",
            "--data-dir=/var/lib/etcd",
            `--initial-advertise-peer-urls=https://${node.address}:2380`,
            `--initial-cluster=${initialCluster}`,
            "--initial-cluster-state=new",
            `--key-file=${PKI}/etcd/server.key`,
            `--listen-client-urls=https://127.0.0.1:2379,https://${node.address}:2379`,
            "--listen-metrics-urls=http://127.0.0.1:2381",
            `--listen-peer-urls=https://${node.address}:2380`,
            `--name=${node.name}`,
            `--peer-cert-file=${PKI}/etcd/peer.crt`,
            "--peer-client-cert-auth=true",
            `--peer-key-file=${PKI}/etcd/peer.key`,
            `--peer-trusted-ca-file=${PKI}/etcd/ca.crt`,
            // etcd 3.5+ (every image kubeadm deploys) has pre-vote on by default; Debian 12's
            // etcd 3.4 has it off, and there a member cut off for a few seconds keeps raising its
            // term and, once back, makes the leader step down: ~4 s without linearizable reads,
            // every apiserver stand-in at 500 and every haproxy backend DOWN (measured on the lab
            // after a link outage). Explicit here so the lab's etcd behaves like kubeadm's.
            "--pre-vote=true",
            "--snapshot-count=10000",
            `--trusted-ca-file=${PKI}/etcd/ca.crt`,
          ],
          image: "registry.k8s.io/etcd:3.5.15-0",
          imagePullPolicy: "IfNotPresent",
          livenessProbe: {
            failureThreshold: 8,
            httpGet: {
              host: "127.0.0.1",
              path: "/health?exclude=NOSPACE&serializable=true",
              port: 2381,
              scheme: "HTTP",
            },
            initialDelaySeconds: 10,
            periodSeconds: 10,
            timeoutSeconds: 15,
          },
          name: "etcd",
          resources: { requests: { cpu: "100m", memory: "100Mi" } },
          volumeMounts: [
            { mountPath: "/var/lib/etcd", name: "etcd-data" },
            { mountPath: `${PKI}/etcd`, name: "etcd-certs" },
          ],
        },
      ],
      hostNetwork: true,
      priority: 2000001000,
      priorityClassName: "system-node-critical",
      securityContext: { seccompProfile: { type: "RuntimeDefault" } },
      volumes: [
        { hostPath: { path: `${PKI}/etcd`, type: "DirectoryOrCreate" }, name: "etcd-certs" },
        { hostPath: { path: "/var/lib/etcd", type: "DirectoryOrCreate" }, name: "etcd-data" },
      ],
    },
    status: {},
  };
  return stringify(pod);
}

/** The apiserver stand-in, started like kube-apiserver from a static pod; its flags use kube-apiserver's names. */
export function apiserverManifest(
  node: ManifestNode,
  bun: string,
  standin: string,
  /** Extra flags as kubeadm writes apiServer.extraArgs (--name=value). */
  extraArgs: Record<string, string> = {},
): string {
  const pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      annotations: { "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint": `${node.address}:6443` },
      labels: { component: "kube-apiserver", tier: "control-plane" },
      name: "kube-apiserver",
      namespace: "kube-system",
    },
    spec: {
      containers: [
        {
          command: [
            bun,
            standin,
            `--advertise-address=${node.address}`,
            "--secure-port=6443",
            `--tls-cert-file=${PKI}/apiserver.crt`,
            `--tls-private-key-file=${PKI}/apiserver.key`,
            "--etcd-servers=https://127.0.0.1:2379",
            `--etcd-cafile=${PKI}/etcd/ca.crt`,
            `--etcd-certfile=${PKI}/apiserver-etcd-client.crt`,
            `--etcd-keyfile=${PKI}/apiserver-etcd-client.key`,
            ...Object.entries(extraArgs).map(([k, v]) => `--${k}=${v}`),
          ],
          env: [{ name: "BUN_RUNTIME_TRANSPILER_CACHE_PATH", value: "0" }],
          image: "registry.k8s.io/kube-apiserver:v1.31.4",
          name: "kube-apiserver",
          volumeMounts: [{ mountPath: PKI, name: "k8s-certs", readOnly: true }],
        },
      ],
      hostNetwork: true,
      priorityClassName: "system-node-critical",
      volumes: [{ hostPath: { path: PKI, type: "DirectoryOrCreate" }, name: "k8s-certs" }],
    },
    status: {},
  };
  return stringify(pod);
}
