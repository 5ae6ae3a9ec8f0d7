// Facts that depend on the Kubernetes minor, in one table read by the renderers, spec
// validation and preflight alike (the way kubespray keeps its per-version defaults in one
// place), instead of `if minor >= N` scattered through the scripts.
//
// Pure data and small functions: no I/O, no imports from the remote or cdktf layers.
// Each fact names the upstream file or page it was read from. Changing a fact is a
// deliberate act: test/unit/versions.test.ts pins them.
import { UserError } from "./errors.ts";

/** The minors this version of kubeadm-ha supports, oldest first. */
export const SUPPORTED_MINORS = ["1.30", "1.31", "1.32", "1.33", "1.34", "1.35"] as const;
export type SupportedMinor = (typeof SUPPORTED_MINORS)[number];

/** kubeadm's default image repository (kubernetes cmd/kubeadm/app/constants: DefaultImageRepository). */
export const KUBEADM_IMAGE_REPOSITORY = "registry.k8s.io";

/** haproxy's official image for loadBalancer.mode static-pod (2.8: the LTS release in Debian 13's range), pinned. */
export const DEFAULT_HAPROXY_IMAGE = "docker.io/library/haproxy:2.8.14";
/** kube-vip for loadBalancer.mode kube-vip, pinned; the manifest follows this release's source (kube-vip.ts). */
export const DEFAULT_KUBE_VIP_IMAGE = "ghcr.io/kube-vip/kube-vip:v1.2.3";

export type KubeadmApiVersion = "kubeadm.k8s.io/v1beta3" | "kubeadm.k8s.io/v1beta4";

export interface EtcdFacts {
  /** The etcd image tag kubeadm deploys at MINOR.0 (its lowest for the minor: patch releases only move it forward within the series). */
  version: string;
  /** "3.5" or "3.6": what the tooling depends on; constant over the minor's patch releases. */
  series: string;
  /** etcdutl exists for this etcd release (3.5 and later). Whether kubeadm's image carries it is another matter: see EtcdFacts.restoreWith. */
  hasEtcdutl: boolean;
  /** `etcdctl snapshot restore|status` still exist (deprecated in 3.5, removed in 3.6). */
  etcdctlRestores: boolean;
  /** `snapshot restore --bump-revision --mark-compacted` exists (etcdutl and etcdctl from 3.5.10). */
  bumpRevision: boolean;
  /** Which tool can restore: etcdutl, or etcdctl where etcdutl is missing (3.5 only). */
  restoreWith: "etcdutl-or-etcdctl" | "etcdutl";
}

export interface CniManifest {
  /** The release tag the manifest comes from. */
  version: string;
  url: string;
  /** sha256 of the bytes the URL serves; undefined where no source establishes one. */
  sha256?: string;
  /** The git blob id of the file at the tag: `git rev-parse TAG:PATH` in the upstream repository reproduces it. */
  gitBlob?: string;
  /** Kubernetes minors the project says it tests this release against. */
  testedMinors: readonly string[];
}

export interface KubernetesFacts {
  minor: SupportedMinor;
  kubeadmApi: KubeadmApiVersion;
  /** The pause image tag kubeadm uses, and the image from kubeadm's default repository. */
  pauseVersion: string;
  pauseImage: string;
  etcd: EtcdFacts;
  /** Binaries kubeadm's preflight looks for in PATH: missing mandatory ones fail init/join, the others only warn. */
  preflight: { mandatory: readonly string[]; warnOnly: readonly string[] };
  /** The kubeadm package pulls in cri-tools (crictl); from 1.32 it does not. */
  kubeadmPackageRequiresCriTools: boolean;
  /** KubeletConfiguration has `failCgroupV1` (from 1.31). */
  kubeletHasFailCgroupV1: boolean;
  /** kubelet refuses to start on cgroup v1 unless `failCgroupV1: false` (and kubeadm's SystemVerification is skipped). */
  failsCgroupV1ByDefault: boolean;
  /** containerd releases recommended for the minor: the lowest patch of each listed release branch, newest first. */
  containerd: { recommended: readonly string[]; min: string };
  /** Default CNI manifests for the minor. */
  cni: { calico: CniManifest; flannel: CniManifest };
}

// ---- sources of the shared pieces ------------------------------------------------------------

// Preflight binaries: kubernetes cmd/kubeadm/app/preflight/checks_linux.go, addExecChecks (InPathCheck
// with mandatory true/false). conntrack is mandatory for Kubernetes < 1.32 only (kubernetes/kubernetes#126953;
// kube-proxy 1.32 uses netlink instead, #126847). crictl: mandatory through 1.30, a warning in 1.31
// (kubeadm uses the CRI client library, kubernetes/kubernetes#124685), not checked from 1.32
// (kubernetes/kubernetes#126596); tracking issue kubernetes/kubeadm#3064.
const ALWAYS_MANDATORY = ["ip", "iptables", "mount", "nsenter"] as const;
const ALWAYS_WARN_ONLY = ["ebtables", "ethtool", "socat", "tc", "touch"] as const;

/**
 * The Debian/Ubuntu package that provides each binary kubeadm's preflight looks for (checked with
 * `dpkg -S` on Debian 12). Do not count on the kubelet package to pull them in: kubelet 1.31.14
 * dropped its conntrack, iproute2 and ethtool dependencies (kubernetes/kubernetes#135306).
 */
export const DEBIAN_PACKAGE_OF_BINARY: Readonly<Record<string, string>> = {
  conntrack: "conntrack",
  crictl: "cri-tools",
  ebtables: "ebtables",
  ethtool: "ethtool",
  ip: "iproute2",
  iptables: "iptables",
  mount: "mount",
  nsenter: "util-linux",
  socat: "socat",
  tc: "iproute2",
  touch: "coreutils",
};

// Calico: manifests/calico.yaml at the release tag, the URL Calico's docs give for a manifest install
// (tigera/docs calico_versioned_docs/version-3.x/variables.js: manifestsUrl). Tested minors from the same
// docs, _includes/partials/_system-requirements.mdx "Supported versions". Calico publishes a SHA256SUMS
// only for its release assets (projectcalico/calico release/pkg/manager/calico/manager.go), and calico.yaml
// is not one of them; the sha256 below is of the file at the tag in projectcalico/calico, which is what the
// raw URL serves byte for byte (verify: `git rev-parse vX:manifests/calico.yaml` equals gitBlob).
const CALICO_3_29: CniManifest = {
  version: "v3.29.7",
  url: "https://raw.githubusercontent.com/projectcalico/calico/v3.29.7/manifests/calico.yaml",
  sha256: "b200cb3c2c7341717abe98e4acc80a13117bcd2c9c46ad46e8c209c5753f0b2f",
  gitBlob: "1f68caca6f3a106352d12afb79254f438a376cad",
  testedMinors: ["1.29", "1.30", "1.31", "1.32"],
};
const CALICO_3_30: CniManifest = {
  version: "v3.30.7",
  url: "https://raw.githubusercontent.com/projectcalico/calico/v3.30.7/manifests/calico.yaml",
  sha256: "ed105288f27c7ba4cae143bcaa3f6425f02d84fa94a4786cc8e3d371412c1a36",
  gitBlob: "02c6f4be7ea910e5fa10f9b675de4c19d4bdea1e",
  testedMinors: ["1.31", "1.32", "1.33", "1.34", "1.35"],
};
// 3.31 moved its images from docker.io to quay.io (see the manifest's image: lines).
const CALICO_3_31: CniManifest = {
  version: "v3.31.7",
  url: "https://raw.githubusercontent.com/projectcalico/calico/v3.31.7/manifests/calico.yaml",
  sha256: "d6d8a489a4ed8e5b8efd8b339047b496ca657b55ee2e3618e791507b0a853e8d",
  gitBlob: "0029a3563228c60f23c535f1bb2a5406d22bbdb6",
  testedMinors: ["1.32", "1.33", "1.34", "1.35"],
};

// Flannel publishes no per-minor matrix: its README says "For Kubernetes v1.17+", so one (the newest)
// release serves every minor. Its README installs the release asset kube-flannel.yml, which `make
// release-manifest` renders with kustomize at release time and for which no checksum is published; the
// raw file below is Documentation/kube-flannel.yml at the tag (updated by "Prepare for release v0.28.9"),
// the kustomize base of that asset, so its sha256 can be established from the repository.
const FLANNEL_0_28: CniManifest = {
  version: "v0.28.9",
  url: "https://raw.githubusercontent.com/flannel-io/flannel/v0.28.9/Documentation/kube-flannel.yml",
  sha256: "e875824be2f552b45711dbda91af81b17eb961d00025d914d9fef18fad8f09c0",
  gitBlob: "a28b4f4700327c8aeb03a7057228d19c88e65c8e",
  testedMinors: [],
};

// ---- the table ---------------------------------------------------------------------------------

interface Row {
  /** kubeadm config API: v1beta4 from 1.31, v1beta3 before (kubernetes.io kubeadm-config.v1beta4 "changes since v1beta3", first entry v1.31). */
  kubeadmApi: KubeadmApiVersion;
  /** kubernetes cmd/kubeadm/app/constants/constants.go PauseVersion at the release tags; the same for every patch of the minor per kubernetes/minikube pkg/minikube/constants/constants_kubeadm_images.go (`kubeadm config images list` per release). */
  pause: string;
  /** constants.go SupportedEtcdVersion at MINOR.0 (same minikube table). Later patches moved forward within the series: 1.30.5+ 3.5.15-0, 1.31.14+ / 1.32.10+ / 1.33.6+ 3.5.24-0, 1.34.2+ 3.6.5-0. */
  etcd: string;
  /** See ALWAYS_MANDATORY: crictl (1.30) and conntrack (< 1.32) on top of the always-mandatory ones. */
  extraMandatory: readonly string[];
  extraWarnOnly: readonly string[];
  /** kubernetes/release cmd/krel/templates/latest/metadata.yaml: kubeadm ">= 1.30.0 < 1.32.0" depends on cri-tools, ">= 1.32.0" on nothing. */
  criToolsDependency: boolean;
  /** failCgroupV1 appeared in 1.31 (KEP-4569, kubernetes/kubernetes#126031) and defaults to true from 1.35 (KEP-5573, kubernetes/kubernetes#134298). */
  failCgroupV1: "absent" | "false" | "true";
  /** containerd RELEASES.md "Kubernetes Support" table (1.30 and 1.31 rows as last listed, before they aged out in 2025-09 and 2026-01). */
  containerd: readonly string[];
  calico: CniManifest;
}

const TABLE: Readonly<Record<SupportedMinor, Row>> = {
  "1.30": {
    kubeadmApi: "kubeadm.k8s.io/v1beta3",
    pause: "3.9",
    etcd: "3.5.12-0",
    extraMandatory: ["crictl", "conntrack"],
    extraWarnOnly: [],
    criToolsDependency: true,
    failCgroupV1: "absent",
    containerd: ["2.1.0", "2.0.0", "1.7.13", "1.6.28"],
    calico: CALICO_3_29,
  },
  "1.31": {
    kubeadmApi: "kubeadm.k8s.io/v1beta4",
    pause: "3.10",
    etcd: "3.5.15-0",
    extraMandatory: ["conntrack"],
    extraWarnOnly: ["crictl"],
    criToolsDependency: true,
    failCgroupV1: "false",
    containerd: ["2.1.0", "2.0.0", "1.7.20", "1.6.34"],
    calico: CALICO_3_30,
  },
  "1.32": {
    kubeadmApi: "kubeadm.k8s.io/v1beta4",
    pause: "3.10",
    etcd: "3.5.16-0",
    extraMandatory: [],
    extraWarnOnly: [],
    criToolsDependency: false,
    failCgroupV1: "false",
    containerd: ["2.1.0", "2.0.1", "1.7.24", "1.6.36"],
    calico: CALICO_3_31,
  },
  "1.33": {
    kubeadmApi: "kubeadm.k8s.io/v1beta4",
    pause: "3.10",
    etcd: "3.5.21-0",
    extraMandatory: [],
    extraWarnOnly: [],
    criToolsDependency: false,
    failCgroupV1: "false",
    containerd: ["2.1.0", "2.0.4", "1.7.24", "1.6.36"],
    calico: CALICO_3_31,
  },
  "1.34": {
    kubeadmApi: "kubeadm.k8s.io/v1beta4",
    pause: "3.10.1",
    etcd: "3.6.4-0",
    extraMandatory: [],
    extraWarnOnly: [],
    criToolsDependency: false,
    failCgroupV1: "false",
    containerd: ["2.1.3", "2.0.6", "1.7.28", "1.6.39"],
    calico: CALICO_3_31,
  },
  "1.35": {
    kubeadmApi: "kubeadm.k8s.io/v1beta4",
    pause: "3.10.1",
    etcd: "3.6.6-0",
    extraMandatory: [],
    extraWarnOnly: [],
    criToolsDependency: false,
    failCgroupV1: "true",
    containerd: ["2.2.0", "2.1.5", "1.7.28"],
    calico: CALICO_3_31,
  },
};

// ---- small functions ---------------------------------------------------------------------------

/** "1.7.28", "v1.7.28", "1.6.20~ds1-1+b1", "3.5.12-0" -> [1, 7, 28]; undefined when there is no MAJOR.MINOR.PATCH at the start. */
export function parseRelease(version: string): [number, number, number] | undefined {
  const m = /^v?(\d+)\.(\d+)\.(\d+)(?![\d.])/.exec(version.trim());
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

/** Negative, zero or positive as a is older than, equal to or newer than b (release numbers only). */
export function compareReleases(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

function release(version: string): [number, number, number] {
  const r = parseRelease(version);
  if (!r) throw new Error(`not a release number: ${version}`);
  return r;
}

/** "1.31.4" or "v1.31.4" (or "1.31") -> "1.31"; undefined for anything else. */
export function minorOf(version: string): string | undefined {
  const m = /^v?(\d+)\.(\d+)(?:\.\d+)?$/.exec(version.trim());
  return m ? `${Number(m[1])}.${Number(m[2])}` : undefined;
}

export function isSupportedMinor(minor: string): minor is SupportedMinor {
  return (SUPPORTED_MINORS as readonly string[]).includes(minor);
}

function etcdFacts(version: string): EtcdFacts {
  const v = release(version);
  const series = `${v[0]}.${v[1]}`;
  const etcdctlRestores = compareReleases(v, [3, 6, 0]) < 0;
  return {
    version,
    series,
    // etcdutl was new in 3.5.0 (etcd CHANGELOG-3.5.md v3.5.0, etcd-io/etcd#12971).
    hasEtcdutl: compareReleases(v, [3, 5, 0]) >= 0,
    // etcd CHANGELOG-3.6.md: "Removed etcdctl snapshot status" / "Removed etcdctl snapshot restore" (etcd-io/etcd#13809).
    etcdctlRestores,
    // etcd CHANGELOG-3.5.md v3.5.10: --bump-revision and --mark-compacted on etcdutl and etcdctl snapshot restore (etcd-io/etcd#16165).
    bumpRevision: compareReleases(v, [3, 5, 10]) >= 0,
    // kubeadm's etcd image has not always carried etcdutl: images built by kubernetes' cluster/images/etcd
    // hold etcd and etcdctl only (its Makefile; etcd-io/etcd#13764), while etcd's own release images, which
    // registry.k8s.io serves for new tags since late 2025 (kubernetes/kubernetes#134251, etcd-io/etcd#19798),
    // add etcdutl (etcd Dockerfile). On 3.5 etcdctl can stand in; on 3.6 only etcdutl restores.
    restoreWith: etcdctlRestores ? "etcdutl-or-etcdctl" : "etcdutl",
  };
}

/** The facts for one supported minor. */
export function factsForMinor(minor: SupportedMinor): KubernetesFacts {
  const row = TABLE[minor];
  const recommended = row.containerd;
  return {
    minor,
    kubeadmApi: row.kubeadmApi,
    pauseVersion: row.pause,
    pauseImage: pauseImage(row.pause),
    etcd: etcdFacts(row.etcd),
    preflight: {
      mandatory: [...row.extraMandatory, ...ALWAYS_MANDATORY],
      warnOnly: [...row.extraWarnOnly, ...ALWAYS_WARN_ONLY],
    },
    kubeadmPackageRequiresCriTools: row.criToolsDependency,
    kubeletHasFailCgroupV1: row.failCgroupV1 !== "absent",
    failsCgroupV1ByDefault: row.failCgroupV1 === "true",
    containerd: {
      recommended,
      min: [...recommended].sort((a, b) => compareReleases(release(a), release(b)))[0]!,
    },
    cni: { calico: row.calico, flannel: FLANNEL_0_28 },
  };
}

/**
 * The facts for a Kubernetes release such as "1.31.4". A UserError naming kubernetes.version
 * for a version that is not a release number or not a supported minor.
 */
export function kubernetesFacts(version: string): KubernetesFacts {
  const minor = minorOf(version);
  if (minor === undefined) {
    throw new UserError(
      `kubernetes.version is "${version}", which is not a release number. Write it as MAJOR.MINOR.PATCH, for example "${SUPPORTED_MINORS.at(-1)}.0".`,
    );
  }
  if (!isSupportedMinor(minor)) {
    throw new UserError(
      `kubernetes.version is ${version}, but kubeadm-ha supports Kubernetes ${SUPPORTED_MINORS[0]} to ${SUPPORTED_MINORS.at(-1)}. Choose a release in that range.`,
    );
  }
  return factsForMinor(minor);
}

/** The pause image from an image repository (kubeadm's imageRepository; its default unless given). */
export function pauseImage(pauseVersion: string, imageRepository = KUBEADM_IMAGE_REPOSITORY): string {
  return `${imageRepository.replace(/\/+$/, "")}/pause:${pauseVersion}`;
}

export type ContainerdSupport =
  /** The version's release branch is listed for the minor and it is at least that branch's minimum. */
  | { status: "recommended" }
  /** Below the listed minimum of its branch, or a branch older than every listed one. */
  | { status: "too-old"; minimum: string }
  /** A branch the table does not list for the minor (newer than listed, or a gap such as 2.0 on 1.35). */
  | { status: "not-listed"; listed: readonly string[] }
  | { status: "unparsable" };

/**
 * Where an installed containerd (as `containerd --version` or a package version prints it, e.g.
 * "1.7.24~ds1-1") stands against containerd's recommendation for the minor.
 */
export function containerdSupport(facts: KubernetesFacts, installed: string): ContainerdSupport {
  const v = parseRelease(installed);
  if (!v) return { status: "unparsable" };
  const listed = facts.containerd.recommended.map(release);
  const sameBranch = listed.find((l) => l[0] === v[0] && l[1] === v[1]);
  if (sameBranch) {
    return compareReleases(v, sameBranch) >= 0
      ? { status: "recommended" }
      : { status: "too-old", minimum: sameBranch.join(".") };
  }
  const oldest = [...listed].sort(compareReleases)[0]!;
  if (compareReleases(v, oldest) < 0) return { status: "too-old", minimum: oldest.join(".") };
  return { status: "not-listed", listed: facts.containerd.recommended };
}
