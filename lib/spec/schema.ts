// The cluster spec: the one file a user writes. Every field has a default where a
// sensible one exists, so the example spec stays short. Cross-field rules (odd
// control-plane count, CIDR overlaps, VIP placement ...) live in validate.ts.
import { z } from "zod";
import { onCalendarProblem } from "./calendar.ts";
import {
  absolutePathProblem,
  dnsNameProblem,
  imageReferenceProblem,
  imageRepositoryProblem,
  isHostName,
  localPathProblem,
  loginNameProblem,
  terraformNameProblem,
} from "./formats.ts";

const ipv4 = z.ipv4({ error: "must be an IPv4 address such as 10.0.0.10" });
const cidr4 = z.cidrv4({ error: "must be an IPv4 CIDR such as 10.244.0.0/16" });
const port = z
  .number({ error: "must be a port number (1-65535)" })
  .int({ error: "must be a whole port number (1-65535)" })
  .min(1, { error: "must be a port number between 1 and 65535" })
  .max(65535, { error: "must be a port number between 1 and 65535" });
const dnsLabel = z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, {
  error: "must be a lowercase DNS label: letters, digits and '-', at most 63 characters",
});
/**
 * Free text whose format formats.ts checks: these values reach shell scripts, configs, units
 * and Terraform on the hosts, so a value outside its plain form is refused here, naming the field.
 */
const text = (problem: (value: string) => string | undefined) =>
  z.string().superRefine((value, ctx) => {
    const p = problem(value);
    if (p) ctx.addIssue({ code: "custom", message: p });
  });
const loginName = text(loginNameProblem);
const keyPath = text((v) =>
  v === ""
    ? "is empty; remove privateKeyPath to use ssh.agent or the ssh_private_key variable, or write e.g. ~/.ssh/id_ed25519"
    : localPathProblem(v, "~/.ssh/id_ed25519"),
);
/** Go-style durations as haproxy and kubeadm accept them: 500ms, 5s, 1h. */
const duration = z.string().regex(/^\d+(ms|s|m|h)$/, { error: "must be a duration such as 500ms, 5s, 10m or 1h" });

export const SshSchema = z.strictObject({
  user: loginName.default("root"),
  port: port.default(22),
  /** Private key file on the machine that runs the tool; ~/ is expanded. Unset: the agent, or the ssh_private_key variable. */
  privateKeyPath: keyPath.optional(),
  /** Use $SSH_AUTH_SOCK instead of a key file. */
  agent: z.boolean().default(false),
  /** known_hosts used to verify every host key; relative paths are relative to the spec file. */
  knownHostsPath: text((v) => localPathProblem(v, ".kubeadm-ha/known_hosts")).default(".kubeadm-ha/known_hosts"),
  bastion: z
    .strictObject({
      host: z.string().min(1),
      port: port.default(22),
      user: loginName.optional(),
      privateKeyPath: keyPath.optional(),
    })
    .optional(),
});

export const NodeSshSchema = z.strictObject({
  /** Address used for SSH when it differs from the cluster address (NAT, management network). */
  host: z.string().min(1).optional(),
  user: loginName.optional(),
  port: port.optional(),
  privateKeyPath: keyPath.optional(),
});

export const NodeSchema = z.strictObject({
  name: dnsLabel,
  address: ipv4,
  role: z.enum(["control-plane", "worker"], { error: "must be control-plane or worker" }),
  ssh: NodeSshSchema.optional(),
});

export const ControlPlaneEndpointSchema = z.strictObject({
  vip: ipv4,
  port: port.default(8443),
  /** Network interface that carries the VIP on every control plane. */
  interface: z.string().regex(/^[A-Za-z0-9_.:@-]{1,15}$/, { error: "must be a network interface name such as eth0" }),
  /** Prefix length of the node subnet; when given, the VIP must be inside every control plane's subnet. */
  prefix: z.number().int().min(1).max(32).optional(),
  virtualRouterId: z
    .number({ error: "must be a number between 1 and 255" })
    .int()
    .min(1, { error: "must be between 1 and 255" })
    .max(255, { error: "must be between 1 and 255" })
    .default(51),
});

export const VrrpSchema = z.strictObject({
  /** Unicast peers work where multicast is blocked (most clouds, many CNIs). */
  unicast: z.boolean().default(true),
  /**
   * 3 (default) allows sub-second adverts: measured on lab hosts, the VIP leaves a dead holder in
   * 0.3 s instead of 2.5-3.2 s with version 2's 1 s minimum. Version 3 has no authentication;
   * version 2's is an 8-character password sent in clear text, so it only guards against
   * accidents (another VRRP group on the segment), not attackers: pick 2 where that matters more.
   */
  version: z.union([z.literal(2), z.literal(3)]).default(3),
  /** 0.1 s with version 3 (a dead holder is noticed after ~3 adverts); version 2 needs whole seconds. */
  advertIntervalSeconds: z.number().positive().max(255).default(0.1),
  /**
   * Highest priority, given to the first control plane; the next get 10 less each. Below 255 on purpose.
   * Unset: 150, or the nearest value that leaves room for the health-check weights (topology.ts: basePriority).
   */
  basePriority: z.number().int().min(2).max(254).optional(),
  /**
   * The node holding the VIP gets a priority bonus while it is healthy, so a node that comes back
   * (reboot, restarted apiserver) does not take the VIP back and cut every open API stream again.
   */
  stickyVip: z.boolean().default(true),
});

export const HaproxySchema = z.strictObject({
  stats: z
    .strictObject({
      enabled: z.boolean().default(true),
      port: port.default(8404),
      bindAddress: ipv4.default("127.0.0.1"),
      user: z
        .string()
        .regex(/^[A-Za-z0-9_.-]+$/, { error: "must be letters, digits, '.', '_' or '-', e.g. admin" })
        .default("admin"),
    })
    .prefault({}),
  timeouts: z
    .strictObject({
      // Short: on a LAN a connect takes well under a millisecond; a blackholed backend costs this much
      // per retry. Measured: with 200ms the retry on another server lands inside a client's 1 s limit
      // (holder link down: last failed request 1.8 s -> 0.4 s).
      connect: duration.default("200ms"),
      // Long on purpose: kubectl logs -f, exec and watches are idle for long stretches.
      client: duration.default("1h"),
      server: duration.default("1h"),
      tunnel: duration.default("1h"),
    })
    .prefault({}),
  healthCheck: z
    .strictObject({
      interval: duration.default("500ms"),
      fastInterval: duration.default("200ms"),
      downInterval: duration.default("1s"),
      fall: z.number().int().min(1).max(10).default(2),
      rise: z.number().int().min(1).max(10).default(2),
    })
    .prefault({}),
});

export const LoadBalancerSchema = z.strictObject({
  mode: z
    .enum(["keepalived-haproxy", "static-pod", "kube-vip"], {
      error: "must be keepalived-haproxy, static-pod or kube-vip",
    })
    .default("keepalived-haproxy"),
  vrrp: VrrpSchema.prefault({}),
  haproxy: HaproxySchema.prefault({}),
  /** mode static-pod only: the images of the keepalived and haproxy static pods. */
  staticPod: z
    .strictObject({
      /** No default: there is no official keepalived image; it must hold keepalived >= 2.1, bash, curl and ip. */
      keepalivedImage: text((v) => imageReferenceProblem(v, "registry.example.com/keepalived:2.2.8")).optional(),
      /** Default: static-pods.ts DEFAULT_HAPROXY_IMAGE. */
      haproxyImage: text((v) => imageReferenceProblem(v, "docker.io/library/haproxy:2.8.14")).optional(),
    })
    .optional(),
  /** mode kube-vip only. */
  kubeVip: z
    .strictObject({
      /** Default: kube-vip.ts DEFAULT_KUBE_VIP_IMAGE. */
      image: text((v) => imageReferenceProblem(v, "ghcr.io/kube-vip/kube-vip:v0.8.9")).optional(),
      /** kube-vip's IPVS load balancing of the API over every control plane (lb_enable); off: the leader's apiserver serves the VIP alone. */
      loadBalancing: z.boolean().default(false),
    })
    .optional(),
});

export const NetworkingSchema = z.strictObject({
  podSubnet: cidr4.default("10.244.0.0/16"),
  serviceSubnet: cidr4.default("10.96.0.0/12"),
  dnsDomain: text((v) => dnsNameProblem(v, "cluster.local")).default("cluster.local"),
  cni: z
    .strictObject({
      name: z
        .enum(["calico", "flannel", "cilium", "none"], { error: "must be calico, flannel, cilium or none" })
        .default("calico"),
      /** A manifest URL (or a path on the first control plane) applied with kubectl; overrides the built-in default for the name. */
      manifest: z.string().optional(),
      /** sha256 of the manifest: required with a URL (it is applied as cluster-admin); checked for a path too when given. */
      sha256: text((v) =>
        /^[0-9a-f]{64}$/.test(v) ? undefined : "is not a sha256; write its 64 lowercase hex digits",
      ).optional(),
    })
    .prefault({}),
});

export const KubernetesSchema = z.strictObject({
  version: z.string(),
  packages: z
    .strictObject({
      /** apt: install pinned kubeadm/kubelet/kubectl and hold them; preinstalled: check they are there at the right version. */
      source: z.enum(["apt", "preinstalled"], { error: "must be apt or preinstalled" }).default("apt"),
      /** The Kubernetes community apt repository (or a mirror). {minor} is replaced by e.g. v1.31. */
      aptRepository: z.string().optional(),
      /** The repository's signing key URL; {minor} as above. */
      aptKeyUrl: z.string().optional(),
      /** The signing key's fingerprint (40 hex digits, spaces allowed): the downloaded key must have it. */
      aptKeyFingerprint: text((v) =>
        /^[0-9A-Fa-f]{40}$/.test(v.replace(/ /g, ""))
          ? undefined
          : "is not an OpenPGP fingerprint; write its 40 hex digits, e.g. DE15B14486CD377B9E876E1A234654DA9A296436",
      ).optional(),
    })
    .prefault({}),
  /** Where kubeadm pulls control-plane images (and containerd the pause image) from: a mirror for air-gapped sites. */
  imageRepository: text((v) => imageRepositoryProblem(v, "registry.example.com:5000/k8s")).optional(),
  /**
   * Kubernetes 1.35's kubelet refuses cgroup v1 by default and prepare stops there; true keeps it
   * running on cgroup v1 (kubelet failCgroupV1: false, kubeadm's SystemVerification skipped).
   */
  allowCgroupV1: z.boolean().default(false),
});

export const ContainerRuntimeSchema = z.strictObject({
  name: z
    .literal("containerd", { error: "must be containerd (Docker as a runtime is gone since Kubernetes 1.24)" })
    .default("containerd"),
  cgroupDriver: z.literal("systemd", { error: "must be systemd (kubeadm's default since 1.22)" }).default("systemd"),
  /** The pause image containerd's CRI uses; default: kubeadm's for kubernetes.version, from kubernetes.imageRepository. */
  sandboxImage: text((v) => imageReferenceProblem(v, "registry.k8s.io/pause:3.10")).optional(),
});

export const EtcdSchema = z.strictObject({
  /** etcd's data directory on every control plane (kubeadm's etcd.local.dataDir). */
  dataDir: text((v) => absolutePathProblem(v, "/var/lib/etcd")).default("/var/lib/etcd"),
  backup: z
    .strictObject({
      /** Local directory (on the machine running the tool) where snapshots are downloaded. */
      directory: text((v) => localPathProblem(v, "backups")).default("backups"),
      /** Snapshots kept locally and by the scheduled timer on each control plane. */
      retention: z.number().int().min(1).max(1000).default(7),
      /** systemd OnCalendar expression for scheduled snapshots on the control planes; empty = no timer. */
      schedule: text((v) => (v === "" ? undefined : onCalendarProblem(v))).default(""),
    })
    .prefault({}),
});

export const TerraformSchema = z.strictObject({
  /** hashicorp: null_resource + local_file (needs the null/local providers); builtin: terraform_data, no provider (air-gapped). */
  resources: z.enum(["hashicorp", "builtin"], { error: "must be hashicorp or builtin" }).default("hashicorp"),
  /** Terraform Cloud / Enterprise; local state when absent. */
  cloud: z
    .strictObject({
      organization: z
        .string()
        .min(1)
        .pipe(text((v) => terraformNameProblem(v, "my-org"))),
      workspace: z
        .string()
        .min(1)
        .pipe(text((v) => terraformNameProblem(v, "my-cluster"))),
      hostname: text((v) => (isHostName(v) ? undefined : "is not a host name; write e.g. tfe.example.com")).optional(),
    })
    .optional(),
  /**
   * Run `preflight` before any step touches a host and fetch the admin kubeconfig after init,
   * on the machine that runs Terraform (needs this project and Bun there). Turn off for remote
   * runners such as Terraform Cloud agents, and run `bun run preflight` / `bun run kubeconfig` yourself.
   */
  localCommands: z.boolean().default(true),
  /** Run kubeadm reset on the hosts on destroy. Off by default: destroying the stack leaves hosts untouched. */
  resetOnDestroy: z.boolean().default(false),
});

export const ClusterSpecSchema = z.strictObject({
  name: dnsLabel,
  kubernetes: KubernetesSchema,
  /** Permit a single control plane (no HA). */
  allowNonHA: z.boolean().default(false),
  ssh: SshSchema.prefault({}),
  nodes: z.array(NodeSchema).min(1, { error: "must list at least one node" }),
  controlPlaneEndpoint: ControlPlaneEndpointSchema,
  loadBalancer: LoadBalancerSchema.prefault({}),
  networking: NetworkingSchema.prefault({}),
  containerRuntime: ContainerRuntimeSchema.prefault({}),
  etcd: EtcdSchema.prefault({}),
  terraform: TerraformSchema.prefault({}),
  hosts: z
    .strictObject({
      /**
       * true only for test hosts that are containers (kubeadm-ha's own lab): kernel modules and
       * sysctls that belong to the machine become warnings in prepare instead of errors.
       */
      containers: z.boolean().default(false),
    })
    .prefault({}),
});

export type ClusterSpec = z.output<typeof ClusterSpecSchema>;
export type NodeSpec = z.output<typeof NodeSchema>;
export type SshSpec = z.output<typeof SshSchema>;
