// The per-minor facts table: its key facts pinned (so a change is deliberate and shows up
// here), its internal consistency, and the small functions around it.
import { describe, expect, test } from "bun:test";
import { UserError } from "../../lib/errors.ts";
import { SUPPORTED_KUBERNETES_MINORS } from "../../lib/spec/validate.ts";
import {
  compareReleases,
  containerdSupport,
  DEBIAN_PACKAGE_OF_BINARY,
  factsForMinor,
  isSupportedMinor,
  type KubernetesFacts,
  kubernetesFacts,
  minorOf,
  parseRelease,
  pauseImage,
  SUPPORTED_MINORS,
} from "../../lib/versions.ts";

const all: KubernetesFacts[] = SUPPORTED_MINORS.map(factsForMinor);

describe("pinned facts", () => {
  // minor: kubeadm API, pause, etcd at MINOR.0, kubeadm's mandatory preflight binaries beyond
  // ip/iptables/mount/nsenter, kubeadm package pulls cri-tools, kubelet refuses cgroup v1,
  // containerd minimums, calico release.
  const expected: Record<string, [string, string, string, string[], boolean, boolean, string[], string]> = {
    "1.30": [
      "v1beta3",
      "3.9",
      "3.5.12-0",
      ["crictl", "conntrack"],
      true,
      false,
      ["2.1.0", "2.0.0", "1.7.13", "1.6.28"],
      "v3.29.7",
    ],
    "1.31": [
      "v1beta4",
      "3.10",
      "3.5.15-0",
      ["conntrack"],
      true,
      false,
      ["2.1.0", "2.0.0", "1.7.20", "1.6.34"],
      "v3.30.7",
    ],
    "1.32": ["v1beta4", "3.10", "3.5.16-0", [], false, false, ["2.1.0", "2.0.1", "1.7.24", "1.6.36"], "v3.31.7"],
    "1.33": ["v1beta4", "3.10", "3.5.21-0", [], false, false, ["2.1.0", "2.0.4", "1.7.24", "1.6.36"], "v3.31.7"],
    "1.34": ["v1beta4", "3.10.1", "3.6.4-0", [], false, false, ["2.1.3", "2.0.6", "1.7.28", "1.6.39"], "v3.31.7"],
    "1.35": ["v1beta4", "3.10.1", "3.6.6-0", [], false, true, ["2.2.0", "2.1.5", "1.7.28"], "v3.31.7"],
  };

  test("the table covers exactly the pinned minors", () => {
    expect<string[]>([...SUPPORTED_MINORS]).toEqual(Object.keys(expected));
  });

  for (const f of all) {
    test(f.minor, () => {
      const [api, pause, etcd, extraMandatory, criTools, failsV1, containerd, calico] = expected[f.minor]!;
      expect<string>(f.kubeadmApi).toBe(`kubeadm.k8s.io/${api}`);
      expect(f.pauseVersion).toBe(pause);
      expect(f.pauseImage).toBe(`registry.k8s.io/pause:${pause}`);
      expect(f.etcd.version).toBe(etcd);
      expect(f.preflight.mandatory).toEqual([...extraMandatory, "ip", "iptables", "mount", "nsenter"]);
      expect(f.kubeadmPackageRequiresCriTools).toBe(criTools);
      expect(f.failsCgroupV1ByDefault).toBe(failsV1);
      expect(f.containerd.recommended).toEqual(containerd);
      expect(f.cni.calico.version).toBe(calico);
      expect(f.cni.flannel.version).toBe("v0.28.9");
    });
  }

  test("crictl: mandatory on 1.30, a warning on 1.31, not checked from 1.32", () => {
    const where = all.map((f) =>
      f.preflight.mandatory.includes("crictl") ? "error" : f.preflight.warnOnly.includes("crictl") ? "warn" : "-",
    );
    expect(where).toEqual(["error", "warn", "-", "-", "-", "-"]);
  });

  test("etcd: every minor restores with --bump-revision; 3.6 (1.34+) only with etcdutl", () => {
    expect(all.map((f) => f.etcd.series)).toEqual(["3.5", "3.5", "3.5", "3.5", "3.6", "3.6"]);
    for (const f of all) {
      expect(f.etcd.hasEtcdutl).toBe(true);
      expect(f.etcd.bumpRevision).toBe(true);
    }
    expect(all.map((f) => f.etcd.restoreWith)).toEqual([
      "etcdutl-or-etcdctl",
      "etcdutl-or-etcdctl",
      "etcdutl-or-etcdctl",
      "etcdutl-or-etcdctl",
      "etcdutl",
      "etcdutl",
    ]);
    expect(all.map((f) => f.etcd.etcdctlRestores)).toEqual([true, true, true, true, false, false]);
  });

  test("kubelet's failCgroupV1 exists from 1.31", () => {
    expect(all.map((f) => f.kubeletHasFailCgroupV1)).toEqual([false, true, true, true, true, true]);
  });

  test("CNI manifests are pinned to a tag with a sha256", () => {
    expect(factsForMinor("1.35").cni.calico).toMatchObject({
      url: "https://raw.githubusercontent.com/projectcalico/calico/v3.31.7/manifests/calico.yaml",
      sha256: "d6d8a489a4ed8e5b8efd8b339047b496ca657b55ee2e3618e791507b0a853e8d",
    });
    expect(factsForMinor("1.30").cni.flannel).toMatchObject({
      url: "https://raw.githubusercontent.com/flannel-io/flannel/v0.28.9/Documentation/kube-flannel.yml",
      sha256: "e875824be2f552b45711dbda91af81b17eb961d00025d914d9fef18fad8f09c0",
    });
  });
});

describe("internal consistency", () => {
  test("the supported minors are consecutive and are the ones spec validation accepts", () => {
    const minors = SUPPORTED_MINORS.map((m) => Number(m.split(".")[1]));
    minors.forEach((m, i) => {
      if (i > 0) expect(m).toBe(minors[i - 1]! + 1);
    });
    expect<string[]>([...SUPPORTED_MINORS]).toEqual([...SUPPORTED_KUBERNETES_MINORS]);
  });

  for (const f of all) {
    test(`${f.minor}: every field is present and parses`, () => {
      expect(f.kubeadmApi).toMatch(/^kubeadm\.k8s\.io\/v1beta[34]$/);
      expect(f.pauseVersion).toMatch(/^\d+\.\d+(\.\d+)?$/);
      expect(parseRelease(f.etcd.version)).toBeDefined();
      expect(f.etcd.version).toMatch(/^\d+\.\d+\.\d+-\d+$/);
      expect(f.etcd.version.startsWith(`${f.etcd.series}.`)).toBe(true);
      for (const b of [...f.preflight.mandatory, ...f.preflight.warnOnly]) {
        expect(DEBIAN_PACKAGE_OF_BINARY[b]).toBeString();
      }
      expect(f.preflight.mandatory.filter((b) => f.preflight.warnOnly.includes(b))).toEqual([]);
      expect(new Set(f.preflight.mandatory).size).toBe(f.preflight.mandatory.length);

      // containerd: one minimum per release branch, newest branch first, min the oldest of them.
      const releases = f.containerd.recommended.map((v) => parseRelease(v)!);
      expect(releases.every(Boolean)).toBe(true);
      const branches = releases.map((r) => `${r[0]}.${r[1]}`);
      expect(new Set(branches).size).toBe(branches.length);
      expect([...releases].sort((a, b) => compareReleases(b, a))).toEqual(releases);
      expect(f.containerd.min).toBe(f.containerd.recommended.at(-1)!);

      for (const cni of [f.cni.calico, f.cni.flannel]) {
        expect(cni.version).toMatch(/^v\d+\.\d+\.\d+$/);
        expect(cni.url).toStartWith("https://");
        expect(cni.url).toContain(`/${cni.version}/`);
        expect(cni.sha256).toMatch(/^[0-9a-f]{64}$/);
        expect(cni.gitBlob).toMatch(/^[0-9a-f]{40}$/);
      }
      // The default calico is one its project tests against this minor.
      expect(f.cni.calico.testedMinors).toContain(f.minor);
    });
  }

  test("pause, etcd and the kubeadm API never go backwards from one minor to the next", () => {
    for (let i = 1; i < all.length; i++) {
      const [prev, cur] = [all[i - 1]!, all[i]!];
      const numbers = (v: string) => v.split(".").map(Number);
      expect(compareReleases(numbers(cur.pauseVersion), numbers(prev.pauseVersion))).toBeGreaterThanOrEqual(0);
      expect(compareReleases(parseRelease(cur.etcd.version)!, parseRelease(prev.etcd.version)!)).toBeGreaterThanOrEqual(
        0,
      );
      expect(cur.kubeadmApi >= prev.kubeadmApi).toBe(true);
    }
  });
});

describe("kubernetesFacts", () => {
  test("takes a release with or without a leading v", () => {
    expect(kubernetesFacts("1.31.4").minor).toBe("1.31");
    expect(kubernetesFacts("v1.35.0").minor).toBe("1.35");
  });

  test.each([
    ["1.29.9", "supports Kubernetes 1.30 to 1.35"],
    ["1.36.0", "supports Kubernetes 1.30 to 1.35"],
    ["2.0.0", "supports Kubernetes 1.30 to 1.35"],
    ["latest", "not a release number"],
    ["1.31.4-rc.0", "not a release number"],
  ])("refuses %s with a UserError naming kubernetes.version", (version, text) => {
    let caught: unknown;
    try {
      kubernetesFacts(version);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(UserError);
    expect((caught as UserError).message).toContain("kubernetes.version");
    expect((caught as UserError).message).toContain(text);
  });

  test("minorOf and isSupportedMinor", () => {
    expect(minorOf("1.31.4")).toBe("1.31");
    expect(minorOf("v1.31")).toBe("1.31");
    expect(minorOf("1.31.4.1")).toBeUndefined();
    expect(isSupportedMinor("1.30")).toBe(true);
    expect(isSupportedMinor("1.29")).toBe(false);
  });
});

describe("small functions", () => {
  test("parseRelease reads the leading release of distribution package versions", () => {
    expect(parseRelease("1.7.24~ds1-1")).toEqual([1, 7, 24]);
    expect(parseRelease("1.6.20~ds1-1+b1")).toEqual([1, 6, 20]);
    expect(parseRelease("v2.1.5")).toEqual([2, 1, 5]);
    expect(parseRelease("1.7.27-0ubuntu1~24.04.1")).toEqual([1, 7, 27]);
    expect(parseRelease("3.5.12-0")).toEqual([3, 5, 12]);
    expect(parseRelease("1.7")).toBeUndefined();
    expect(parseRelease("1.7.2.3")).toBeUndefined();
    expect(parseRelease("containerd")).toBeUndefined();
  });

  test("pauseImage follows kubeadm's imageRepository", () => {
    expect(pauseImage("3.10.1")).toBe("registry.k8s.io/pause:3.10.1");
    expect(pauseImage("3.9", "mirror.example.internal/k8s/")).toBe("mirror.example.internal/k8s/pause:3.9");
  });

  test.each([
    // Debian 12's containerd on 1.30: below the 1.6 branch's minimum.
    ["1.30", "1.6.20~ds1-1+b1", { status: "too-old", minimum: "1.6.28" }],
    // Debian 13's containerd: fine for 1.33, too old for 1.34 (1.7.28+).
    ["1.33", "1.7.24~ds1-1", { status: "recommended" }],
    ["1.34", "1.7.24~ds1-1", { status: "too-old", minimum: "1.7.28" }],
    ["1.35", "1.7.28", { status: "recommended" }],
    // 1.35 lists no 1.6 and no 2.0 branch.
    ["1.35", "1.6.39", { status: "too-old", minimum: "1.7.28" }],
    ["1.35", "2.0.7", { status: "not-listed", listed: ["2.2.0", "2.1.5", "1.7.28"] }],
    ["1.30", "v2.2.1", { status: "not-listed", listed: ["2.1.0", "2.0.0", "1.7.13", "1.6.28"] }],
    ["1.32", "containerd github.com/containerd/containerd", { status: "unparsable" }],
  ] as const)("containerd on %s: %s", (minor, installed, verdict) => {
    expect(containerdSupport(factsForMinor(minor), installed)).toEqual(verdict);
  });
});
