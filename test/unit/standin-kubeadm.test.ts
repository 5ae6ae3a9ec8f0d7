// The lab's kubeadm stand-in must refuse what kubeadm refuses (test/lab/standins): strict config
// decoding per API version, the preflight binaries and swap, and check-etcd. Every config
// kubeadm-ha renders passes it, for Kubernetes 1.30 (v1beta3) and 1.31+ (v1beta4); broken ones are
// refused with kubeadm's message. The command line is run as the stand-in runs it.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  BOOTSTRAP_TOKEN_PLACEHOLDER,
  CERTIFICATE_KEY_PLACEHOLDER,
  caCertHashFromPem,
  type KubeadmContext,
  renderInitConfig,
  renderJoinConfig,
  renderJoinTokenConfig,
} from "../../lib/render/kubeadm.ts";
import { parseSpec } from "../../lib/spec/load.ts";
import type { ClusterSpec } from "../../lib/spec/schema.ts";
import { clusterStatusProblem } from "../lab/standins/kubeadm-etcd.ts";
import { ignoreSet, kubeletStartProblem, preflightFindings, report } from "../lab/standins/kubeadm-preflight.ts";
import { checkKubeadmConfig } from "../lab/standins/kubeadm-schema.ts";
import { requireTool, run, selfSignedCert } from "./tool-helpers.ts";

const STANDINS = join(import.meta.dir, "../lab/standins");
const work = mkdtempSync(join(tmpdir(), "kha-standin-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const exampleText = readFileSync(join(import.meta.dir, "../../cluster.example.yaml"), "utf8");
const spec = (version: string): ClusterSpec => {
  const s = parseSpec(exampleText);
  s.kubernetes.version = version;
  return s;
};

// A throwaway CA made by openssl, as the renderers need one.
const caCertPath = join(work, "ca.crt");
const caCertPem = selfSignedCert({
  certPath: caCertPath,
  keyPath: join(work, "ca.key"),
  cn: "kubernetes",
  days: 2,
}).cert;
const ctx: KubeadmContext = { caCertPem, caCertHash: caCertHashFromPem(caCertPem) };

/** The 0600 copy the phase scripts hand to kubeadm: placeholders filled with real-looking secrets. */
const fill = (text: string) =>
  text
    .replaceAll(BOOTSTRAP_TOKEN_PLACEHOLDER, "abcdef.0123456789abcdef")
    .replaceAll(CERTIFICATE_KEY_PLACEHOLDER, "0123456789abcdef".repeat(4));

let n = 0;
/** `kubeadm-api.ts validate-config VERSION USE FILE`, as the kubeadm stand-in calls it. */
function validateCli(version: string, use: string, text: string) {
  const file = join(work, `config-${n++}.yaml`);
  writeFileSync(file, text, { mode: 0o600 });
  return run([process.execPath, join(STANDINS, "kubeadm-api.ts"), "validate-config", version, use, file]);
}
const errorsOf = (text: string, version = "v1.31.4", use: "init" | "join" | "validate" = "validate") =>
  checkKubeadmConfig(text, version, use).errors.join("\n");

describe("the stand-in decodes every config kubeadm-ha renders, as kubeadm of that version does", () => {
  for (const version of ["1.30.6", "1.31.4", "1.32.2", "1.33.1"]) {
    test(`Kubernetes ${version}: init, join-token and join configs pass (${version.startsWith("1.30") ? "v1beta3" : "v1beta4"})`, () => {
      const s = spec(version);
      const kubeadm = `v${version}`;
      const init = fill(renderInitConfig(s, ctx));
      expect(init).toContain(`apiVersion: kubeadm.k8s.io/${version.startsWith("1.30") ? "v1beta3" : "v1beta4"}`);
      for (const use of ["init", "validate"]) {
        const r = validateCli(kubeadm, use, init);
        expect(r.err).toBe("");
        expect(r.code).toBe(0);
      }
      for (const cp of [true, false])
        expect(validateCli(kubeadm, "init", fill(renderJoinTokenConfig(s, cp))).code).toBe(0);
      for (const node of s.nodes.slice(1)) {
        const join = fill(renderJoinConfig(s, node, ctx));
        for (const use of ["join", "validate"]) {
          const r = validateCli(kubeadm, use, join);
          expect(r.err).toBe("");
          expect(r.code).toBe(0);
        }
      }
    });
  }
});

describe("the stand-in refuses what kubeadm refuses", () => {
  const v4Init = fill(renderInitConfig(spec("1.31.4"), ctx));
  const v3Init = fill(renderInitConfig(spec("1.30.6"), ctx));
  const v4Join = fill(renderJoinConfig(spec("1.31.4"), spec("1.31.4").nodes[1]!, ctx));
  const v3Join = fill(renderJoinConfig(spec("1.30.6"), spec("1.30.6").nodes[1]!, ctx));
  const afterKind = (text: string, kind: string, line: string) =>
    text.replace(`kind: ${kind}\n`, `kind: ${kind}\n${line}\n`);

  test("an unknown field, through the command line, with kubeadm's strict decoding message", () => {
    const r = validateCli("v1.31.4", "init", afterKind(v4Init, "InitConfiguration", "bootstrapToken: []"));
    expect(r.code).not.toBe(0);
    expect(r.err).toContain(
      'error unmarshaling configuration schema.GroupVersionKind{Group:"kubeadm.k8s.io", Version:"v1beta4", Kind:"InitConfiguration"}: strict decoding error: unknown field "bootstrapToken"',
    );
  });

  test("misplaced fields: controlPlaneEndpoint in InitConfiguration, certificateKey at the top of a join", () => {
    expect(errorsOf(afterKind(v4Init, "InitConfiguration", "controlPlaneEndpoint: 10.0.0.162:8443"))).toContain(
      'unknown field "controlPlaneEndpoint"',
    );
    expect(errorsOf(afterKind(v4Join, "JoinConfiguration", `certificateKey: "${"a".repeat(64)}"`))).toContain(
      'unknown field "certificateKey"',
    );
    // Nested, with kubeadm's path; and field names are case-sensitive.
    const nested = v4Init.replace("  criSocket:", "  criSockets:");
    expect(errorsOf(nested)).toContain('unknown field "nodeRegistration.criSockets"');
    expect(errorsOf(v4Init.replace("controlPlaneEndpoint:", "ControlPlaneEndpoint:"))).toContain(
      'unknown field "ControlPlaneEndpoint"',
    );
  });

  test("v1beta4-only fields under v1beta3 and the reverse", () => {
    expect(
      errorsOf(afterKind(v3Init, "InitConfiguration", "timeouts:\n  kubeletHealthCheck: 4m0s"), "v1.30.6"),
    ).toContain('unknown field "timeouts"');
    expect(errorsOf(afterKind(v3Join, "JoinConfiguration", "dryRun: true"), "v1.30.6")).toContain(
      'unknown field "dryRun"',
    );
    expect(errorsOf(v4Init.replace("apiServer:\n", "apiServer:\n  timeoutForControlPlane: 4m0s\n"))).toContain(
      'unknown field "apiServer.timeoutForControlPlane"',
    );
    // v1beta3 takes extraArgs as a map, v1beta4 as a list of {name, value}: each refuses the other's shape.
    expect(
      errorsOf(
        v3Init.replace(
          /kubeletExtraArgs:\n\s+node-ip: \S+/,
          "kubeletExtraArgs:\n    - name: node-ip\n      value: 10.0.0.163",
        ),
        "v1.30.6",
      ),
    ).toMatch(/cannot unmarshal array into Go struct field InitConfiguration\.nodeRegistration\.kubeletExtraArgs/);
    expect(
      errorsOf(
        v4Init.replace(/kubeletExtraArgs:\n\s+- name: node-ip\n\s+value: (\S+)/, "kubeletExtraArgs:\n    node-ip: $1"),
      ),
    ).toMatch(/cannot unmarshal object into Go struct field InitConfiguration\.nodeRegistration\.kubeletExtraArgs/);
    // kubeadm 1.30 does not know v1beta4 at all.
    expect(errorsOf(v4Init, "v1.30.6")).toContain(
      'no kind "InitConfiguration" is registered for version "kubeadm.k8s.io/v1beta4"',
    );
  });

  test("a wrong kind, a missing apiVersion, an old API version, a kind twice, a kind the command does not read", () => {
    expect(errorsOf(v4Init.replace("kind: InitConfiguration", "kind: InitConfig"))).toContain(
      'no kind "InitConfig" is registered',
    );
    expect(
      errorsOf(
        v4Init.replace("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration", "kind: ClusterConfiguration"),
      ),
    ).toContain("kind and apiVersion is mandatory");
    expect(errorsOf(v4Init.replaceAll("kubeadm.k8s.io/v1beta4", "kubeadm.k8s.io/v1beta2"))).toContain("old API spec");
    expect(errorsOf(`${v4Join}---\n${v4Join}`, "v1.31.4", "join")).toContain(
      'kind "JoinConfiguration" is specified twice',
    );
    expect(errorsOf(`${v4Init}---\n${v4Join}`, "v1.31.4", "init")).toContain("Ignored YAML document");
    expect(errorsOf(v4Init, "v1.31.4", "join")).toContain("Ignored YAML document");
    expect(errorsOf("apiVersion: v1\nkind: ConfigMap\n")).toContain('no kind "ConfigMap"');
  });

  test("KubeletConfiguration: unknown top-level fields and fields newer than the minor are refused", () => {
    expect(errorsOf(v4Init.replace("cgroupDriver: systemd", "cgroupDriver: systemd\nfailSwapOff: false"))).toContain(
      'unknown field "failSwapOff"',
    );
    const cgroupV1 = v4Init.replace("cgroupDriver: systemd", "cgroupDriver: systemd\nfailCgroupV1: false");
    expect(errorsOf(cgroupV1, "v1.31.4")).toBe("");
    expect(
      errorsOf(
        cgroupV1
          .replaceAll("v1beta4", "v1beta3")
          .replace(/kubeletExtraArgs:\n\s+- name: node-ip\n\s+value: (\S+)/, "kubeletExtraArgs:\n    node-ip: $1"),
        "v1.30.6",
      ),
    ).toContain('unknown field "failCgroupV1"');
    expect(errorsOf(v4Init.replace("cgroupDriver: systemd", "cgroupDriver: system"))).toContain("cgroupDriver");
  });

  test("decode and validation errors: the unfilled token placeholder, wrong types, bad durations, bad values", () => {
    expect(errorsOf(renderInitConfig(spec("1.31.4"), ctx))).toContain(
      'the bootstrap token "__BOOT..." was not of the form',
    );
    expect(errorsOf(v4Init.replace("bindPort: 6443", 'bindPort: "6443"'))).toContain(
      "cannot unmarshal string into Go struct field InitConfiguration.localAPIEndpoint.bindPort of type int32",
    );
    expect(errorsOf(v4Init.replace("ttl: 1h0m0s", "ttl: 3600"))).toContain("cannot unmarshal number");
    expect(errorsOf(v4Init.replace("ttl: 1h0m0s", "ttl: 1 hour"))).toContain('time: invalid duration "1 hour"');
    expect(errorsOf(v4Init.replace("podSubnet: 10.244.0.0/16", "podSubnet: 10.244.0.0"))).toContain(
      "couldn't parse subnet",
    );
    expect(errorsOf(v4Init.replace("kubernetesVersion: v1.31.4", "kubernetesVersion: v1.29.0"))).toContain(
      "only supports deploying clusters with the control plane version >= 1.30.0",
    );
    expect(errorsOf(v4Join.replace(/ {4}caCertHashes:\n {6}- \S+\n/, ""), "v1.31.4", "join")).toContain(
      "without caCertHashes",
    );
    expect(checkKubeadmConfig(v4Init, "v1.29.0", "init").errors[0]).toContain("models kubeadm 1.30 and later");
  });
});

describe("preflight: binaries kubeadm treats as mandatory for the minor, and swap", () => {
  const all = (except: string[]) => (bin: string) => (except.includes(bin) ? null : `/usr/bin/${bin}`);
  const fatal = (minor: number, missing: string[]) =>
    preflightFindings(minor, all(missing), "/nonexistent")
      .filter((f) => f.fatal)
      .map((f) => f.check);

  test("conntrack is mandatory below 1.32; crictl up to 1.30, a warning in 1.31, not checked from 1.32", () => {
    expect(fatal(31, ["conntrack"])).toEqual(["FileExisting-conntrack"]);
    expect(fatal(32, ["conntrack"])).toEqual([]);
    expect(fatal(30, ["crictl"])).toEqual(["FileExisting-crictl"]);
    expect(preflightFindings(31, all(["crictl"]), "/nonexistent")).toEqual([
      { check: "FileExisting-crictl", message: "crictl not found in system path", fatal: false },
    ]);
    expect(preflightFindings(32, all(["crictl"]), "/nonexistent")).toEqual([]);
    for (const bin of ["ip", "iptables", "mount", "nsenter"]) expect(fatal(33, [bin])).toEqual([`FileExisting-${bin}`]);
    for (const bin of ["socat", "ethtool", "ebtables", "tc", "touch"]) expect(fatal(31, [bin])).toEqual([]);
  });

  test("--ignore-preflight-errors and nodeRegistration.ignorePreflightErrors, case-insensitive, 'all' alone", () => {
    const found = preflightFindings(31, all(["conntrack", "socat"]), "/nonexistent");
    const refused = report(found, ignoreSet([], undefined) as Set<string>);
    expect(refused.fatal).toBe(true);
    expect(refused.lines).toContain("\t[ERROR FileExisting-conntrack]: conntrack not found in system path");
    expect(refused.lines).toContain("\t[WARNING FileExisting-socat]: socat not found in system path");
    expect(report(found, ignoreSet(["FileExisting-Conntrack"], undefined) as Set<string>).fatal).toBe(false);
    expect(report(found, ignoreSet([], ["fileexisting-conntrack"]) as Set<string>).fatal).toBe(false);
    expect(report(found, ignoreSet(["all"], undefined) as Set<string>).fatal).toBe(false);
    expect(report(found, ignoreSet(["Swap,foo"], undefined) as Set<string>).fatal).toBe(true);
    expect(ignoreSet(["all,Swap"], undefined)).toContain("don't specify individual checks if 'all' is used");
  });

  test("the command line looks in PATH as kubeadm does: a missing conntrack stops 1.31, not 1.32", () => {
    const bin = join(work, "bin");
    mkdirSync(bin, { recursive: true });
    for (const b of ["crictl", "ip", "iptables", "mount", "nsenter", "ebtables", "ethtool", "socat", "tc", "touch"]) {
      writeFileSync(join(bin, b), "#!/bin/sh\n");
      chmodSync(join(bin, b), 0o755);
    }
    const preflight = (version: string, ...ignore: string[]) =>
      run([process.execPath, join(STANDINS, "kubeadm-api.ts"), "preflight", version, "-", ...ignore], undefined, {
        PATH: bin,
      });
    const r = preflight("v1.31.4");
    expect(r.code).not.toBe(0);
    expect(r.err).toContain("[ERROR FileExisting-conntrack]: conntrack not found in system path");
    expect(r.err).toContain("--ignore-preflight-errors=...");
    expect(preflight("v1.31.4", "FileExisting-conntrack").code).toBe(0);
    expect(preflight("v1.32.0").code).toBe(0);
  });

  test("swap: a warning in preflight; the kubelet then refuses unless failSwapOn is false", () => {
    const swaps = join(work, "swaps");
    writeFileSync(swaps, "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n");
    expect(kubeletStartProblem(undefined, swaps)).toBeUndefined();
    writeFileSync(swaps, "Filename\tType\tSize\tUsed\tPriority\n/swapfile\tfile\t1048572\t0\t-2\n", { flag: "w" });
    const found = preflightFindings(31, () => "/usr/bin/x", swaps);
    expect(found.map((f) => [f.check, f.fatal])).toEqual([["Swap", false]]);
    expect(kubeletStartProblem(undefined, swaps)).toContain("running with swap on is not supported");
    expect(kubeletStartProblem({ cgroupDriver: "systemd" }, swaps)).toContain("failSwapOn: false");
    expect(kubeletStartProblem({ failSwapOn: false }, swaps)).toBeUndefined();
  });
});

describe.skipIf(!requireTool("etcd"))("check-etcd against a real etcd on loopback", () => {
  const port = 23000 + Math.floor(Math.random() * 2000);
  const url = `http://127.0.0.1:${port}`;
  let etcd: ReturnType<typeof Bun.spawn> | undefined;
  beforeAll(async () => {
    etcd = Bun.spawn(
      [
        "etcd",
        "--name",
        "lab",
        "--data-dir",
        join(work, "etcd"),
        "--listen-client-urls",
        url,
        "--advertise-client-urls",
        url,
        "--listen-peer-urls",
        `http://127.0.0.1:${port + 1}`,
        "--initial-advertise-peer-urls",
        `http://127.0.0.1:${port + 1}`,
        "--initial-cluster",
        `lab=http://127.0.0.1:${port + 1}`,
      ],
      { stdout: "ignore", stderr: "ignore" },
    );
    for (let i = 0; i < 100; i++) {
      if (!(await clusterStatusProblem([{ name: "lab", clientURLs: [url] }], undefined, 200))) return;
      await Bun.sleep(100);
    }
    throw new Error("the test etcd did not start");
  }, 30_000);
  afterAll(() => etcd?.kill());

  test("a healthy member passes; a listed member that does not answer fails the join after the timeout", async () => {
    expect(await clusterStatusProblem([{ name: "lab", clientURLs: [url] }], undefined, 2000)).toBeUndefined();
    // added but not started: not an endpoint yet for check-etcd, but the wait after a join needs it
    const unstarted = { name: "", clientURLs: [], peerURLs: ["http://127.0.0.1:9"] };
    expect(
      await clusterStatusProblem([{ name: "lab", clientURLs: [url] }, unstarted], undefined, 2000),
    ).toBeUndefined();
    expect(await clusterStatusProblem([unstarted], undefined, 2000, true)).toContain("has not started");
    const t0 = Date.now();
    const dead = await clusterStatusProblem(
      [
        { name: "lab", clientURLs: [url] },
        { name: "gone", clientURLs: ["http://127.0.0.1:9"] },
      ],
      undefined,
      1500,
    );
    expect(dead).toContain("http://127.0.0.1:9 (member gone)");
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1500);
  }, 30_000);
});
