// The two static-pod load-balancer modes as rendered: static-pod runs the systemd mode's very
// configs from manifests the kubelet would accept; kube-vip's manifest is held to the names
// kube-vip v1.2.3 reads (it cannot run here), and init switches it to super-admin.conf and back.

import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { ETCD_LEADER_AWAY_UNIT } from "../../lib/render/etcd-leader-away.ts";
import { HAPROXY_ENV_FILE } from "../../lib/render/haproxy.ts";
import { renderCluster } from "../../lib/render/index.ts";
import { initStep } from "../../lib/render/kube-phases.ts";
import { ADMIN_CONF, KUBE_VIP_MANIFEST, SUPER_ADMIN_CONF } from "../../lib/render/kube-vip.ts";
import { caCertHashFromPem } from "../../lib/render/kubeadm.ts";
import { loadBalancerStep } from "../../lib/render/loadbalancer.ts";
import { HAPROXY_MANIFEST, HAPROXY_RUN_SCRIPT, KEEPALIVED_MANIFEST } from "../../lib/render/static-pods.ts";
import type { RenderedFile } from "../../lib/render/types.ts";
import { type ClusterSpec, ClusterSpecSchema } from "../../lib/spec/schema.ts";
import { DEFAULT_HAPROXY_IMAGE, DEFAULT_KUBE_VIP_IMAGE } from "../../lib/versions.ts";
import { apiserverManifest, etcdManifest } from "../lab/manifests.ts";
import { type PodDoc, podProblems } from "../lab/standins/pod-rules.ts";
import { selfSignedCert } from "./tool-helpers.ts";

const CI = process.env.CI === "true";
const haveShellcheck = (() => {
  if (Bun.which("shellcheck")) return true;
  if (CI) throw new Error("shellcheck is required in CI");
  return false;
})();

/** A throwaway CA certificate: the init step checks it is PEM. */
let ca: string | undefined;
function testCa(): string {
  if (ca) return ca;
  const dir = mkdtempSync(join(tmpdir(), "kha-ca-"));
  try {
    ca = selfSignedCert({ certPath: join(dir, "c"), keyPath: join(dir, "k"), cn: "kubernetes" }).cert;
    return ca;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function makeSpec(loadBalancer: Record<string, unknown>, port = 8443): ClusterSpec {
  return ClusterSpecSchema.parse({
    name: "lbmodes",
    kubernetes: { version: "1.31.4" },
    controlPlaneEndpoint: { vip: "198.18.0.10", interface: "eth0", prefix: 24, port },
    nodes: [1, 2, 3].map((i) => ({ name: `cp-${i}`, address: `198.18.0.1${i}`, role: "control-plane" })),
    loadBalancer,
  });
}
const KEEPALIVED_IMAGE = "registry.example.com/keepalived:2.2.8";
const staticSpec = () => makeSpec({ mode: "static-pod", staticPod: { keepalivedImage: KEEPALIVED_IMAGE } });
const systemdSpec = () => makeSpec({});
const cp1 = (spec: ClusterSpec) => spec.nodes[0]!;

test("the etcd leader is kept off the VIP holder in static-pod mode too (a host service, restarted when it changed)", () => {
  const step = loadBalancerStep(staticSpec(), cp1(staticSpec()));
  expect(step.files.map((f) => f.path)).toContain(ETCD_LEADER_AWAY_UNIT);
  expect(step.script).toContain("systemctl enable --quiet kubeadm-ha-etcd-leader-away.service");
});
const byPath = (files: RenderedFile[]) => new Map(files.map((f) => [f.path, f]));

/** The host as the load-balancer step leaves it: its files, plus the password file its script writes. */
function hostAfter(files: RenderedFile[]) {
  const contents = new Map(files.map((f) => [f.path, f.content]));
  contents.set(HAPROXY_ENV_FILE, "KUBEADM_HA_STATS_PASSWORD='x'\n");
  const dirs = new Set<string>();
  for (const p of contents.keys()) {
    const parts = p.split("/");
    for (let i = 2; i < parts.length; i++) dirs.add(parts.slice(0, i).join("/"));
  }
  return {
    kind: (p: string) => (contents.has(p) ? ("file" as const) : dirs.has(p) ? ("dir" as const) : undefined),
    read: (p: string) => contents.get(p),
  };
}

describe("loadBalancer.mode static-pod", () => {
  test("the same keepalived.conf, haproxy.cfg, check scripts and host services as the systemd mode; manifests instead of the daemons' systemd units", () => {
    const pod = byPath(loadBalancerStep(staticSpec(), cp1(staticSpec())).files);
    const sysd = byPath(loadBalancerStep(systemdSpec(), cp1(systemdSpec())).files);
    for (const [path, f] of sysd) {
      // The etcd-leader-away service runs on the host's systemd in both modes.
      if ((path.startsWith("/etc/systemd/") && path !== ETCD_LEADER_AWAY_UNIT) || path.startsWith("/etc/tmpfiles.d/")) {
        expect(pod.has(path)).toBe(false);
        continue;
      }
      expect(pod.get(path)?.content).toBe(f.content);
    }
    expect([...pod.keys()].filter((p) => !sysd.has(p)).sort()).toEqual(
      [HAPROXY_MANIFEST, HAPROXY_RUN_SCRIPT, KEEPALIVED_MANIFEST].sort(),
    );
    expect(pod.get(KEEPALIVED_MANIFEST)?.mode).toBe("0600");
  });

  test("manifests a kubelet runs: host network, keepalived's capabilities, every file the commands read mounted from the host", () => {
    const files = loadBalancerStep(staticSpec(), cp1(staticSpec())).files;
    const host = hostAfter(files);
    for (const path of [KEEPALIVED_MANIFEST, HAPROXY_MANIFEST]) {
      const doc = parse(host.read(path)!) as PodDoc & { spec: { containers: { image: string }[] } };
      expect({ path, problems: podProblems(doc, host) }).toEqual({ path, problems: [] });
    }
    const keepalived = parse(host.read(KEEPALIVED_MANIFEST)!);
    expect(keepalived.spec.containers[0].image).toBe(KEEPALIVED_IMAGE);
    expect(keepalived.spec.containers[0].securityContext.capabilities.add).toEqual([
      "NET_ADMIN",
      "NET_BROADCAST",
      "NET_RAW",
    ]);
    expect(keepalived.spec.containers[0].volumeMounts.every((m: { readOnly: boolean }) => m.readOnly)).toBe(true);
    expect(parse(host.read(HAPROXY_MANIFEST)!).spec.containers[0].image).toBe(DEFAULT_HAPROXY_IMAGE);
  });

  test("the pod rules refuse what a kubelet would not run (and so the checks above can fail)", () => {
    const files = loadBalancerStep(staticSpec(), cp1(staticSpec())).files;
    const host = hostAfter(files);
    const doc = parse(host.read(KEEPALIVED_MANIFEST)!);
    doc.spec.hostNetwork = false;
    doc.spec.containers[0].securityContext.capabilities.add = ["NET_ADMIN"];
    doc.spec.containers[0].volumeMounts = doc.spec.containers[0].volumeMounts.filter(
      (m: { name: string }) => m.name !== "haproxy-state",
    );
    const problems = podProblems(doc, host).join("\n");
    expect(problems).toContain("hostNetwork is not true");
    expect(problems).toContain("keepalived needs capabilities NET_BROADCAST, NET_RAW");
    // keepalived.conf names the state file; without its mount the container cannot see it.
    expect(problems).toContain(
      "/run/kubeadm-ha/haproxy.state (named in /etc/keepalived/keepalived.conf) is under no volumeMount",
    );
    const missing = parse(host.read(HAPROXY_MANIFEST)!);
    expect(
      podProblems(missing, { ...host, kind: (p) => (p === HAPROXY_ENV_FILE ? undefined : host.kind(p)) }),
    ).toContain(`hostPath ${HAPROXY_ENV_FILE} (type File) does not exist`);
  });

  test("the lab's own etcd and apiserver manifests pass the same rules (the stand-in runs them too)", () => {
    const CHECKOUT = "/opt/kubeadm-ha-lab";
    const standin = `${CHECKOUT}/test/lab/standins/apiserver-standin.ts`;
    // The stand-in program names host files itself; as the image's content, what it reads is not checked.
    const programs = new Map([
      [standin, readFileSync(join(import.meta.dir, "../lab/standins/apiserver-standin.ts"), "utf8")],
    ]);
    const host = {
      kind: (p: string) =>
        programs.has(p) ? ("file" as const) : p.startsWith("/etc/kubernetes/pki") ? ("dir" as const) : undefined,
      read: (p: string) => programs.get(p),
    };
    const nodes = [1, 2, 3].map((i) => ({ name: `cp-${i}`, address: `198.18.0.1${i}` }));
    const docs = [
      etcdManifest(nodes[0]!, nodes),
      apiserverManifest(nodes[0]!, `${CHECKOUT}/node_modules/.bin/bun`, standin),
    ];
    for (const text of docs) expect(podProblems(parse(text), host, [CHECKOUT])).toEqual([]);
    // Without the checkout counted as image content, the apiserver stand-in would be refused.
    expect(podProblems(parse(docs[1]!), host).join("\n")).toContain(
      `${standin} (in the command) is under no volumeMount`,
    );
  });

  test.skipIf(!haveShellcheck)("shellcheck is clean on the phase script and haproxy's entrypoint", () => {
    const dir = mkdtempSync(join(tmpdir(), "kha-lbmodes-"));
    try {
      const step = loadBalancerStep(staticSpec(), cp1(staticSpec()));
      writeFileSync(join(dir, "run.sh"), step.script);
      writeFileSync(join(dir, "entry.sh"), byPath(step.files).get(HAPROXY_RUN_SCRIPT)!.content);
      const bash = Bun.spawnSync(["shellcheck", "-s", "bash", join(dir, "run.sh")]);
      const sh = Bun.spawnSync(["shellcheck", "-s", "sh", join(dir, "entry.sh")]);
      expect(bash.stdout.toString() + bash.exitCode).toBe("0");
      expect(sh.stdout.toString() + sh.exitCode).toBe("0");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("loadBalancer.mode kube-vip (rendering only: kube-vip does not run here)", () => {
  const spec = (lb = false) =>
    makeSpec({ mode: "kube-vip", ...(lb ? { kubeVip: { loadBalancing: true } } : {}) }, 6443);
  const KNOWN = new Set(
    readFileSync(join(import.meta.dir, "../fixtures/kube-vip/v1.2.3-env.txt"), "utf8")
      .split("\n")
      .filter((l) => l && !l.startsWith("#")),
  );
  const manifest = (s: ClusterSpec, node = 0) => {
    const files = loadBalancerStep(s, s.nodes[node]!).files;
    expect(files.map((f) => f.path)).toEqual([KUBE_VIP_MANIFEST]);
    return parse(files[0]!.content);
  };
  const envOf = (doc: { spec: { containers: { env: { name: string; value: string }[] }[] } }) =>
    Object.fromEntries(doc.spec.containers[0]!.env.map((e) => [e.name, e.value]));

  test("ARP, leader election by lease, control plane on, services off, the VIP and the apiserver port: names kube-vip v1.2.3 reads", () => {
    const doc = manifest(spec());
    const env = envOf(doc);
    for (const name of Object.keys(env)) expect({ name, known: KNOWN.has(name) }).toEqual({ name, known: true });
    expect(env).toMatchObject({
      vip_arp: "true",
      vip_leaderelection: "true",
      cp_enable: "true",
      svc_enable: "false",
      vip_interface: "eth0",
      address: "198.18.0.10",
      port: "6443",
      vip_nodename: "cp-1",
    });
    expect(env.lb_enable).toBeUndefined();
    expect(envOf(manifest(spec(true)))).toMatchObject({ lb_enable: "true", lb_port: "6443" });
    expect(
      manifest(spec(), 2).spec.containers[0].env.find((e: { name: string }) => e.name === "vip_nodename").value,
    ).toBe("cp-3");
    const c = doc.spec.containers[0];
    expect([c.image, c.args, c.command]).toEqual([DEFAULT_KUBE_VIP_IMAGE, ["manager"], undefined]);
    expect(c.securityContext.capabilities.add).toEqual(["NET_ADMIN", "NET_RAW"]);
    expect(doc.spec.hostNetwork).toBe(true);
  });

  test("kube-vip talks to the local apiserver (kubernetes -> 127.0.0.1 with admin.conf), never to the VIP it serves", () => {
    const doc = manifest(spec());
    expect(doc.spec.hostAliases).toEqual([{ ip: "127.0.0.1", hostnames: ["kubernetes"] }]);
    expect(doc.spec.containers[0].volumeMounts).toEqual([
      { name: "kubeconfig", mountPath: ADMIN_CONF, readOnly: true },
    ]);
    expect(doc.spec.volumes).toEqual([{ name: "kubeconfig", hostPath: { path: ADMIN_CONF, type: "File" } }]);
    expect(JSON.stringify(doc.spec.containers[0].env)).not.toContain("kubernetes_addr");
  });

  test("init on the first control plane: super-admin.conf during kubeadm init, admin.conf again after it (and on failure)", () => {
    const s = spec();
    const ca = testCa();
    const script = initStep(s, { caCertPem: ca, caCertHash: caCertHashFromPem(ca) }).script;
    const before = script.indexOf("kube-vip: super-admin.conf during kubeadm init");
    const init = script.indexOf('kubeadm init --config "$config"');
    const after = script.indexOf("kube-vip: back to admin.conf");
    expect(before).toBeGreaterThan(0);
    expect(init).toBeGreaterThan(before);
    expect(after).toBeGreaterThan(init);
    expect(script).toContain("also_on_exit kube_vip_admin_conf");
    // The sed lines as rendered, run on the rendered manifest: only the volume's path changes, and back exactly.
    const seds = [...script.matchAll(/sed -i ('[^']*') '\/etc\/kubernetes\/manifests\/kube-vip\.yaml'/g)].map(
      (m) => m[1]!,
    );
    expect(seds).toHaveLength(2);
    const dir = mkdtempSync(join(tmpdir(), "kha-kubevip-"));
    try {
      const original = loadBalancerStep(s, s.nodes[0]!).files[0]!.content;
      const file = join(dir, "kube-vip.yaml");
      writeFileSync(file, original);
      const sed = (expr: string) => expect(Bun.spawnSync(["bash", "-c", `sed -i ${expr} "$0"`, file]).exitCode).toBe(0);
      sed(seds[1]!); // to super-admin.conf (the first one, to admin.conf, is the function's)
      const during = parse(readFileSync(file, "utf8"));
      expect(during.spec.volumes[0].hostPath.path).toBe(SUPER_ADMIN_CONF);
      expect(during.spec.containers[0].volumeMounts[0].mountPath).toBe(ADMIN_CONF);
      sed(seds[0]!);
      expect(readFileSync(file, "utf8")).toBe(original);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    // Other modes do not touch it.
    expect(initStep(systemdSpec(), { caCertPem: ca, caCertHash: caCertHashFromPem(ca) }).script).not.toContain(
      "kube-vip",
    );
  });

  test("the whole cluster renders: one kube-vip manifest per control plane, no keepalived or haproxy file", () => {
    const s = spec();
    const ca = testCa();
    const paths = renderCluster(s, { caCertPem: ca, caCertHash: caCertHashFromPem(ca) })
      .filter((st) => st.phase === "loadbalancer")
      .flatMap((st) => st.files.map((f) => `${st.node.name}:${f.path}`));
    expect(paths).toEqual(["cp-1", "cp-2", "cp-3"].map((n) => `${n}:${KUBE_VIP_MANIFEST}`));
  });
});
