// Host preparation: rendered files checked by TOML parsing and by containerd itself,
// the script by shellcheck, and its fstab / version-pick / container logic run for real.
import { describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { CONTAINERD_CONFIG_PATH, CRICTL_CONFIG_PATH, renderContainerdConfig } from "../../lib/render/containerd.ts";
import { phaseScript } from "../../lib/render/phase-script.ts";
import {
  APT_KEYRING_PATH,
  APT_SOURCES_PATH,
  aptSourceLine,
  COMMON_FUNCTIONS,
  MODULES_PATH,
  PREPARE_FUNCTIONS,
  prepareStep,
  SYSCTL_PATH,
} from "../../lib/render/prepare.ts";
import { checkSpecText, parseSpec } from "../../lib/spec/load.ts";
import type { ClusterSpec } from "../../lib/spec/schema.ts";
import { requireTool, run } from "./tool-helpers.ts";

const exampleText = readFileSync(join(import.meta.dir, "../../cluster.example.yaml"), "utf8");
function spec(mutate: (s: ClusterSpec) => void = () => {}): ClusterSpec {
  const s = parseSpec(exampleText);
  // The spec must name the apt repository (validation requires it for source "apt").
  s.kubernetes.packages.aptRepository = "https://k8s-mirror.example.internal/kubernetes/{minor}/deb/";
  s.kubernetes.packages.aptKeyUrl = "https://k8s-mirror.example.internal/kubernetes/{minor}/deb/Release.key";
  s.kubernetes.packages.aptKeyFingerprint = "DE15B14486CD377B9E876E1A234654DA9A296436";
  mutate(s);
  return s;
}

interface CriPlugin {
  sandbox_image: string;
  cni: { bin_dir: string };
  containerd: { runtimes: { runc: { runtime_type: string; options: { SystemdCgroup: boolean } } } };
}
const parseContainerd = (text: string) =>
  Bun.TOML.parse(text) as { version: number; plugins: Record<"io.containerd.grpc.v1.cri", CriPlugin> };

/** A bash prelude that stands in for the phase-script frame's helpers. */
const PRELUDE = `set -euo pipefail
NODE=test-node PHASE=prepare
die() { printf 'DIE: %s\\n' "$*" >&2; exit 1; }
`;

describe("containerd config", () => {
  test("TOML parses with the systemd cgroup driver, the spec's sandbox image and /opt/cni/bin", () => {
    const toml = parseContainerd(
      renderContainerdConfig(spec((s) => (s.containerRuntime.sandboxImage = "mirror.example/pause:3.9"))),
    );
    expect(toml.version).toBe(2);
    const cri = toml.plugins["io.containerd.grpc.v1.cri"];
    expect(cri.containerd.runtimes.runc.options.SystemdCgroup).toBe(true);
    expect(cri.containerd.runtimes.runc.runtime_type).toBe("io.containerd.runc.v2");
    expect(cri.sandbox_image).toBe("mirror.example/pause:3.9");
    expect(cri.cni.bin_dir).toBe("/opt/cni/bin");
  });

  test.skipIf(!requireTool("containerd"))("containerd itself reads it with SystemdCgroup on for runc", () => {
    const dir = mkdtempSync(join(tmpdir(), "kha-ctd-"));
    const file = join(dir, "config.toml");
    writeFileSync(file, renderContainerdConfig(spec()));
    const r = run(["containerd", "--config", file, "config", "dump"]);
    expect(r.code).toBe(0);
    const dumped = parseContainerd(r.out);
    const cri = dumped.plugins["io.containerd.grpc.v1.cri"];
    expect(cri.containerd.runtimes.runc.options.SystemdCgroup).toBe(true);
    expect(cri.sandbox_image).toBe("registry.k8s.io/pause:3.10");
    // A broken file must be refused, or the check above proves nothing.
    writeFileSync(file, "version = 2\n[plugins\n");
    expect(run(["containerd", "--config", file, "config", "dump"]).code).not.toBe(0);
  });

  test("a quote in the sandbox image cannot break out of the TOML string", () => {
    const toml = parseContainerd(renderContainerdConfig(spec((s) => (s.containerRuntime.sandboxImage = 'a"b\\c'))));
    expect(toml.plugins["io.containerd.grpc.v1.cri"].sandbox_image).toBe('a"b\\c');
  });
});

describe("prepareStep", () => {
  const s = spec();
  const node = s.nodes[3]!;

  test("files: sysctl, modules, containerd, crictl (and the apt source only for apt)", () => {
    const pre = prepareStep(s, node);
    expect(pre.phase).toBe("prepare");
    expect(pre.secrets).toEqual([]);
    expect(pre.files.map((f) => f.path).sort()).toEqual(
      [CONTAINERD_CONFIG_PATH, CRICTL_CONFIG_PATH, MODULES_PATH, SYSCTL_PATH].sort(),
    );
    const sysctl = pre.files.find((f) => f.path === SYSCTL_PATH)!.content;
    const settings = Object.fromEntries(
      sysctl
        .split("\n")
        .filter((l) => l && !l.startsWith("#"))
        .map((l) => l.split("=").map((x) => x.trim())),
    );
    expect(settings).toEqual({
      "net.ipv4.ip_forward": "1",
      "net.bridge.bridge-nf-call-iptables": "1",
      "net.bridge.bridge-nf-call-ip6tables": "1",
      "net.ipv4.ip_nonlocal_bind": "1",
    });
    const modules = pre.files.find((f) => f.path === MODULES_PATH)!.content;
    expect(modules.split("\n").filter((l) => l && !l.startsWith("#"))).toEqual(["overlay", "br_netfilter"]);
    const crictl = parseYaml(pre.files.find((f) => f.path === CRICTL_CONFIG_PATH)!.content);
    expect(crictl["runtime-endpoint"]).toBe("unix:///run/containerd/containerd.sock");

    const apt = prepareStep(
      spec((x) => (x.kubernetes.packages.source = "apt")),
      node,
    );
    const list = apt.files.find((f) => f.path === APT_SOURCES_PATH)!.content;
    expect(list).toContain(
      `deb [signed-by=${APT_KEYRING_PATH}] https://k8s-mirror.example.internal/kubernetes/v1.31/deb/ /`,
    );
  });

  test.skipIf(!requireTool("shellcheck"))("both package sources give shellcheck-clean scripts", () => {
    for (const source of ["apt", "preinstalled"] as const) {
      const script = prepareStep(
        spec((x) => (x.kubernetes.packages.source = source)),
        node,
      ).script;
      const r = run(["shellcheck", "-s", "bash", "-"], script);
      expect(r.out + r.err).toBe("");
      expect(r.code).toBe(0);
    }
  });

  test("apt: pinned by the exact version, held, key under /etc/apt/keyrings, {minor} replaced", () => {
    const script = prepareStep(
      spec((x) => {
        x.kubernetes.packages.source = "apt";
        x.kubernetes.packages.aptKeyUrl = "https://mirror.example/{minor}/Release.key";
      }),
      node,
    ).script;
    expect(script).toContain("KUBE_VERSION='1.31.4'");
    expect(script).toContain("apt-cache madison kubeadm");
    expect(script).toContain(`"kubeadm=$pin" "kubelet=$pin" "kubectl=$pin"`);
    expect(script).toContain("apt-mark hold");
    expect(script).toContain(`KEYRING='${APT_KEYRING_PATH}'`);
    expect(script).toContain("APT_KEY_URL='https://mirror.example/v1.31/Release.key'");
    expect(script).not.toContain("{minor}");
  });

  test("preinstalled: checks kubeadm version -o short against v<version>", () => {
    const script = prepareStep(s, node).script;
    expect(script).toContain("kubeadm version -o short");
    expect(script).toContain(`[ "$have" = "v$KUBE_VERSION" ]`);
    expect(script).not.toContain("apt-get install");
  });

  test("containerd restarts only on a config change (or when it is down), kubelet is enabled", () => {
    const script = prepareStep(s, node).script;
    expect(script).toMatch(/if \[ "\$\(cat "\$CONTAINERD_MARKER".*\n\s+systemctl restart containerd/);
    expect(script.match(/systemctl restart containerd/g)?.length).toBe(1);
    expect(script).toContain("systemctl enable kubelet");
    expect(script).toContain("timedatectl show -p NTPSynchronized --value");
  });

  test("apt repository: a mirror with suite and components, and a refused value", () => {
    expect(
      aptSourceLine(
        spec((x) => (x.kubernetes.packages.aptRepository = "https://mirror.example/k8s/{minor} stable main")),
      ),
    ).toBe(`deb [signed-by=${APT_KEYRING_PATH}] https://mirror.example/k8s/v1.31 stable main`);
    expect(aptSourceLine(spec())).toBe(
      `deb [signed-by=${APT_KEYRING_PATH}] https://k8s-mirror.example.internal/kubernetes/v1.31/deb/ /`,
    );
  });

  test("apt repository and key URL formats are validation's: refused there, naming the field", () => {
    const withApt = (repo: string, key = "https://k8s-mirror.example.internal/{minor}/Release.key") =>
      checkSpecText(
        exampleText.replace(
          "    source: preinstalled\n",
          `    source: apt\n    aptRepository: ${JSON.stringify(repo)}\n    aptKeyUrl: ${JSON.stringify(key)}\n    aptKeyFingerprint: DE15B14486CD377B9E876E1A234654DA9A296436\n`,
        ),
      ).problems.map((p) => p.path);
    expect(withApt("https://mirror.example/k8s/{minor} stable main")).toEqual([]);
    expect(withApt("not a url; rm -rf /")).toEqual(["kubernetes.packages.aptRepository"]);
    expect(withApt("deb https://mirror.example/k8s/{minor} stable")).toEqual(["kubernetes.packages.aptRepository"]);
    expect(withApt("https://mirror.example/k8s stable;reboot")).toEqual(["kubernetes.packages.aptRepository"]);
    expect(withApt("https://mirror.example/k8s", 'https://mirror.example/"key')).toEqual([
      "kubernetes.packages.aptKeyUrl",
    ]);
  });
});

describe("prepare bash functions, run for real", () => {
  test.skipIf(!requireTool("gpg"))(
    "check_key_fingerprint: the pinned key passes; another key or a file that is no key is refused, naming the field",
    () => {
      const home = mkdtempSync(join(tmpdir(), "kha-gpg-"));
      const gpg = (args: string[]) => run(["gpg", "--homedir", home, "--batch", ...args]);
      const make = (uid: string) => {
        expect(gpg(["--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "1d"]).code).toBe(0);
        const key = join(home, `${uid}.asc`);
        writeFileSync(key, gpg(["--armor", "--export", uid]).out);
        const fpr = gpg(["--with-colons", "--fingerprint", uid]).out.match(/^fpr:+([0-9A-F]{40}):/m)![1]!;
        return { key, fpr };
      };
      const good = make("kubeadm-ha-test-good");
      const other = make("kubeadm-ha-test-other");
      const junk = join(home, "junk.asc");
      writeFileSync(junk, "<html>not a key</html>\n");
      const check = (file: string, want: string) =>
        run(
          [
            "bash",
            "-c",
            `${PRELUDE}${PREPARE_FUNCTIONS}\ncheck_key_fingerprint "$1" "$2" https://mirror.example/Release.key\necho trusted`,
            "x",
            file,
            want,
          ],
          undefined,
          {
            GNUPGHOME: home,
          },
        );
      expect(check(good.key, good.fpr).out).toContain("trusted");
      const wrong = check(other.key, good.fpr);
      expect(wrong.code).toBe(1);
      expect(wrong.err).toContain(`has fingerprint(s) ${other.fpr}`);
      expect(wrong.err).toContain("kubernetes.packages.aptKeyFingerprint");
      expect(check(junk, good.fpr).err).toContain("none (not an OpenPGP key)");
    },
  );

  test("disable_swap_in_fstab comments out swap entries once and keeps the rest and the mode", () => {
    const dir = mkdtempSync(join(tmpdir(), "kha-fstab-"));
    const fstab = join(dir, "fstab");
    const original = [
      "# /etc/fstab: static file system information.",
      "UUID=1111 / ext4 errors=remount-ro 0 1",
      "/swap.img\tnone\tswap\tsw\t0\t0",
      "UUID=2222 none swap sw 0 0",
      "# /old.swap none swap sw 0 0",
      "tmpfs /tmp tmpfs defaults 0 0",
      "",
    ].join("\n");
    writeFileSync(fstab, original);
    chmodSync(fstab, 0o644);
    const cmd = `${PRELUDE}${PREPARE_FUNCTIONS}\ndisable_swap_in_fstab "$1"`;
    const first = run(["bash", "-c", cmd, "x", fstab]);
    expect(first.code).toBe(0);
    const after = readFileSync(fstab, "utf8");
    const lines = after.split("\n");
    expect(lines[1]).toBe("UUID=1111 / ext4 errors=remount-ro 0 1");
    expect(lines[2]).toBe("# disabled by kubeadm-ha, kubelet needs swap off: /swap.img\tnone\tswap\tsw\t0\t0");
    expect(lines[3]).toBe("# disabled by kubeadm-ha, kubelet needs swap off: UUID=2222 none swap sw 0 0");
    expect(lines[4]).toBe("# /old.swap none swap sw 0 0");
    expect(lines[5]).toBe("tmpfs /tmp tmpfs defaults 0 0");
    expect(statSync(fstab).mode & 0o777).toBe(0o644);
    const mtime = statSync(fstab).mtimeMs;
    const second = run(["bash", "-c", cmd, "x", fstab]);
    expect(second.code).toBe(0);
    expect(second.out).toBe("");
    expect(readFileSync(fstab, "utf8")).toBe(after);
    expect(statSync(fstab).mtimeMs).toBe(mtime);
    // No temporary file left behind.
    expect(run(["bash", "-c", `ls "${dir}"`]).out.trim()).toBe("fstab");
  });

  test("pick_package_version takes the exact upstream version from apt-cache madison output", () => {
    const madison = [
      "   kubeadm | 1.31.40-1.1 | https://k8s-mirror.example.internal/kubernetes/v1.31/deb  Packages",
      "   kubeadm | 1.31.4-1.1 | https://k8s-mirror.example.internal/kubernetes/v1.31/deb  Packages",
      "   kubeadm | 1.31.3-1.1 | https://k8s-mirror.example.internal/kubernetes/v1.31/deb  Packages",
    ].join("\n");
    const pick = (v: string) =>
      run(["bash", "-c", `${PRELUDE}${PREPARE_FUNCTIONS}\npick_package_version "$1"`, "x", v], madison).out;
    expect(pick("1.31.4")).toBe("1.31.4-1.1\n");
    expect(pick("1.31.40")).toBe("1.31.40-1.1\n");
    expect(pick("1.31.9")).toBe("");
  });

  test("fatal_unless_test_container: a warning only in a container the spec calls a test host (hosts.containers), fatal anywhere else", () => {
    const dir = mkdtempSync(join(tmpdir(), "kha-virt-"));
    const stub = (exitCode: number) => {
      writeFileSync(join(dir, "systemd-detect-virt"), `#!/bin/sh\necho systemd-nspawn\nexit ${exitCode}\n`);
      chmodSync(join(dir, "systemd-detect-virt"), 0o755);
    };
    const cmd = `${PRELUDE}${COMMON_FUNCTIONS}${PREPARE_FUNCTIONS}\nfatal_unless_test_container "could not load br_netfilter"\necho continued`;
    const env = (containers: string) => ({ PATH: `${dir}:${process.env.PATH}`, CONTAINER_HOSTS: containers });
    stub(0);
    const inTestContainer = run(["bash", "-c", cmd], undefined, env("true"));
    expect(inTestContainer.code).toBe(0);
    expect(inTestContainer.out).toContain("continued");
    expect(inTestContainer.err).toContain(
      "WARNING: could not load br_netfilter (hosts.containers: inside a systemd-nspawn container",
    );
    // A production spec never opts out, container or not.
    const inProdContainer = run(["bash", "-c", cmd], undefined, env("false"));
    expect(inProdContainer.code).toBe(1);
    expect(inProdContainer.err).toContain("DIE: could not load br_netfilter");
    stub(1);
    const onHost = run(["bash", "-c", cmd], undefined, env("true"));
    expect(onHost.code).toBe(1);
    expect(onHost.out).not.toContain("continued");
    expect(onHost.err).toContain("DIE: could not load br_netfilter");
  });

  test("a failure inside a helper function still names the failing step (errtrace)", () => {
    const dir = mkdtempSync(join(tmpdir(), "kha-frame-"));
    const script = join(dir, "run.sh");
    const leftover = join(tmpdir(), `kha-leftover-${process.pid}`);
    writeFileSync(leftover, "x");
    const body = `${COMMON_FUNCTIONS}\nalso_on_exit "rm -f -- '${leftover}'"\nbroken() { false; echo not-reached; }\nstep "apply sysctl"\nbroken`;
    writeFileSync(script, phaseScript({ phase: "prepare", node: "n1", files: [], secrets: [], body }));
    const r = run(["bash", script]);
    expect(r.code).toBe(1);
    expect(r.out).not.toContain("not-reached");
    expect(r.err).toContain('FAILED during "apply sysctl"');
    // also_on_exit kept the frame's cleanup (the stage directory) and added its own.
    expect(existsSync(leftover)).toBe(false);
    expect(existsSync(dir)).toBe(false);
  });
});
