// kubeadm's configuration files (runbook section 6) for `kubeadm init` and
// `kubeadm join`. Pure: spec + cluster CA facts in, YAML text out. Secrets never
// appear here: the bootstrap token and certificate key are placeholders that the
// phase script fills into a 0600 temporary copy on the host.
import { createHash, X509Certificate } from "node:crypto";
import { stringify } from "yaml";
import type { ClusterSpec, NodeSpec } from "../spec/schema.ts";
import { controlPlanes, endpoint, firstControlPlane } from "../spec/topology.ts";
import { type KubeadmApiVersion, kubernetesFacts } from "../versions.ts";
import { CONTAINERD_SOCKET } from "./containerd.ts";

export const BOOTSTRAP_TOKEN_PLACEHOLDER = "__BOOTSTRAP_TOKEN__";
export const CERTIFICATE_KEY_PLACEHOLDER = "__CERTIFICATE_KEY__";
/** The port every stacked apiserver listens on; the VIP port (8443 by default) is haproxy's. */
export const APISERVER_BIND_PORT = 6443;
/**
 * Every join mints its own token on the first control plane and deletes it once the node has
 * joined; the TTL only bounds a token whose join failed half way (kubeadm's join and TLS
 * bootstrap take minutes, not an hour).
 */
export const BOOTSTRAP_TOKEN_TTL = "1h0m0s";

/** Facts about the cluster CA, which the lead generates before init so joins can pin it. */
export interface KubeadmContext {
  /** The CA certificate (PEM), installed as /etc/kubernetes/pki/ca.crt before kubeadm init. */
  caCertPem: string;
  /** "sha256:<hex>" of the CA certificate's SubjectPublicKeyInfo, as kubeadm's caCertHashes want it. */
  caCertHash: string;
}

/** kubeadm's discovery hash of a CA certificate: sha256 over its DER SubjectPublicKeyInfo. */
export function caCertHashFromPem(pem: string): string {
  const spki = new X509Certificate(pem).publicKey.export({ type: "spki", format: "der" });
  return `sha256:${createHash("sha256").update(spki).digest("hex")}`;
}

/** Refuse a context whose hash does not belong to its certificate: every join would fail CA pinning. */
export function checkContext(ctx: KubeadmContext): void {
  if (!/^sha256:[0-9a-f]{64}$/.test(ctx.caCertHash)) {
    throw new Error(
      `caCertHash must look like sha256:<64 hex digits>, got ${JSON.stringify(ctx.caCertHash.slice(0, 80))}`,
    );
  }
  if (!ctx.caCertPem.includes("-----BEGIN CERTIFICATE-----")) throw new Error("caCertPem is not a PEM certificate");
  const actual = caCertHashFromPem(ctx.caCertPem);
  if (actual !== ctx.caCertHash)
    throw new Error(`caCertHash ${ctx.caCertHash} does not match caCertPem (its hash is ${actual})`);
}

/** v1beta4 from Kubernetes 1.31, v1beta3 for 1.30 (the versions table; validate.ts refuses other minors). */
export function kubeadmApiVersion(spec: ClusterSpec): KubeadmApiVersion {
  return kubernetesFacts(spec.kubernetes.version).kubeadmApi;
}

/** v1beta3 takes extra arguments as a map; v1beta4 as a list of {name, value} (duplicates allowed). */
function extraArgs(
  spec: ClusterSpec,
  args: Record<string, string>,
): Record<string, string> | { name: string; value: string }[] {
  if (kubeadmApiVersion(spec).endsWith("v1beta3")) return { ...args };
  return Object.entries(args).map(([name, value]) => ({ name, value }));
}

/** A duration as the spec writes it (500ms, 5s, 10m, 1h), in milliseconds. */
/** A spec duration ("500ms", "2s") in milliseconds; validation has already checked the form. */
export function durationMs(d: string): number {
  const m = /^(\d+)(ms|s|m|h)$/.exec(d);
  if (!m) throw new Error(`not a duration: ${d}`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as "ms" | "s" | "m" | "h"];
}

/**
 * kube-apiserver's own flags. shutdown-delay-duration: on SIGTERM (a restart of its static pod,
 * e.g. after a certificate renewal) it fails /readyz at once but keeps serving and listening for
 * this long, so every haproxy's /readyz check takes it out of the rotation (fall x inter) before
 * it closes its listener. Without it a connection haproxy had just handed over sat in the closing
 * listener's queue and was reset: one failed request per restart, measured in the lab.
 */
export function apiServerArgs(spec: ClusterSpec): Record<string, string> {
  const hc = spec.loadBalancer.haproxy.healthCheck;
  const seconds = Math.ceil((hc.fall * durationMs(hc.interval)) / 1000) + 2;
  return { "shutdown-delay-duration": `${seconds}s` };
}

/** The spec asked to keep a 1.35+ kubelet on cgroup v1, which it refuses by default. */
const keepsCgroupV1 = (spec: ClusterSpec): boolean =>
  spec.kubernetes.allowCgroupV1 && kubernetesFacts(spec.kubernetes.version).failsCgroupV1ByDefault;

function nodeRegistration(spec: ClusterSpec, node: NodeSpec) {
  return {
    name: node.name,
    criSocket: CONTAINERD_SOCKET,
    // Without it kubelet picks the address of the default-route interface, which is wrong on
    // multi-homed hosts and missing on hosts without a default route.
    kubeletExtraArgs: extraArgs(spec, { "node-ip": node.address }),
    // kubeadm's SystemVerification errors on cgroup v1 where kubelet refuses it (1.35+).
    ...(keepsCgroupV1(spec) ? { ignorePreflightErrors: ["SystemVerification"] } : {}),
  };
}

const apiEndpoint = (node: NodeSpec) => ({ advertiseAddress: node.address, bindPort: APISERVER_BIND_PORT });

/**
 * YAML of the documents, remembered by their JSON: every join of a cluster mints its token with
 * the same documents, and the yaml package's stringify is the costliest part of rendering a
 * large cluster (200 identical renders for 200 workers). JSON keeps every key, order and type.
 */
const yamlCache = new Map<string, string>();
function yamlDocs(docs: object[]): string {
  const key = JSON.stringify(docs);
  let text = yamlCache.get(key);
  if (text === undefined) {
    text = docs.map((d) => stringify(d, { lineWidth: 0 })).join("---\n");
    if (yamlCache.size > 1000) yamlCache.clear();
    yamlCache.set(key, text);
  }
  return text;
}

/** InitConfiguration + ClusterConfiguration + KubeletConfiguration for the first control plane. */
export function renderInitConfig(spec: ClusterSpec, ctx: KubeadmContext): string {
  checkContext(ctx);
  return renderInitDocuments(spec, false);
}

/**
 * The same documents for minting one join's material on the first control plane
 * (`kubeadm token create --config`, and for a control plane `init phase upload-certs`):
 * kubeadm reads the token, TTL and certificate key from them.
 */
export const renderJoinTokenConfig = (spec: ClusterSpec, controlPlane: boolean): string =>
  renderInitDocuments(spec, controlPlane);

function renderInitDocuments(spec: ClusterSpec, withCertificateKey: boolean): string {
  const apiVersion = kubeadmApiVersion(spec);
  const first = firstControlPlane(spec);
  const sans = [...new Set([spec.controlPlaneEndpoint.vip, ...controlPlanes(spec).map((n) => n.address)])];
  const init = {
    apiVersion,
    kind: "InitConfiguration",
    bootstrapTokens: [
      {
        token: BOOTSTRAP_TOKEN_PLACEHOLDER,
        ttl: BOOTSTRAP_TOKEN_TTL,
        usages: ["signing", "authentication"],
        groups: ["system:bootstrappers:kubeadm:default-node-token"],
        description: "kubeadm-ha join token",
      },
    ],
    // Only when certificates are uploaded for a control-plane join, with that join's own key.
    ...(withCertificateKey ? { certificateKey: CERTIFICATE_KEY_PLACEHOLDER } : {}),
    localAPIEndpoint: apiEndpoint(first),
    nodeRegistration: nodeRegistration(spec, first),
  };
  const cluster = {
    apiVersion,
    kind: "ClusterConfiguration",
    clusterName: spec.name,
    kubernetesVersion: `v${spec.kubernetes.version}`,
    controlPlaneEndpoint: endpoint(spec),
    networking: {
      podSubnet: spec.networking.podSubnet,
      serviceSubnet: spec.networking.serviceSubnet,
      dnsDomain: spec.networking.dnsDomain,
    },
    etcd: { local: { dataDir: spec.etcd.dataDir } },
    apiServer: { certSANs: sans, extraArgs: extraArgs(spec, apiServerArgs(spec)) },
    // A mirror for air-gapped sites; kubeadm's default (registry.k8s.io) otherwise.
    ...(spec.kubernetes.imageRepository ? { imageRepository: spec.kubernetes.imageRepository } : {}),
  };
  const kubelet = {
    apiVersion: "kubelet.config.k8s.io/v1beta1",
    kind: "KubeletConfiguration",
    cgroupDriver: spec.containerRuntime.cgroupDriver,
    ...(keepsCgroupV1(spec) ? { failCgroupV1: false } : {}),
  };
  const filled = withCertificateKey
    ? `${BOOTSTRAP_TOKEN_PLACEHOLDER} and ${CERTIFICATE_KEY_PLACEHOLDER} are`
    : `${BOOTSTRAP_TOKEN_PLACEHOLDER} is`;
  return `# Generated by kubeadm-ha for cluster ${spec.name}: edit the spec, not this file.\n# ${filled} filled in on the host, in a temporary copy only.\n${yamlDocs([init, cluster, kubelet])}`;
}

/**
 * JoinConfiguration for a worker or a further control plane; discovery pins the cluster CA.
 * The first control plane has one too: it joins instead of init when it is being replaced.
 */
export function renderJoinConfig(spec: ClusterSpec, node: NodeSpec, ctx: KubeadmContext): string {
  checkContext(ctx);
  const join: Record<string, unknown> = {
    apiVersion: kubeadmApiVersion(spec),
    kind: "JoinConfiguration",
    discovery: {
      bootstrapToken: {
        apiServerEndpoint: endpoint(spec),
        token: BOOTSTRAP_TOKEN_PLACEHOLDER,
        caCertHashes: [ctx.caCertHash],
      },
    },
    nodeRegistration: nodeRegistration(spec, node),
  };
  if (node.role === "control-plane") {
    join.controlPlane = { localAPIEndpoint: apiEndpoint(node), certificateKey: CERTIFICATE_KEY_PLACEHOLDER };
  }
  return `# Generated by kubeadm-ha for cluster ${spec.name}, node ${node.name}: edit the spec, not this file.\n${yamlDocs([join])}`;
}
