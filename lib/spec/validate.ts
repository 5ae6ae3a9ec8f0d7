// Cross-field rules the schema cannot express: control-plane count, address plans, ports,
// versions, VRRP timing. One small function per rule; each returns the problems it finds
// as a path (into the spec) and a message that names the bad value and the fix.
import { isIPv4 } from "node:net";
import { isDeepStrictEqual } from "node:util";
import { DEFAULT_HAPROXY_IMAGE, DEFAULT_KUBE_VIP_IMAGE, isSupportedMinor, minorOf } from "../versions.ts";
import { chosenCniManifest, FLANNEL_DEFAULT_POD_SUBNET } from "./cni.ts";
import { absolutePathProblem, httpsUrlProblem, isHostName } from "./formats.ts";
import { type ClusterSpec, HaproxySchema, type NodeSpec, VrrpSchema } from "./schema.ts";
import {
  basePriority,
  basePriorityRange,
  controlPlanes,
  DEFAULT_BASE_PRIORITY,
  PRIORITY_STEP,
  vrrpWeightsFor,
} from "./topology.ts";

/** Kubernetes minors this version of kubeadm-ha is built and tested for (1.MIN .. 1.MAX, inclusive). */
export const KUBERNETES_MINOR_MIN = 30;
export const KUBERNETES_MINOR_MAX = 35;
export const SUPPORTED_KUBERNETES_MINORS: readonly string[] = Array.from(
  { length: KUBERNETES_MINOR_MAX - KUBERNETES_MINOR_MIN + 1 },
  (_, i) => `1.${KUBERNETES_MINOR_MIN + i}`,
);

/** Ports a stacked control plane binds on its own addresses; the load balancer must not take them. */
const APISERVER_BIND_PORT = 6443;
export const CONTROL_PLANE_PORTS: Readonly<Record<number, string>> = {
  6443: "the kube-apiserver",
  2379: "etcd (client port)",
  2380: "etcd (peer port)",
  10250: "the kubelet",
  10257: "kube-controller-manager",
  10259: "kube-scheduler",
};

/** Control-plane counts accepted without allowNonHA: odd (etcd quorum), and small enough that etcd writes stay fast. */
export const HA_CONTROL_PLANE_COUNTS: readonly number[] = [3, 5, 7];

export type SpecPath = (string | number)[];
export interface Finding {
  path: SpecPath;
  /** What follows "<path>: " — the bad value, why it is wrong and the fix. */
  message: string;
}

type Section = keyof ClusterSpec;
interface Rule {
  /** Top-level sections the rule reads; it is skipped while any of them has schema errors. */
  needs: Section[];
  check: (spec: ClusterSpec) => Finding[];
}

// ---- IPv4 arithmetic --------------------------------------------------------------------

const ipToInt = (ip: string): number => ip.split(".").reduce((n, octet) => n * 256 + Number(octet), 0);
const intToIp = (n: number): string => [24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join(".");

interface Net {
  network: number;
  size: number;
  prefix: number;
}
function net(address: string, prefix: number): Net {
  const size = 2 ** (32 - prefix);
  return { network: Math.floor(ipToInt(address) / size) * size, size, prefix };
}
const parseCidr = (cidr: string): Net & { address: number } => {
  const [ip = "", prefix = ""] = cidr.split("/");
  return { ...net(ip, Number(prefix)), address: ipToInt(ip) };
};
const netText = (n: Net): string => `${intToIp(n.network)}/${n.prefix}`;
const contains = (n: Net, ip: string): boolean => {
  const a = ipToInt(ip);
  return a >= n.network && a < n.network + n.size;
};
const overlaps = (a: Net, b: Net): boolean => a.network < b.network + b.size && b.network < a.network + a.size;

const nodeRef = (spec: ClusterSpec, node: NodeSpec): string => `${node.name} (nodes[${spec.nodes.indexOf(node)}])`;
const ordinal = (n: number): string => {
  const names = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth"];
  return names[n - 1] ?? `${n}th`;
};

// ---- nodes ---------------------------------------------------------------------------------

function controlPlaneCount(spec: ClusterSpec): Finding[] {
  const cps = controlPlanes(spec);
  const n = cps.length;
  const names = cps.map((c) => c.name).join(", ");
  const path = ["nodes"];
  if (n === 0)
    return [
      {
        path,
        message:
          "no node has role: control-plane. A cluster needs 3, 5 or 7 control planes (or 1 with allowNonHA: true); " +
          "set role: control-plane on the nodes that should run the API server and etcd.",
      },
    ];
  if (n === 1 && spec.allowNonHA) return [];
  if (n === 1)
    return [
      {
        path,
        message:
          `only 1 control plane (${names}), so losing that host stops the cluster. Add 2 more control planes ` +
          "(3 in all), or set allowNonHA: true at the top level to accept a single control plane without high availability.",
      },
    ];
  if (n % 2 === 0)
    return [
      {
        path,
        message:
          `${n} control planes (${names}): etcd needs a majority of members, so ${n} survive no more failures than ${n - 1}. ` +
          `Use ${n - 1} or ${n + 1}: change one node's role to worker, or add one control plane.`,
      },
    ];
  if (!HA_CONTROL_PLANE_COUNTS.includes(n))
    return [
      {
        path,
        message:
          `${n} control planes: every etcd write waits for a majority, so more than 7 members only slow the cluster down. ` +
          "Use 3, 5 or 7 control planes and make the other nodes workers.",
      },
    ];
  return [];
}

function duplicateOf<K>(spec: ClusterSpec, key: (n: NodeSpec) => K, field: "name" | "address", why: string): Finding[] {
  const seen = new Map<K, number>();
  const findings: Finding[] = [];
  spec.nodes.forEach((node, i) => {
    const first = seen.get(key(node));
    if (first === undefined) {
      seen.set(key(node), i);
      return;
    }
    findings.push({
      path: ["nodes", i, field],
      message: `"${key(node)}" is also the ${field} of nodes[${first}] (${spec.nodes[first]?.name}); ${why}`,
    });
  });
  return findings;
}

const duplicateNodeNames = (spec: ClusterSpec): Finding[] =>
  duplicateOf(
    spec,
    (n) => n.name,
    "name",
    "node names become Kubernetes node names and must be unique. Rename one of them.",
  );

const duplicateNodeAddresses = (spec: ClusterSpec): Finding[] =>
  duplicateOf(
    spec,
    (n) => n.address,
    "address",
    "every node needs its own address. Correct the address of one of them (or remove the duplicate entry).",
  );

function nodeSshHosts(spec: ClusterSpec): Finding[] {
  return spec.nodes.flatMap((node, i) => {
    const host = node.ssh?.host;
    const problem = host === undefined ? undefined : hostProblem(host, `nodes[${i}].ssh`);
    return problem ? [{ path: ["nodes", i, "ssh", "host"], message: `${problem}.` }] : [];
  });
}

// ---- control-plane endpoint (VIP) ----------------------------------------------------------

function vipIsNotANodeAddress(spec: ClusterSpec): Finding[] {
  const vip = spec.controlPlaneEndpoint.vip;
  const owner = spec.nodes.find((n) => n.address === vip);
  if (!owner) return [];
  return [
    {
      path: ["controlPlaneEndpoint", "vip"],
      message:
        `"${vip}" is also the address of node ${nodeRef(spec, owner)}. The VIP must be a free address that keepalived ` +
        "moves between the control planes; pick an unused address in the control planes' subnet.",
    },
  ];
}

function vipInControlPlaneSubnet(spec: ClusterSpec): Finding[] {
  const { vip, prefix } = spec.controlPlaneEndpoint;
  if (prefix === undefined) return [];
  const findings: Finding[] = [];
  const reported = new Set<string>();
  for (const cp of controlPlanes(spec)) {
    const subnet = net(cp.address, prefix);
    const text = netText(subnet);
    if (reported.has(text)) continue;
    reported.add(text);
    const path = ["controlPlaneEndpoint", "vip"];
    if (!contains(subnet, vip)) {
      findings.push({
        path,
        message:
          `"${vip}" is outside ${text}, the subnet of control plane ${cp.name} (its address ${cp.address} with ` +
          `controlPlaneEndpoint.prefix ${prefix}); keepalived can only raise the VIP on an interface in that subnet. ` +
          `Pick an unused address in ${text}, or correct prefix.`,
      });
    } else if (prefix <= 30 && (ipToInt(vip) === subnet.network || ipToInt(vip) === subnet.network + subnet.size - 1)) {
      const which = ipToInt(vip) === subnet.network ? "network" : "broadcast";
      findings.push({
        path,
        message: `"${vip}" is the ${which} address of ${text}, which no host can use. Pick an unused host address inside ${text}.`,
      });
    }
  }
  return findings;
}

function endpointPort(spec: ClusterSpec): Finding[] {
  const port = spec.controlPlaneEndpoint.port;
  const path = ["controlPlaneEndpoint", "port"];
  if (spec.loadBalancer.mode === "kube-vip")
    // The VIP lands on the leader's interface and its apiserver answers on the VIP directly.
    return port === APISERVER_BIND_PORT
      ? []
      : [
          {
            path,
            message: `${port}, but in mode kube-vip clients reach the apiservers on the VIP at their own port: set port: ${APISERVER_BIND_PORT}.`,
          },
        ];
  const owner = CONTROL_PLANE_PORTS[port];
  if (owner)
    return [
      {
        path,
        message:
          `${port} is taken by ${owner} on every control plane, the hosts where haproxy listens. Pick a free port, ` +
          "e.g. 8443 (the default).",
      },
    ];
  const stats = spec.loadBalancer.haproxy.stats;
  if (stats.enabled && stats.port === port)
    return [
      {
        path,
        message:
          `${port} is also loadBalancer.haproxy.stats.port; the API frontend and the stats page need different ports. ` +
          `Change one of them, e.g. port: ${port === 8443 ? 9443 : 8443}.`,
      },
    ];
  return [];
}

function statsPort(spec: ClusterSpec): Finding[] {
  const stats = spec.loadBalancer.haproxy.stats;
  const owner = CONTROL_PLANE_PORTS[stats.port];
  if (!stats.enabled || !owner) return [];
  return [
    {
      path: ["loadBalancer", "haproxy", "stats", "port"],
      message: `${stats.port} is taken by ${owner} on every control plane, where haproxy runs. Pick a free port, e.g. 8404 (the default).`,
    },
  ];
}

// ---- networking ----------------------------------------------------------------------------

function cidrHostBits(spec: ClusterSpec): Finding[] {
  return (["podSubnet", "serviceSubnet"] as const).flatMap((field) => {
    const cidr = spec.networking[field];
    const parsed = parseCidr(cidr);
    if (parsed.address === parsed.network) return [];
    return [
      {
        path: ["networking", field],
        message:
          `"${cidr}" has host bits set: a /${parsed.prefix} network starts at ${intToIp(parsed.network)}. ` +
          `Write ${netText(parsed)} (or a longer prefix if you meant a smaller range).`,
      },
    ];
  });
}

const POD_SUBNET_CHOICES = ["10.244.0.0/16", "172.16.0.0/16", "192.168.0.0/16", "10.200.0.0/16"];
const SERVICE_SUBNET_CHOICES = ["10.96.0.0/12", "172.20.0.0/16", "192.168.128.0/20", "10.112.0.0/16"];

/** A range from `choices` that holds no node address, not the VIP and does not overlap `other`. */
function freeRange(spec: ClusterSpec, choices: string[], other: string): string | undefined {
  const addresses = [...spec.nodes.map((n) => n.address), spec.controlPlaneEndpoint.vip];
  return choices.find((c) => {
    const n = parseCidr(c);
    return !addresses.some((a) => contains(n, a)) && !overlaps(n, parseCidr(other));
  });
}

function podServiceOverlap(spec: ClusterSpec): Finding[] {
  const { podSubnet, serviceSubnet } = spec.networking;
  if (!overlaps(parseCidr(podSubnet), parseCidr(serviceSubnet))) return [];
  const free = freeRange(spec, SERVICE_SUBNET_CHOICES, podSubnet);
  return [
    {
      path: ["networking", "serviceSubnet"],
      message:
        `"${serviceSubnet}" overlaps networking.podSubnet ${podSubnet}, so pod and service addresses would collide. ` +
        `Use ranges that do not overlap${free ? `, e.g. serviceSubnet: ${free}` : ""}.`,
    },
  ];
}

function subnetsAvoidHosts(spec: ClusterSpec): Finding[] {
  const pairs = [
    ["podSubnet", POD_SUBNET_CHOICES, spec.networking.serviceSubnet],
    ["serviceSubnet", SERVICE_SUBNET_CHOICES, spec.networking.podSubnet],
  ] as const;
  return pairs.flatMap(([field, choices, other]) => {
    const cidr = spec.networking[field];
    const range = parseCidr(cidr);
    const inside = [
      ...spec.nodes.filter((n) => contains(range, n.address)).map((n) => `node ${n.name}'s address ${n.address}`),
      ...(contains(range, spec.controlPlaneEndpoint.vip) ? [`the VIP ${spec.controlPlaneEndpoint.vip}`] : []),
    ];
    if (inside.length === 0) return [];
    const more = inside.length > 1 ? ` (and ${inside.length - 1} more)` : "";
    const free = freeRange(spec, [...choices], other);
    return [
      {
        path: ["networking", field],
        message:
          `"${cidr}" contains ${inside[0]}${more}; traffic to those hosts would be routed into the cluster network. ` +
          `Pick a range that holds no node address and not the VIP${free ? `, e.g. ${field}: ${free}` : ""}.`,
      },
    ];
  });
}

const show = (value: string): string => JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value);

function cniManifest(spec: ClusterSpec): Finding[] {
  const manifest = spec.networking.cni.manifest;
  if (manifest === undefined) return [];
  const problem = manifest.startsWith("/")
    ? absolutePathProblem(manifest, "/root/calico.yaml")
    : httpsUrlProblem(manifest, "https://example.com/calico.yaml");
  if (!problem && !manifest.startsWith("/") && spec.networking.cni.sha256 === undefined)
    return [
      {
        path: ["networking", "cni", "manifest"],
        message:
          `${show(manifest)} is downloaded and applied as cluster-admin, so its content must be pinned: ` +
          "set networking.cni.sha256 to the file's sha256 (sha256sum of the manifest you reviewed), or put the file on the first control plane and give its path.",
      },
    ];
  if (!problem) return [];
  return [
    {
      path: ["networking", "cni", "manifest"],
      message:
        `${show(manifest)} ${problem}. A manifest is an https URL or an absolute path on the first control plane, ` +
        "e.g. https://example.com/calico.yaml or /root/calico.yaml.",
    },
  ];
}

/** The CNI step needs a manifest: cilium has no built-in one, flannel's hard-codes its pod network. */
function cniChoice(spec: ClusterSpec): Finding[] {
  const { cni, podSubnet } = spec.networking;
  if (cni.manifest !== undefined) return [];
  // The default depends on the Kubernetes minor; an unsupported version is kubernetesVersion's to report.
  if (!isSupportedMinor(minorOf(spec.kubernetes.version) ?? "")) return [];
  if (chosenCniManifest(spec) === undefined)
    return [
      {
        path: ["networking", "cni", "name"],
        message:
          `"${cni.name}" has no built-in manifest in kubeadm-ha (cilium is installed with its own CLI or Helm chart). ` +
          "Render one (for example `helm template cilium cilium/cilium`) and put its https URL or a path on the first " +
          "control plane in networking.cni.manifest, or choose calico or flannel.",
      },
    ];
  if (cni.name === "flannel" && podSubnet !== FLANNEL_DEFAULT_POD_SUBNET)
    return [
      {
        path: ["networking", "podSubnet"],
        message:
          `"${podSubnet}" is not ${FLANNEL_DEFAULT_POD_SUBNET}, the pod network flannel's stock manifest (networking.cni.name flannel) ` +
          `hard-codes, so pods would get addresses outside the cluster's pod network. Set podSubnet: ${FLANNEL_DEFAULT_POD_SUBNET}, ` +
          "or give networking.cni.manifest a flannel manifest edited for your subnet.",
      },
    ];
  return [];
}

// ---- kubernetes ----------------------------------------------------------------------------

function kubernetesVersion(spec: ClusterSpec): Finding[] {
  const version = spec.kubernetes.version;
  const path = ["kubernetes", "version"];
  const example = `"1.${KUBERNETES_MINOR_MAX - 4}.4"`;
  const withV = /^v(\d+\.\d+\.\d+)$/.exec(version);
  if (withV)
    return [
      {
        path,
        message: `"${version}" starts with "v"; write ${withV[1]} (the tool adds the "v" where kubeadm and the package repository want it).`,
      },
    ];
  const parts = /^(\d+)\.(\d+)\.(\d+)$/.exec(version);
  if (!parts) {
    const minorOnly = /^v?(\d+\.\d+)$/.exec(version);
    const fix = minorOnly ? `add the patch release, e.g. "${minorOnly[1]}.0"` : `e.g. version: ${example}`;
    return [{ path, message: `"${version}" must be MAJOR.MINOR.PATCH such as ${example}; ${fix}.` }];
  }
  const major = Number(parts[1]);
  const minor = Number(parts[2]);
  const supported = `Kubernetes 1.${KUBERNETES_MINOR_MIN} to 1.${KUBERNETES_MINOR_MAX}`;
  if (major === 1 && minor >= KUBERNETES_MINOR_MIN && minor <= KUBERNETES_MINOR_MAX) return [];
  const nearest = major > 1 || minor > KUBERNETES_MINOR_MAX ? KUBERNETES_MINOR_MAX : KUBERNETES_MINOR_MIN;
  return [
    {
      path,
      message: `"${version}" is not supported: this version of kubeadm-ha supports ${supported}. Pick a release in that range, e.g. "1.${nearest}.0".`,
    },
  ];
}

/** The apt source: an https URL, optionally followed by a suite and components (a flat repository without). */
function aptRepositoryProblem(value: string, example: string): string | undefined {
  const [uri = "", ...rest] = value.split(" ");
  if (uri === "deb")
    return `starts with "deb"; write only the URL (and an optional suite and components), e.g. ${example}`;
  const problem = httpsUrlProblem(uri, example, true);
  if (problem) return problem;
  const bad = rest.find((word) => !/^[A-Za-z0-9_./-]+$/.test(word));
  if (bad !== undefined)
    return `has the suite or component ${JSON.stringify(bad)}; after the URL come single-space separated words of letters, digits and . _ - /`;
  return undefined;
}

function aptRepository(spec: ClusterSpec): Finding[] {
  const packages = spec.kubernetes.packages;
  const examples = {
    aptRepository: "https://k8s-mirror.example.internal/kubernetes/{minor}/deb/",
    aptKeyUrl: "https://k8s-mirror.example.internal/kubernetes/{minor}/deb/Release.key",
  } as const;
  return (["aptRepository", "aptKeyUrl"] as const)
    .flatMap((field): Finding[] => {
      const path = ["kubernetes", "packages", field];
      const value = packages[field];
      if (value === undefined) {
        if (packages.source !== "apt") return [];
        return [
          {
            path,
            message:
              `missing: with kubernetes.packages.source apt (the default when unset) the tool needs ${field}, e.g. ${field}: "${examples[field]}" ` +
              "({minor} becomes v1.31), or set source: preinstalled if kubeadm, kubelet and kubectl are already on the hosts.",
          },
        ];
      }
      const problem =
        field === "aptRepository"
          ? aptRepositoryProblem(value, examples[field])
          : httpsUrlProblem(value, examples[field], true);
      return problem ? [{ path, message: `${show(value)} ${problem}.` }] : [];
    })
    .concat(
      packages.source === "apt" && packages.aptKeyFingerprint === undefined
        ? [
            {
              path: ["kubernetes", "packages", "aptKeyFingerprint"],
              message:
                "missing: the signing key is downloaded and then trusted for packages installed as root, so its fingerprint must be pinned. " +
                "Check the key once (gpg --show-keys Release.key) against the repository's published fingerprint and write its 40 hex digits here.",
            },
          ]
        : [],
    );
}

// ---- load balancer ---------------------------------------------------------------------------

const MODE_SECTIONS = { staticPod: "static-pod", kubeVip: "kube-vip" } as const;
const DEFAULT_VRRP = VrrpSchema.parse({});
const DEFAULT_HAPROXY = HaproxySchema.parse({});

/** What each loadBalancer.mode needs, and the settings it does not read (refused rather than silently ignored). */
function loadBalancerMode(spec: ClusterSpec): Finding[] {
  const lb = spec.loadBalancer;
  const mode = lb.mode;
  const findings: Finding[] = [];
  for (const [section, owner] of Object.entries(MODE_SECTIONS) as [keyof typeof MODE_SECTIONS, string][]) {
    if (lb[section] !== undefined && mode !== owner)
      findings.push({
        path: ["loadBalancer", section],
        message: `is set, but it applies only to mode: ${owner} and mode is ${mode}. Remove loadBalancer.${section}, or set mode: ${owner}.`,
      });
  }
  const mirror = spec.kubernetes?.imageRepository;
  if (mode === "static-pod") {
    if (!lb.staticPod?.keepalivedImage)
      findings.push({
        path: ["loadBalancer", "staticPod", "keepalivedImage"],
        message:
          "missing: mode static-pod runs keepalived from an image, and there is no official one to default to. Name an image that holds " +
          "keepalived 2.1 or later (track_file), bash, curl and ip (the check scripts run inside it), e.g. keepalivedImage: registry.example.com/keepalived:2.2.8.",
      });
    if (mirror && !lb.staticPod?.haproxyImage)
      findings.push({
        path: ["loadBalancer", "staticPod", "haproxyImage"],
        message: `missing: kubernetes.imageRepository is ${mirror} (a mirror), but the default haproxy image is ${DEFAULT_HAPROXY_IMAGE} from a public registry. Name its copy in your mirror, e.g. haproxyImage: ${mirror}/haproxy:2.8.14.`,
      });
  }
  if (mode === "kube-vip") {
    if (mirror && !lb.kubeVip?.image)
      findings.push({
        path: ["loadBalancer", "kubeVip", "image"],
        message: `missing: kubernetes.imageRepository is ${mirror} (a mirror), but the default kube-vip image is ${DEFAULT_KUBE_VIP_IMAGE} from a public registry. Name its copy in your mirror, e.g. image: ${mirror}/kube-vip:v1.2.3.`,
      });
    const unused: [string, unknown, unknown, string][] = [
      ["vrrp", lb.vrrp, DEFAULT_VRRP, "kube-vip elects its leader through a Kubernetes lease, not VRRP"],
      [
        "haproxy",
        lb.haproxy,
        DEFAULT_HAPROXY,
        "kube-vip serves the VIP itself (loadBalancer.kubeVip.loadBalancing for IPVS over every apiserver)",
      ],
    ];
    for (const [key, value, defaults, why] of unused)
      if (!isDeepStrictEqual(value, defaults))
        findings.push({
          path: ["loadBalancer", key],
          message: `is set, but mode kube-vip does not read it: ${why}. Remove loadBalancer.${key}, or choose mode keepalived-haproxy or static-pod.`,
        });
  }
  return findings;
}

function vrrpAdvertInterval(spec: ClusterSpec): Finding[] {
  const { version, advertIntervalSeconds: interval } = spec.loadBalancer.vrrp;
  const path = ["loadBalancer", "vrrp", "advertIntervalSeconds"];
  if (version === 2 && !Number.isInteger(interval))
    return [
      {
        path,
        message:
          `${interval} is not a whole number of seconds, and VRRP version 2 has no sub-second adverts. Write ` +
          `${Math.max(1, Math.round(interval))}, or set loadBalancer.vrrp.version: 3 for sub-second failover ` +
          "(VRRPv3 has no authentication, so the VRRP password is not used).",
      },
    ];
  const centis = interval * 100;
  if (version === 3 && (interval < 0.01 || interval > 40.95 || Math.abs(centis - Math.round(centis)) > 1e-6)) {
    const nearest = Math.min(40.95, Math.max(0.01, Math.round(centis) / 100));
    return [
      {
        path,
        message: `${interval} is not allowed: VRRP version 3 takes 0.01 to 40.95 seconds in steps of 0.01. Write e.g. ${nearest}.`,
      },
    ];
  }
  return [];
}

function vrrpPriorityRoom(spec: ClusterSpec): Finding[] {
  const cps = controlPlanes(spec);
  const n = cps.length;
  // A count the count rule refuses gets that advice, not advice for priorities it will never use.
  if (controlPlaneCount(spec).length > 0) return [];
  const sticky = spec.loadBalancer.vrrp.stickyVip;
  const { min, max } = basePriorityRange(n, sticky);
  const base = basePriority(spec);
  if (base >= min && base <= max) return [];
  const { checkWeight, holderBonus } = vrrpWeightsFor(n, sticky);
  const lowest = base - PRIORITY_STEP * (n - 1);
  const why =
    `each control plane gets ${PRIORITY_STEP} less than the one before (${base} down to ${lowest} for the ${ordinal(n)}, ` +
    `${cps[n - 1]?.name}), a failing node loses ${-checkWeight}${sticky ? ` and the VIP holder gains ${holderBonus}` : ""}, ` +
    "and every effective priority must stay within VRRP's 1-254 or keepalived clamps it and nodes tie";
  const fix =
    min <= max
      ? `Set basePriority between ${min} and ${max}, or remove it to get ${DEFAULT_BASE_PRIORITY} or the nearest value that fits`
      : "Set stickyVip: false or use fewer control planes";
  const too = base < min ? "too low" : "too high";
  return [
    {
      path: ["loadBalancer", "vrrp", "basePriority"],
      message: `${base} is ${too} for ${n} control plane${n === 1 ? "" : "s"}: ${why}. ${fix}.`,
    },
  ];
}

// ---- ssh --------------------------------------------------------------------------------------

/** undefined when `host` is an IP address or a host name; otherwise the problem and its fix. */
function hostProblem(host: string, block: string): string | undefined {
  if (/^[\d.]+$/.test(host) && !isIPv4(host))
    return `${JSON.stringify(host)} is not a valid IPv4 address (four numbers 0-255, e.g. 10.0.0.5)`;
  if (isHostName(host)) return undefined;
  const at = /^([^@]+)@(.+)$/.exec(host);
  if (at)
    return `${JSON.stringify(host)} must be an address or host name only; write host: ${at[2]} and put the user in ${block}.user: ${at[1]}`;
  const colon = /^([^:]+):(\d+)$/.exec(host);
  if (colon)
    return `${JSON.stringify(host)} must be an address or host name only; write host: ${colon[1]} and ${block}.port: ${colon[2]}`;
  return `${JSON.stringify(host)} is not an address or host name; write e.g. 10.0.0.5 or bastion.example.com`;
}

function sshAuthentication(spec: ClusterSpec): Finding[] {
  const { privateKeyPath, agent } = spec.ssh;
  if (!agent || privateKeyPath === undefined) return [];
  return [
    {
      path: ["ssh", "agent"],
      message:
        `true together with ssh.privateKeyPath "${privateKeyPath}": choose one way to authenticate. ` +
        "Remove privateKeyPath to use the agent ($SSH_AUTH_SOCK), or remove agent: true to use the key file.",
    },
  ];
}

function bastionHost(spec: ClusterSpec): Finding[] {
  const host = spec.ssh.bastion?.host;
  const problem = host === undefined ? undefined : hostProblem(host, "ssh.bastion");
  return problem ? [{ path: ["ssh", "bastion", "host"], message: `${problem}.` }] : [];
}

// ---- terraform --------------------------------------------------------------------------------

/** Destroy-time steps cannot read Terraform variables, so a reset on destroy needs a key file or the agent. */
function resetOnDestroyKeys(spec: ClusterSpec): Finding[] {
  if (!spec.terraform.resetOnDestroy || spec.ssh.agent || spec.ssh.privateKeyPath !== undefined) return [];
  const keyless = spec.nodes.filter((n) => n.ssh?.privateKeyPath === undefined).map((n) => n.name);
  if (keyless.length === 0) return [];
  return [
    {
      path: ["terraform", "resetOnDestroy"],
      message:
        `true, but destroy-time steps cannot read Terraform variables, and ${keyless.join(", ")} would use the ` +
        "ssh_private_key variable (no key file, no agent). Set ssh.privateKeyPath (or ssh.agent: true), or turn resetOnDestroy off.",
    },
  ];
}

// ---- the rule table ---------------------------------------------------------------------------

export const RULES: Readonly<Record<string, Rule>> = {
  controlPlaneCount: { needs: ["nodes", "allowNonHA"], check: controlPlaneCount },
  duplicateNodeNames: { needs: ["nodes"], check: duplicateNodeNames },
  duplicateNodeAddresses: { needs: ["nodes"], check: duplicateNodeAddresses },
  nodeSshHosts: { needs: ["nodes"], check: nodeSshHosts },
  vipIsNotANodeAddress: { needs: ["nodes", "controlPlaneEndpoint"], check: vipIsNotANodeAddress },
  vipInControlPlaneSubnet: { needs: ["nodes", "controlPlaneEndpoint"], check: vipInControlPlaneSubnet },
  endpointPort: { needs: ["controlPlaneEndpoint", "loadBalancer"], check: endpointPort },
  statsPort: { needs: ["loadBalancer"], check: statsPort },
  cidrHostBits: { needs: ["networking"], check: cidrHostBits },
  podServiceOverlap: { needs: ["networking", "nodes", "controlPlaneEndpoint"], check: podServiceOverlap },
  subnetsAvoidHosts: { needs: ["networking", "nodes", "controlPlaneEndpoint"], check: subnetsAvoidHosts },
  cniManifest: { needs: ["networking"], check: cniManifest },
  cniChoice: { needs: ["networking", "kubernetes"], check: cniChoice },
  kubernetesVersion: { needs: ["kubernetes"], check: kubernetesVersion },
  aptRepository: { needs: ["kubernetes"], check: aptRepository },
  loadBalancerMode: { needs: ["loadBalancer"], check: loadBalancerMode },
  vrrpAdvertInterval: { needs: ["loadBalancer"], check: vrrpAdvertInterval },
  vrrpPriorityRoom: { needs: ["loadBalancer", "nodes"], check: vrrpPriorityRoom },
  sshAuthentication: { needs: ["ssh"], check: sshAuthentication },
  bastionHost: { needs: ["ssh"], check: bastionHost },
  resetOnDestroyKeys: { needs: ["terraform", "ssh", "nodes"], check: resetOnDestroyKeys },
};

/**
 * Every cross-field problem in `spec`. `usable` says which top-level sections passed the
 * schema; rules that read a broken section are skipped (its schema errors are reported
 * instead), so one typo does not hide the problems elsewhere in the file.
 */
export function validateSpec(spec: ClusterSpec, usable: (section: Section) => boolean = () => true): Finding[] {
  return Object.values(RULES)
    .filter((rule) => rule.needs.every(usable))
    .flatMap((rule) => rule.check(spec));
}
