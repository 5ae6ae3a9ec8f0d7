// What depends on the Kubernetes minor reaches the rendered files from the one versions table:
// kubeadm's API version, the pause image (and a mirror for it), the binaries kubeadm's preflight
// needs, cgroup v1 on 1.35, the containerd range.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { renderContainerdConfig } from "../../lib/render/containerd.ts";
import { renderInitConfig, renderJoinConfig } from "../../lib/render/kubeadm.ts";
import { prepareStep } from "../../lib/render/prepare.ts";
import { caCertHash, generateSecrets } from "../../lib/secrets.ts";
import { parseSpec } from "../../lib/spec/load.ts";
import type { ClusterSpec } from "../../lib/spec/schema.ts";

const exampleText = readFileSync(join(import.meta.dir, "../../cluster.example.yaml"), "utf8");
const spec = (version: string, mutate: (s: ClusterSpec) => void = () => {}): ClusterSpec => {
  const s = parseSpec(exampleText.replace(/version: "1\.31\.4"/, `version: "${version}"`));
  mutate(s);
  return s;
};
const secrets = generateSecrets();
const ctx = { caCertPem: secrets.caCert, caCertHash: caCertHash(secrets.caCert) };
const byKind = (text: string, kind: string) =>
  parseAllDocuments(text)
    .map((d) => d.toJS())
    .find((d) => d?.kind === kind);

describe("per-minor facts in the rendered files", () => {
  test("the example spec really is 1.31.4 (the other cases replace its version)", () => {
    expect(parseSpec(exampleText).kubernetes.version).toBe("1.31.4");
  });

  test.each([
    ["1.30.6", "kubeadm.k8s.io/v1beta3", "registry.k8s.io/pause:3.9"],
    ["1.31.4", "kubeadm.k8s.io/v1beta4", "registry.k8s.io/pause:3.10"],
    ["1.34.1", "kubeadm.k8s.io/v1beta4", "registry.k8s.io/pause:3.10.1"],
  ])("%s: kubeadm %s, containerd's sandbox image %s", (version, api, pause) => {
    const s = spec(version);
    expect(byKind(renderInitConfig(s, ctx), "ClusterConfiguration").apiVersion).toBe(api);
    expect(byKind(renderJoinConfig(s, s.nodes[3]!, ctx), "JoinConfiguration").apiVersion).toBe(api);
    expect(renderContainerdConfig(s)).toContain(`sandbox_image = "${pause}"`);
  });

  test("kubernetes.imageRepository: kubeadm pulls from the mirror and so does containerd's pause image; an explicit sandboxImage wins", () => {
    const mirrored = spec("1.31.4", (s) => {
      s.kubernetes.imageRepository = "registry.example.com:5000/k8s";
    });
    expect(byKind(renderInitConfig(mirrored, ctx), "ClusterConfiguration").imageRepository).toBe(
      "registry.example.com:5000/k8s",
    );
    expect(renderContainerdConfig(mirrored)).toContain('sandbox_image = "registry.example.com:5000/k8s/pause:3.10"');
    expect(byKind(renderInitConfig(spec("1.31.4"), ctx), "ClusterConfiguration").imageRepository).toBeUndefined();
    const explicit = spec("1.31.4", (s) => {
      s.containerRuntime.sandboxImage = "registry.example.com/pause:3.10";
    });
    expect(renderContainerdConfig(explicit)).toContain('sandbox_image = "registry.example.com/pause:3.10"');
  });

  test("apt installs what kubeadm's preflight needs for the minor, and cri-tools (held) on every minor", () => {
    const apt = (v: string) =>
      spec(v, (s) => {
        s.kubernetes.packages = {
          source: "apt",
          aptRepository: "https://k8s-mirror.example.internal/kubernetes/{minor}/deb/",
          aptKeyUrl: "https://k8s-mirror.example.internal/kubernetes/{minor}/deb/Release.key",
          aptKeyFingerprint: "DE15B14486CD377B9E876E1A234654DA9A296436",
        };
      });
    const s31 = prepareStep(apt("1.31.4"), apt("1.31.4").nodes[0]!).script;
    expect(s31).toContain("for pkg in conntrack iproute2 iptables mount util-linux cri-tools; do");
    expect(s31).toContain("for pkg in kubeadm kubelet kubectl cri-tools; do");
    // conntrack is mandatory only below 1.32
    const s33 = prepareStep(apt("1.33.1"), apt("1.33.1").nodes[0]!).script;
    expect(s33).toContain("for pkg in iproute2 iptables mount util-linux cri-tools; do");
  });

  test("preinstalled: a missing mandatory binary stops prepare, a warn-only one warns", () => {
    const pre = (v: string) =>
      prepareStep(
        spec(v, (s) => {
          s.kubernetes.packages.source = "preinstalled";
        }),
        spec(v).nodes[0]!,
      ).script;
    expect(pre("1.30.6")).toContain("for bin in crictl conntrack ip iptables mount nsenter; do");
    expect(pre("1.32.2")).toContain("for bin in ip iptables mount nsenter; do");
    expect(pre("1.32.2")).toContain("for bin in ebtables ethtool socat tc touch; do");
  });

  test("cgroup v1: 1.35 stops in prepare with the fix unless kubernetes.allowCgroupV1, which also tells kubelet and kubeadm", () => {
    const strict = prepareStep(spec("1.35.0"), spec("1.35.0").nodes[0]!).script;
    expect(strict).toContain(
      '[ "$CGROUP" = v2 ] || die "this node uses cgroup v1, which the kubelet of Kubernetes 1.35 refuses',
    );
    expect(strict).toContain("kubernetes.allowCgroupV1: true");
    const older = prepareStep(spec("1.34.1"), spec("1.34.1").nodes[0]!).script;
    expect(older).toContain('[ "$CGROUP" = v2 ] || warn ');
    const allowed = spec("1.35.0", (s) => {
      s.kubernetes.allowCgroupV1 = true;
    });
    expect(prepareStep(allowed, allowed.nodes[0]!).script).toContain('[ "$CGROUP" = v2 ] || warn ');
    const init = renderInitConfig(allowed, ctx);
    expect(byKind(init, "KubeletConfiguration").failCgroupV1).toBe(false);
    expect(byKind(init, "InitConfiguration").nodeRegistration.ignorePreflightErrors).toEqual(["SystemVerification"]);
    expect(
      byKind(renderJoinConfig(allowed, allowed.nodes[3]!, ctx), "JoinConfiguration").nodeRegistration
        .ignorePreflightErrors,
    ).toEqual(["SystemVerification"]);
    // Nothing of it where it is not needed.
    expect(byKind(renderInitConfig(spec("1.35.0"), ctx), "KubeletConfiguration").failCgroupV1).toBeUndefined();
    const on134 = spec("1.34.1", (s) => {
      s.kubernetes.allowCgroupV1 = true;
    });
    expect(
      byKind(renderInitConfig(on134, ctx), "InitConfiguration").nodeRegistration.ignorePreflightErrors,
    ).toBeUndefined();
  });

  test("containerd older than the oldest release containerd lists for the minor is a warning naming both", () => {
    const s = prepareStep(spec("1.34.1"), spec("1.34.1").nodes[0]!).script;
    expect(s).toContain("older than 1.6.39, the oldest containerd's RELEASES.md lists for Kubernetes 1.34");
  });
});
