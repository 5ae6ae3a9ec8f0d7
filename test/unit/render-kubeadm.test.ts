// kubeadm configs and the init/CNI/join steps (with each join's token runs): every YAML document
// parsed and checked, the CA hash compared with openssl's, scripts shellchecked, and
// the secret substitution, redaction and version checks run for real in bash.
import { describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { cniStep, defaultCniManifest, initStep, joinStep, KUBEADM_FUNCTIONS } from "../../lib/render/kube-phases.ts";
import {
  apiServerArgs,
  caCertHashFromPem,
  type KubeadmContext,
  renderInitConfig,
  renderJoinConfig,
  renderJoinTokenConfig,
} from "../../lib/render/kubeadm.ts";
import { COMMON_FUNCTIONS } from "../../lib/render/prepare.ts";
import { parseSpec } from "../../lib/spec/load.ts";
import type { ClusterSpec } from "../../lib/spec/schema.ts";
import { requireIsolation, requireTool, run, selfSignedCert } from "./tool-helpers.ts";

const exampleText = readFileSync(join(import.meta.dir, "../../cluster.example.yaml"), "utf8");
function spec(mutate: (s: ClusterSpec) => void = () => {}): ClusterSpec {
  const s = parseSpec(exampleText);
  mutate(s);
  return s;
}

// A throwaway CA made by openssl, so the hash is checked against an independent computation.
const work = mkdtempSync(join(tmpdir(), "kha-kubeadm-"));
const caKeyPath = join(work, "ca.key");
const caCertPath = join(work, "ca.crt");
const caCertPem = selfSignedCert({ certPath: caCertPath, keyPath: caKeyPath, cn: "kubernetes", days: 2 }).cert;
const ctx: KubeadmContext = { caCertPem, caCertHash: caCertHashFromPem(caCertPem) };

/** Values shaped like real secrets, used only where a test substitutes them on purpose. */
const TOKEN = "abcdef.0123456789abcdef";
const KEY = "a".repeat(16) + "0123456789abcdef".repeat(3);

type Doc = any;
const docs = (text: string): Doc[] =>
  parseAllDocuments(text).map((d) => {
    expect(d.errors).toEqual([]);
    return d.toJS();
  });
const byKind = (list: Doc[], kind: string): Doc => {
  const found = list.filter((d) => d.kind === kind);
  expect(found.length).toBe(1);
  return found[0];
};

/** Strings shaped like a bootstrap token or a certificate key (64 hex digits outside the sha256: hash). */
function realLookingSecrets(text: string): string[] {
  const tokens = text.match(/\b[a-z0-9]{6}\.[a-z0-9]{16}\b/g) ?? [];
  // CA pins (sha256:...) and the CNI manifest's pinned checksum (WANT_SHA256='...') are public.
  const keys = (text.replace(/sha256:[0-9a-f]{64}|WANT_SHA256='[0-9a-f]{64}'/g, "").match(/\b[0-9a-f]{64}\b/g) ??
    []) as string[];
  return [...tokens, ...keys];
}

describe("CA hash", () => {
  test("equals openssl's sha256 of the DER SubjectPublicKeyInfo", () => {
    const r = run([
      "bash",
      "-c",
      `openssl x509 -in "$1" -pubkey -noout | openssl pkey -pubin -outform der | sha256sum | cut -d' ' -f1`,
      "x",
      caCertPath,
    ]);
    expect(r.code).toBe(0);
    expect(ctx.caCertHash).toBe(`sha256:${r.out.trim()}`);
  });

  test("a context whose hash does not belong to its certificate is refused", () => {
    const wrong = { caCertPem, caCertHash: `sha256:${"0".repeat(64)}` };
    expect(() => renderInitConfig(spec(), wrong)).toThrow(/does not match/);
    expect(() => renderJoinConfig(spec(), spec().nodes[3]!, wrong)).toThrow(/does not match/);
  });
});

describe("init configuration", () => {
  const s = spec();
  const list = docs(renderInitConfig(s, ctx));

  test("three documents: Init, Cluster and Kubelet configuration", () => {
    expect(list.map((d) => d.kind)).toEqual(["InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"]);
    expect(byKind(list, "KubeletConfiguration")).toEqual({
      apiVersion: "kubelet.config.k8s.io/v1beta1",
      kind: "KubeletConfiguration",
      cgroupDriver: "systemd",
    });
  });

  test("ClusterConfiguration: endpoint through the VIP, version, subnets, etcd data dir, SANs", () => {
    const cluster = byKind(list, "ClusterConfiguration");
    expect(cluster.apiVersion).toBe("kubeadm.k8s.io/v1beta4");
    expect(cluster.controlPlaneEndpoint).toBe("10.0.0.162:8443");
    expect(cluster.kubernetesVersion).toBe("v1.31.4");
    expect(cluster.networking).toEqual({
      podSubnet: "10.244.0.0/16",
      serviceSubnet: "10.96.0.0/12",
      dnsDomain: "cluster.local",
    });
    expect(cluster.etcd).toEqual({ local: { dataDir: "/var/lib/etcd" } });
    expect(cluster.apiServer.certSANs).toEqual(["10.0.0.162", "10.0.0.163", "10.0.0.164", "10.0.0.165"]);
  });

  test("kube-apiserver keeps serving after SIGTERM until every haproxy's checks have taken it out", () => {
    // fall 2 x inter 500ms = 1 s to be marked down, + 2 s: 3 s; more for slower checks.
    expect(byKind(list, "ClusterConfiguration").apiServer.extraArgs).toEqual([
      { name: "shutdown-delay-duration", value: "3s" },
    ]);
    const slow = spec((x) => {
      x.loadBalancer.haproxy.healthCheck.interval = "2s";
      x.loadBalancer.haproxy.healthCheck.fall = 3;
    });
    expect(apiServerArgs(slow)).toEqual({ "shutdown-delay-duration": "8s" });
    const v3 = byKind(
      docs(
        renderInitConfig(
          spec((x) => (x.kubernetes.version = "1.30.8")),
          ctx,
        ),
      ),
      "ClusterConfiguration",
    );
    expect(v3.apiServer.extraArgs).toEqual({ "shutdown-delay-duration": "3s" });
  });

  test("InitConfiguration: first control plane's endpoint and name, a placeholder for a short-lived token, no certificate key", () => {
    const init = byKind(list, "InitConfiguration");
    expect(init.localAPIEndpoint).toEqual({ advertiseAddress: "10.0.0.163", bindPort: 6443 });
    expect(init.nodeRegistration.name).toBe("cp-1");
    expect(init.nodeRegistration.criSocket).toBe("unix:///run/containerd/containerd.sock");
    // v1beta4: extra arguments are a list of {name, value}.
    expect(init.nodeRegistration.kubeletExtraArgs).toEqual([{ name: "node-ip", value: "10.0.0.163" }]);
    expect(init.bootstrapTokens[0].token).toBe("__BOOTSTRAP_TOKEN__");
    expect(init.bootstrapTokens[0].ttl).toBe("1h0m0s");
    // init uploads no certificates: every control-plane join uploads them with its own key
    expect(init.certificateKey).toBeUndefined();
    expect(realLookingSecrets(renderInitConfig(s, ctx))).toEqual([]);
  });

  test("spec values flow through: dnsDomain, subnets, etcd dataDir, endpoint port", () => {
    const other = spec((x) => {
      x.networking.dnsDomain = "corp.internal";
      x.networking.podSubnet = "172.20.0.0/16";
      x.networking.serviceSubnet = "172.21.0.0/16";
      x.etcd.dataDir = "/data/etcd";
      x.controlPlaneEndpoint.port = 9443;
    });
    const cluster = byKind(docs(renderInitConfig(other, ctx)), "ClusterConfiguration");
    expect(cluster.networking).toEqual({
      podSubnet: "172.20.0.0/16",
      serviceSubnet: "172.21.0.0/16",
      dnsDomain: "corp.internal",
    });
    expect(cluster.etcd.local.dataDir).toBe("/data/etcd");
    expect(cluster.controlPlaneEndpoint).toBe("10.0.0.162:9443");
  });

  test("Kubernetes 1.30 gets v1beta3 with map-shaped extra arguments", () => {
    const old = docs(
      renderInitConfig(
        spec((x) => (x.kubernetes.version = "1.30.8")),
        ctx,
      ),
    );
    for (const d of old.slice(0, 2)) expect(d.apiVersion).toBe("kubeadm.k8s.io/v1beta3");
    expect(byKind(old, "InitConfiguration").nodeRegistration.kubeletExtraArgs).toEqual({ "node-ip": "10.0.0.163" });
    const join = docs(
      renderJoinConfig(
        spec((x) => (x.kubernetes.version = "1.30.8")),
        spec().nodes[3]!,
        ctx,
      ),
    )[0];
    expect(join.apiVersion).toBe("kubeadm.k8s.io/v1beta3");
    expect(
      docs(
        renderInitConfig(
          spec((x) => (x.kubernetes.version = "1.33.1")),
          ctx,
        ),
      )[0].apiVersion,
    ).toBe("kubeadm.k8s.io/v1beta4");
  });
});

describe("join configuration", () => {
  const s = spec();

  test("worker: discovery through the VIP pinned to the CA hash, no control-plane section", () => {
    const text = renderJoinConfig(s, s.nodes[3]!, ctx);
    const [join, ...rest] = docs(text);
    expect(rest).toEqual([]);
    expect(join.kind).toBe("JoinConfiguration");
    expect(join.apiVersion).toBe("kubeadm.k8s.io/v1beta4");
    expect(join.discovery.bootstrapToken).toEqual({
      apiServerEndpoint: "10.0.0.162:8443",
      token: "__BOOTSTRAP_TOKEN__",
      caCertHashes: [ctx.caCertHash],
    });
    expect(join.nodeRegistration.name).toBe("worker-1");
    expect(join.nodeRegistration.kubeletExtraArgs).toEqual([{ name: "node-ip", value: "10.0.0.166" }]);
    expect(join.controlPlane).toBeUndefined();
    expect(text).not.toMatch(/unsafe/i);
    expect(realLookingSecrets(text)).toEqual([]);
  });

  test("control plane: its own local endpoint and the certificate key placeholder", () => {
    const join = docs(renderJoinConfig(s, s.nodes[2]!, ctx))[0];
    expect(join.controlPlane).toEqual({
      localAPIEndpoint: { advertiseAddress: "10.0.0.165", bindPort: 6443 },
      certificateKey: "__CERTIFICATE_KEY__",
    });
    expect(join.discovery.bootstrapToken.caCertHashes).toEqual([ctx.caCertHash]);
    // The first control plane has one too, for when it is replaced and joins the running cluster.
    expect(docs(renderJoinConfig(s, s.nodes[0]!, ctx))[0].controlPlane.localAPIEndpoint.advertiseAddress).toBe(
      s.nodes[0]!.address,
    );
  });
});

describe("steps", () => {
  const s = spec();
  const all = [
    initStep(s, ctx),
    cniStep(s),
    joinStep(s, s.nodes[1]!, ctx),
    joinStep(s, s.nodes[2]!, ctx),
    joinStep(s, s.nodes[3]!, ctx),
  ];
  const runs = all.flatMap((st) => [st.before, st, st.after].filter((r) => r !== undefined));

  test.skipIf(!requireTool("shellcheck"))("every script is shellcheck-clean", () => {
    for (const r of runs) {
      const out = run(["shellcheck", "-s", "bash", "-"], r.script);
      expect(`${r.node.name}: ${out.out}${out.err}`).toBe(`${r.node.name}: `);
    }
  });

  test("no secret, no CA skip, configs under /etc/kubeadm-ha in files and scripts", () => {
    for (const step of runs) {
      const everything = step.script + step.files.map((f) => f.content).join("\n");
      expect(everything).not.toMatch(/unsafe/i);
      expect(everything).not.toContain("--discovery-token-unsafe-skip-ca-verification");
      expect(realLookingSecrets(everything)).toEqual([]);
      for (const f of step.files) expect(f.path.startsWith("/etc/kubeadm-ha/")).toBe(true);
    }
    expect(readFileSync(caKeyPath, "utf8").length).toBeGreaterThan(0);
    for (const step of runs) expect(step.script).not.toContain(readFileSync(caKeyPath, "utf8").split("\n")[1]!);
  });

  test("init: first control plane, CA installed from the stage before init, waits on the VIP, deletes its token", () => {
    const init = all[0]!;
    expect(init.node.name).toBe("cp-1");
    expect(init.phase).toBe("init");
    expect(init.secrets).toEqual(["bootstrap-token", "certificate-key", "ca-key"]);
    expect(init.files.map((f) => [f.path, f.mode])).toEqual([
      ["/etc/kubeadm-ha/kubeadm-init.yaml", "0600"],
      ["/etc/kubeadm-ha/kubeadm-join.yaml", "0600"],
      ["/etc/kubeadm-ha/pki/ca.crt", "0644"],
    ]);
    expect(init.files[2]!.content.trim()).toBe(caCertPem.trim());
    // Replacing the first control plane: material minted on the join-via control plane when a cluster runs there.
    expect(init.joinVia).toBe("reads");
    expect(init.before!.joinVia).toBe("runs-there");
    expect(init.before!.script).toContain("no cluster runs here yet");
    expect(init.after!.script).toContain("token_exists");
    const sc = init.script;
    expect(sc).toMatch(/kubeadm init --config "\$config" --skip-token-print/);
    expect(sc).not.toContain("--upload-certs");
    expect(sc.indexOf('install -m 0600 "$STAGE/secrets/ca-key" /etc/kubernetes/pki/ca.key')).toBeGreaterThan(0);
    expect(sc.lastIndexOf("delete_round_token")).toBeGreaterThan(sc.indexOf("kubeadm init --config"));
    expect(sc.indexOf("/etc/kubernetes/pki/ca.key")).toBeLessThan(sc.indexOf("kubeadm init --config"));
    expect(sc).toContain("'https://10.0.0.162:8443/readyz'");
    expect(sc).toContain("already initialized, kubeadm settings are not re-applied to a running cluster");
    expect(sc).toContain("kubeadm upgrade");
  });

  test("each join mints its material on the join-via control plane before, and deletes it after", () => {
    const [cp2, w1] = [all[2]!, all[4]!];
    for (const j of [cp2, w1]) {
      // The first control plane unless node:replace names another (Terraform's join_via).
      expect(j.before!.node.name).toBe("cp-1");
      expect(j.after!.node.name).toBe("cp-1");
      expect([j.before!.joinVia, j.after!.joinVia]).toEqual(["runs-there", "runs-there"]);
      expect(j.before!.files).toEqual([]);
      expect(j.before!.script).toContain(
        'kubeadm token create --config "$config" --kubeconfig "$ADMIN_CONF" >/dev/null',
      );
      expect(j.after!.script).toContain("delete_round_token");
      expect(j.after!.secrets).toEqual(["bootstrap-token"]);
    }
    expect(cp2.before!.secrets).toEqual(["bootstrap-token", "certificate-key"]);
    expect(cp2.before!.script).toContain(
      'kubeadm init phase upload-certs --upload-certs --config "$config" 2>&1 | redact_secrets',
    );
    expect(cp2.after!.script).toContain("delete secret kubeadm-certs");
    expect(w1.before!.secrets).toEqual(["bootstrap-token"]);
    expect(w1.before!.script).not.toContain("upload-certs");
    expect(w1.after!.script).not.toContain("kubeadm-certs");
    expect(renderJoinTokenConfig(s, true)).toContain("certificateKey: __CERTIFICATE_KEY__");
    expect(renderJoinTokenConfig(s, false)).not.toContain("certificateKey");
  });

  test("joins: control planes wait for their own API server, workers do not; secrets per role", () => {
    const [cp2, cp3, w1] = [all[2]!, all[3]!, all[4]!];
    expect(cp2.secrets).toEqual(["bootstrap-token", "certificate-key"]);
    expect(w1.secrets).toEqual(["bootstrap-token"]);
    for (const j of [cp2, cp3, w1]) {
      expect(j.phase).toBe("join");
      expect(j.script).toContain('kubeadm join --config "$config"');
      expect(j.files[0]!.path).toBe("/etc/kubeadm-ha/kubeadm-join.yaml");
    }
    expect(cp2.script).toContain("https://127.0.0.1:6443/readyz");
    expect(w1.script).not.toContain("https://127.0.0.1:6443/readyz");
  });

  test("CNI: pinned default per minor with its sha256, user manifest and none (validation refuses what a default cannot serve)", () => {
    const calico = defaultCniManifest(s)!;
    expect(cniStep(s).script).toContain(`MANIFEST='${calico.manifest}'`);
    expect(cniStep(s).script).toContain(`WANT_SHA256='${calico.sha256}'`);
    expect(cniStep(s).script).toContain('apply --server-side --force-conflicts -f "$file"');
    expect(calico.manifest).toMatch(/\/v\d+\.\d+\.\d+\//);
    expect(calico.sha256).toMatch(/^[0-9a-f]{64}$/);
    const custom = cniStep(spec((x) => (x.networking.cni = { name: "cilium", manifest: "/root/cilium.yaml" })));
    expect(custom.script).toContain("MANIFEST='/root/cilium.yaml'");
    const none = cniStep(spec((x) => (x.networking.cni = { name: "none" })));
    expect(none.script).not.toContain("apply --server-side");
    expect(none.script).toContain("networking.cni.name is none");
    const flannel = spec((x) => (x.networking.cni = { name: "flannel" }));
    expect(cniStep(flannel).script).toContain(defaultCniManifest(flannel)!.manifest);
  });
});

describe("kubeadm bash functions, run for real", () => {
  /** Sources the helpers with a stand-in for the frame (secret, die, step) and secrets in a temp dir. */
  function bash(body: string, secrets: Record<string, string>, env: Record<string, string> = {}, stdin?: string) {
    const dir = mkdtempSync(join(work, "secrets-"));
    for (const [name, value] of Object.entries(secrets)) writeFileSync(join(dir, name), `${value}\n`, { mode: 0o600 });
    const script = `set -euo pipefail
NODE=n1 PHASE=test SECRETS_DIR=${JSON.stringify(dir)} KUBE_VERSION=1.31.4
die() { printf 'DIE: %s\\n' "$*" >&2; exit 1; }
step() { printf 'STEP: %s\\n' "$*"; }
secret() { cat "$SECRETS_DIR/$1"; }
${COMMON_FUNCTIONS}
${KUBEADM_FUNCTIONS}
${body}`;
    return run(["bash", "-c", script], stdin, env);
  }

  test("fill_secrets writes a 0600 copy with token and key filled in and parses as the same YAML", () => {
    const src = join(work, "init.yaml");
    writeFileSync(src, renderJoinTokenConfig(spec(), true));
    const dest = join(work, "filled.yaml");
    const r2 = bash(
      `config=""; make_private_tmp config; fill_secrets ${JSON.stringify(src)} "$config"; cp "$config" ${JSON.stringify(dest)}; stat -c %a "$config"; printf '%s\\n' "$config"`,
      { "bootstrap-token": TOKEN, "certificate-key": KEY },
    );
    expect(r2.err).toBe("");
    expect(r2.code).toBe(0);
    const [mode, tmpPath] = r2.out.trim().split("\n");
    expect(mode).toBe("600");
    // The temporary copy is gone once the script ends (removed by the exit trap).
    expect(existsSync(tmpPath!)).toBe(false);
    const filled = docs(readFileSync(dest, "utf8"));
    const init = byKind(filled, "InitConfiguration");
    expect(init.bootstrapTokens[0].token).toBe(TOKEN);
    expect(init.certificateKey).toBe(KEY);
    expect(readFileSync(dest, "utf8")).not.toContain("__");
    const original = docs(readFileSync(src, "utf8"));
    expect(byKind(filled, "ClusterConfiguration")).toEqual(byKind(original, "ClusterConfiguration"));
  });

  test("fill_secrets refuses a malformed secret without printing it", () => {
    const src = join(work, "join.yaml");
    writeFileSync(src, renderJoinConfig(spec(), spec().nodes[3]!, ctx));
    const bad = "NOT-A-TOKEN-but-secret-ish";
    const r = bash(`config=""; make_private_tmp config; fill_secrets ${JSON.stringify(src)} "$config"; echo filled`, {
      "bootstrap-token": bad,
    });
    expect(r.code).toBe(1);
    expect(r.out).not.toContain("filled");
    expect(r.err).toContain("secret bootstrap-token is not a valid bootstrap token");
    expect(r.out + r.err).not.toContain(bad);
  });

  test("redact_secrets masks the token and the key in kubeadm's output", () => {
    const output = `Your Kubernetes control-plane has initialized successfully!
  kubeadm join 10.0.0.162:8443 --token ${TOKEN} \\
	--discovery-token-ca-cert-hash ${ctx.caCertHash} \\
	--control-plane --certificate-key ${KEY}
[upload-certs] Using certificate key:
${KEY}`;
    const r = bash("redact_secrets", { "bootstrap-token": TOKEN, "certificate-key": KEY }, {}, output);
    expect(r.code).toBe(0);
    expect(r.out).not.toContain(TOKEN);
    expect(r.out).not.toContain(KEY);
    expect(r.out).toContain("--token <bootstrap-token>");
    expect(r.out).toContain("--certificate-key <certificate-key>");
    expect(r.out).toContain(ctx.caCertHash);
    expect(r.out.split("\n").length).toBe(output.split("\n").length + 1);
  });

  test("server_git_version reads serverVersion, not clientVersion, from pretty or compact JSON", () => {
    const pretty = JSON.stringify(
      {
        clientVersion: { major: "1", minor: "32", gitVersion: "v1.32.0", platform: "linux/amd64" },
        kustomizeVersion: "v5.4.2",
        serverVersion: { major: "1", minor: "31", gitVersion: "v1.31.4", platform: "linux/amd64" },
      },
      null,
      2,
    );
    expect(bash("server_git_version", {}, {}, pretty).out).toBe("v1.31.4");
    expect(bash("server_git_version", {}, {}, JSON.stringify(JSON.parse(pretty))).out).toBe("v1.31.4");
    const clientOnly = JSON.stringify({ clientVersion: { gitVersion: "v1.31.4" } });
    expect(bash("server_git_version", {}, {}, clientOnly).out).toBe("");
  });

  test("check_running_version: same version passes, another dies naming both and kubeadm upgrade", () => {
    const bin = mkdtempSync(join(work, "bin-"));
    const stub = (server: string) => {
      writeFileSync(
        join(bin, "kubectl"),
        `#!/bin/sh\necho '{"clientVersion":{"gitVersion":"v1.31.4"},"serverVersion":{"gitVersion":"${server}"}}'\n`,
      );
      chmodSync(join(bin, "kubectl"), 0o755);
    };
    const env = { PATH: `${bin}:${process.env.PATH}` };
    stub("v1.31.4");
    const same = bash(`check_running_version "this node is already initialized" /nowhere strict; echo ok`, {}, env);
    expect(same.out).toContain("ok");
    stub("v1.30.2");
    const other = bash(`check_running_version "this node is already initialized" /nowhere strict; echo ok`, {}, env);
    expect(other.code).toBe(1);
    expect(other.out).not.toContain("ok");
    expect(other.err).toContain("runs Kubernetes v1.30.2, but kubernetes.version is 1.31.4");
    expect(other.err).toContain("kubeadm upgrade");
  });

  test("running_version falls back to the apiserver manifest's image tag when the API does not answer", () => {
    const bin = mkdtempSync(join(work, "bin-"));
    writeFileSync(join(bin, "kubectl"), '#!/bin/sh\necho \'{"clientVersion":{"gitVersion":"v1.31.4"}}\'\nexit 1\n');
    chmodSync(join(bin, "kubectl"), 0o755);
    const manifest = join(work, "kube-apiserver.yaml");
    writeFileSync(
      manifest,
      "spec:\n  containers:\n  - command: [kube-apiserver]\n    image: registry.k8s.io/kube-apiserver:v1.31.2\n",
    );
    const r = bash(
      `APISERVER_MANIFEST=${JSON.stringify(manifest)}; running_version /nowhere`,
      {},
      { PATH: `${bin}:${process.env.PATH}` },
    );
    expect(r.out).toBe("v1.31.2");
    const none = bash(
      `APISERVER_MANIFEST=/nowhere; check_running_version "this node has already joined" /nowhere lenient; echo went-on`,
      {},
      {
        PATH: `${bin}:${process.env.PATH}`,
      },
    );
    expect(none.out).toContain("went-on");
    expect(none.err).toContain("WARNING");
  });

  test("wait_healthz gives up after its bound with a message naming what did not answer", () => {
    const bin = mkdtempSync(join(work, "bin-"));
    writeFileSync(join(bin, "curl"), "#!/bin/sh\nexit 7\n");
    writeFileSync(join(bin, "sleep"), "#!/bin/sh\nexit 0\n");
    chmodSync(join(bin, "curl"), 0o755);
    chmodSync(join(bin, "sleep"), 0o755);
    const started = Date.now();
    const r = bash(
      `wait_healthz https://127.0.0.1:6443/healthz 1 "this node's API server"`,
      {},
      { PATH: `${bin}:${process.env.PATH}` },
    );
    expect(Date.now() - started).toBeLessThan(5000);
    expect(r.code).toBe(1);
    expect(r.err).toContain("this node's API server did not answer https://127.0.0.1:6443/healthz within 1s");
  });
});

describe("whole scripts against stand-in kubeadm/kubectl/curl (private mount namespace, overlay on /etc)", () => {
  const isolated = requireIsolation();

  /** A host's /etc as an overlay upper dir that persists across runs of one test. */
  function host() {
    const dir = mkdtempSync(join(work, "host-"));
    for (const d of ["upper", "work", "capture", "bin"]) run(["mkdir", "-p", join(dir, d)]);
    const stubs: Record<string, string> = {
      // Records its arguments, keeps a copy of the config it was given, acts like kubeadm on disk, and echoes
      // the secrets the way kubeadm init prints join commands.
      kubeadm: `#!/bin/bash
set -eu
echo "$*" >>"$CAPTURE/kubeadm.log"
cfg=""; prev=""
for a in "$@"; do [ "$prev" = --config ] && cfg="$a"; prev="$a"; done
if [ "$1" = config ] && [ -n "\${REFUSE_CONFIG:-}" ]; then echo 'strict decoding error: unknown field "foo"' >&2; exit 1; fi
if [ -n "$cfg" ]; then cp "$cfg" "$CAPTURE/$1.yaml"; echo "$cfg" >"$CAPTURE/$1.path"; fi
token="$(sed -n 's/^[ -]*token: //p' "$cfg" | head -n 1)"
key="$(sed -n 's/^ *certificateKey: //p' "$cfg" | head -n 1)"
mkdir -p /etc/kubernetes/manifests
case "$1" in
  init) touch /etc/kubernetes/admin.conf /etc/kubernetes/kubelet.conf
        printf 'spec:\\n  containers:\\n  - image: registry.k8s.io/kube-apiserver:v1.31.4\\n' >/etc/kubernetes/manifests/kube-apiserver.yaml ;;
  join) touch /etc/kubernetes/kubelet.conf ;;
esac
echo "kubeadm join 10.0.0.162:8443 --token $token --control-plane --certificate-key $key"
`,
      kubectl: `#!/bin/sh\necho '{"clientVersion":{"gitVersion":"v1.31.4"},"serverVersion":{"gitVersion":"'"$SERVER_VERSION"'"}}'\n`,
      // Init's CA-pinned check finds no cluster unless CLUSTER_ELSEWHERE (another control plane serves one).
      curl: '#!/bin/sh\ncase "$*" in *--cacert*) [ -n "${CLUSTER_ELSEWHERE:-}" ] || exit 7 ;; esac\nexit 0\n',
    };
    for (const [name, text] of Object.entries(stubs)) {
      writeFileSync(join(dir, "bin", name), text);
      chmodSync(join(dir, "bin", name), 0o755);
    }
    return {
      dir,
      upper: join(dir, "upper"),
      capture: join(dir, "capture"),
      /** Stage a step the way the constructs upload it, then run it as root with /etc overlaid. */
      run(
        step: { files: { path: string; content: string; mode: string }[]; secrets: string[]; script: string },
        serverVersion = "v1.31.4",
        env: Record<string, string> = {},
        joinVia?: string,
      ) {
        const stage = mkdtempSync(join(work, "stage-"));
        if (joinVia) writeFileSync(join(stage, "join-via"), joinVia);
        for (const f of step.files) {
          run(["mkdir", "-p", join(stage, "root", f.path, "..")]);
          writeFileSync(join(stage, "root", f.path), f.content);
        }
        run(["mkdir", "-p", join(stage, "secrets")]);
        const values: Record<string, string> = {
          "bootstrap-token": TOKEN,
          "certificate-key": KEY,
          "ca-key": readFileSync(caKeyPath, "utf8"),
        };
        for (const s of step.secrets) writeFileSync(join(stage, "secrets", s), values[s]!, { mode: 0o600 });
        writeFileSync(join(stage, "run.sh"), step.script);
        const inner = `mount -t overlay overlay -o lowerdir=/etc,upperdir=${dir}/upper,workdir=${dir}/work /etc && exec bash ${stage}/run.sh`;
        const r = run(["unshare", "-m", "--propagation", "private", "bash", "-c", inner], undefined, {
          PATH: `${dir}/bin:${process.env.PATH}`,
          CAPTURE: join(dir, "capture"),
          SERVER_VERSION: serverVersion,
          ...env,
        });
        expect(existsSync(stage)).toBe(false);
        return r;
      },
    };
  }

  test.skipIf(!isolated)(
    "init: CA first, secrets only in kubeadm's config and gone from the host after, output redacted, re-run is a no-op",
    () => {
      const h = host();
      const step = initStep(spec(), ctx, { waitSeconds: 5 });
      const first = h.run(step);
      expect(first.err).toBe("");
      expect(first.code).toBe(0);
      expect(first.out + first.err).not.toContain(TOKEN);
      expect(first.out + first.err).not.toContain(KEY);
      expect(first.out).toContain("--token <bootstrap-token> --control-plane");
      const log = readFileSync(join(h.capture, "kubeadm.log"), "utf8").trim().split("\n");
      expect(log).toHaveLength(3);
      // kubeadm checks the filled config before init changes anything
      expect(log[0]).toMatch(/^config validate --config \S+$/);
      expect(log[1]).toMatch(/^init --config \S+ --skip-token-print$/);
      // init's own token is deleted once the API answers: every join mints its own
      expect(log[2]).toBe(`token delete ${TOKEN.split(".")[0]} --kubeconfig /etc/kubernetes/admin.conf`);
      const seen = docs(readFileSync(join(h.capture, "init.yaml"), "utf8"));
      expect(byKind(seen, "InitConfiguration").bootstrapTokens[0].token).toBe(TOKEN);
      expect(byKind(seen, "InitConfiguration").certificateKey).toBeUndefined();
      expect(existsSync(readFileSync(join(h.capture, "init.path"), "utf8").trim())).toBe(false);
      expect(readFileSync(join(h.upper, "kubernetes/pki/ca.crt"), "utf8").trim()).toBe(caCertPem.trim());
      expect(run(["stat", "-c", "%a", join(h.upper, "kubernetes/pki/ca.key")]).out).toBe("600\n");
      // Join secrets and the CA key leave the host with the stage: the only CA key is kubeadm's.
      for (const name of ["bootstrap-token", "certificate-key", "ca-key"])
        expect(existsSync(join(h.upper, "kubeadm-ha/secrets", name))).toBe(false);
      // The installed config keeps its placeholders: the drift checker compares it with the rendered one.
      expect(readFileSync(join(h.upper, "kubeadm-ha/kubeadm-init.yaml"), "utf8")).toBe(step.files[0]!.content);

      const second = h.run(initStep(spec(), ctx, { waitSeconds: 5 }));
      expect(second.code).toBe(0);
      expect(second.out).toContain("already initialized, kubeadm settings are not re-applied to a running cluster");
      expect(second.out).not.toContain("installed /etc/");
      expect(readFileSync(join(h.capture, "kubeadm.log"), "utf8").trim().split("\n")).toHaveLength(3);

      const upgraded = h.run(initStep(spec(), ctx, { waitSeconds: 5 }), "v1.30.5");
      expect(upgraded.code).toBe(1);
      expect(upgraded.err).toContain("runs Kubernetes v1.30.5, but kubernetes.version is 1.31.4");
    },
  );

  test.skipIf(!isolated)(
    "a reinstalled first control plane never inits a second cluster: it refuses, or joins through join_via",
    () => {
      const h = host();
      const refused = h.run(initStep(spec(), ctx, { waitSeconds: 5 }), undefined, { CLUSTER_ELSEWHERE: "1" });
      expect(refused.code).toBe(1);
      expect(refused.err).toContain("kubeadm init here would start a second cluster");
      expect(refused.err).toContain("bun run node:replace cp-1");
      expect(existsSync(join(h.capture, "kubeadm.log"))).toBe(false);

      const joined = h.run(initStep(spec(), ctx, { waitSeconds: 5 }), undefined, { CLUSTER_ELSEWHERE: "1" }, "cp-2");
      expect(joined.err).toBe("");
      expect(joined.code).toBe(0);
      expect(joined.out).toContain("material minted on cp-2");
      expect(joined.out + joined.err).not.toContain(TOKEN);
      const log = readFileSync(join(h.capture, "kubeadm.log"), "utf8").trim();
      expect(log).toMatch(/^config validate --config (\S+)\njoin --config \1$/);
      const seen = docs(readFileSync(join(h.capture, "join.yaml"), "utf8"))[0];
      expect(seen.nodeRegistration.name).toBe("cp-1");
      expect(seen.controlPlane.certificateKey).toBe(KEY);
      expect(seen.discovery.bootstrapToken.caCertHashes).toEqual([ctx.caCertHash]);
      // No CA key was installed: a joining control plane gets its certificates from the cluster.
      expect(existsSync(join(h.upper, "kubernetes/pki/ca.key"))).toBe(false);
    },
  );

  test.skipIf(!isolated)("worker join: CA-pinned config with the token, once; a second run skips", () => {
    const h = host();
    const s = spec();
    const first = h.run(joinStep(s, s.nodes[3]!, ctx, { waitSeconds: 5 }));
    expect(first.err).toBe("");
    expect(first.code).toBe(0);
    expect(first.out).not.toContain(TOKEN);
    const log = readFileSync(join(h.capture, "kubeadm.log"), "utf8").trim();
    expect(log).toMatch(/^config validate --config (\S+)\njoin --config \1$/);
    expect(log).not.toMatch(/unsafe/);
    const seen = docs(readFileSync(join(h.capture, "join.yaml"), "utf8"))[0];
    expect(seen.discovery.bootstrapToken).toEqual({
      apiServerEndpoint: "10.0.0.162:8443",
      token: TOKEN,
      caCertHashes: [ctx.caCertHash],
    });
    expect(existsSync(join(h.upper, "kubeadm-ha/secrets/bootstrap-token"))).toBe(false);
    const second = h.run(joinStep(s, s.nodes[3]!, ctx, { waitSeconds: 5 }));
    expect(second.code).toBe(0);
    expect(second.out).toContain("already joined");
    expect(readFileSync(join(h.capture, "kubeadm.log"), "utf8").trim().split("\n")).toHaveLength(2);
  });

  test.skipIf(!isolated)(
    "a config kubeadm refuses stops init and join before anything changes, with kubeadm's message",
    () => {
      const s = spec();
      for (const step of [initStep(s, ctx, { waitSeconds: 5 }), joinStep(s, s.nodes[3]!, ctx, { waitSeconds: 5 })]) {
        const h = host();
        const r = h.run(step, "v1.31.4", { REFUSE_CONFIG: "1" });
        expect(r.code).toBe(1);
        expect(r.out + r.err).toContain('strict decoding error: unknown field "foo"');
        expect(r.err).toContain("kubeadm refused the configuration");
        const log = readFileSync(join(h.capture, "kubeadm.log"), "utf8").trim().split("\n");
        expect(log).toHaveLength(1);
        expect(log[0]).toStartWith("config validate ");
        expect(existsSync(join(h.upper, "kubernetes/admin.conf"))).toBe(false);
      }
    },
  );

  test.skipIf(!isolated)(
    "a secret an earlier version left in the secrets directory is removed by the next step",
    () => {
      const h = host();
      run(["mkdir", "-p", join(h.upper, "kubeadm-ha/secrets")]);
      for (const name of ["bootstrap-token", "certificate-key", "ca-key"])
        writeFileSync(join(h.upper, "kubeadm-ha/secrets", name), "old\n", { mode: 0o600 });
      const s = spec();
      const r = h.run(joinStep(s, s.nodes[3]!, ctx, { waitSeconds: 5 }));
      expect(r.code).toBe(0);
      for (const name of ["bootstrap-token", "certificate-key", "ca-key"])
        expect(existsSync(join(h.upper, "kubeadm-ha/secrets", name))).toBe(false);
    },
  );

  test.skipIf(!isolated)(
    "the token run and the cleanup run on the first control plane: create with the config, then delete by id",
    () => {
      const h = host();
      run(["mkdir", "-p", join(h.upper, "kubernetes")]);
      writeFileSync(join(h.upper, "kubernetes/admin.conf"), "");
      const s = spec();
      const cp2 = joinStep(s, s.nodes[1]!, ctx, { waitSeconds: 5 });
      const before = h.run(cp2.before!);
      expect(before.err).toBe("");
      expect(before.code).toBe(0);
      expect(before.out + before.err).not.toContain(TOKEN);
      expect(before.out + before.err).not.toContain(KEY);
      const after = h.run(cp2.after!);
      expect(after.code).toBe(0);
      const log = readFileSync(join(h.capture, "kubeadm.log"), "utf8").trim().split("\n");
      expect(log[0]).toMatch(/^token create --config \S+ --kubeconfig \/etc\/kubernetes\/admin.conf$/);
      expect(log[1]).toMatch(/^init phase upload-certs --upload-certs --config \S+$/);
      expect(log[2]).toBe(`token delete ${TOKEN.split(".")[0]} --kubeconfig /etc/kubernetes/admin.conf`);
      const seen = docs(readFileSync(join(h.capture, "token.yaml"), "utf8"));
      expect(byKind(seen, "InitConfiguration").bootstrapTokens[0].token).toBe(TOKEN);
      expect(byKind(seen, "InitConfiguration").certificateKey).toBe(KEY);
      expect(existsSync(join(h.upper, "kubeadm-ha/secrets/bootstrap-token"))).toBe(false);
    },
  );
});
