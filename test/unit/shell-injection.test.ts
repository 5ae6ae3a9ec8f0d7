// Every value from the spec or a flag that reaches a root shell is quoted (shq) or refused by
// validation naming the field. The proof puts shell metacharacters into every string field
// of the spec (found by walking the schema, so new fields are covered) and every string flag
// of the commands that build remote scripts (found from their --help), and for each value:
// either validation refuses it naming the field/flag, or the scripts built from it are
// EXECUTED in a sandbox (sandbox.ts) against recording stand-ins, and no payload ran (none of
// the canary files the payloads would create exists).
import { afterAll, describe, expect, test } from "bun:test";
import { stringify } from "yaml";
import { etcdCheckScript, statsScript, workloadScript } from "../../lib/ops/verify.ts";
import { renderCluster } from "../../lib/render/index.ts";
import { SECRET_NAMES, type Step } from "../../lib/render/types.ts";
import { caCertHash, generateSecrets, hostSecretValue } from "../../lib/secrets.ts";
import { checkSpecText, machinePath } from "../../lib/spec/load.ts";
import { type ClusterSpec, ClusterSpecSchema } from "../../lib/spec/schema.ts";
import { controlPlanes } from "../../lib/spec/topology.ts";
import type { SpecPath } from "../../lib/spec/validate.ts";
import { Job, type JobResult, payloads, removeSandboxDir, requireSandbox, runJobs, type Secrets } from "./sandbox.ts";

const haveSandbox = requireSandbox();
afterAll(removeSandboxDir);

// ---- the spec: every string field --------------------------------------------------------------

const STAND_IN_DOWNLOAD_SHA256 = new Bun.CryptoHasher("sha256").update("stand-in download\n").digest("hex");

/** A spec that sets every optional field, so each one reaches its renderer. */
const BASE = {
  name: "inj",
  kubernetes: {
    version: "1.31.4",
    packages: {
      source: "apt",
      aptRepository: "https://k8s-mirror.example.internal/kubernetes/{minor}/deb/",
      aptKeyUrl: "https://k8s-mirror.example.internal/kubernetes/{minor}/deb/Release.key",
      aptKeyFingerprint: "DE15B14486CD377B9E876E1A234654DA9A296436",
    },
  },
  ssh: {
    user: "ops",
    privateKeyPath: "keys/id_ed25519",
    knownHostsPath: ".kubeadm-ha/known_hosts",
    bastion: { host: "jump.example.com", user: "jump", privateKeyPath: "keys/jump" },
  },
  nodes: [
    {
      name: "cp-1",
      address: "10.0.0.11",
      role: "control-plane",
      ssh: { host: "cp-1.example.com", user: "admin", port: 2222, privateKeyPath: "keys/cp-1" },
    },
    { name: "cp-2", address: "10.0.0.12", role: "control-plane" },
    { name: "cp-3", address: "10.0.0.13", role: "control-plane" },
    { name: "worker-1", address: "10.0.0.21", role: "worker" },
  ],
  controlPlaneEndpoint: { vip: "10.0.0.10", interface: "eth0", prefix: 24 },
  loadBalancer: {
    mode: "keepalived-haproxy",
    vrrp: { version: 2, advertIntervalSeconds: 1 },
    haproxy: { stats: { user: "admin", bindAddress: "127.0.0.1" } },
  },
  networking: {
    podSubnet: "10.244.0.0/16",
    serviceSubnet: "10.96.0.0/12",
    dnsDomain: "cluster.local",
    // The sandbox's curl stand-in downloads "stand-in download\n": this is its sha256.
    cni: { name: "calico", manifest: "https://example.com/calico.yaml", sha256: STAND_IN_DOWNLOAD_SHA256 },
  },
  containerRuntime: { name: "containerd", cgroupDriver: "systemd", sandboxImage: "registry.k8s.io/pause:3.10" },
  etcd: { dataDir: "/var/lib/etcd", backup: { directory: "backups", schedule: "*-*-* 02:00:00" } },
  terraform: { resources: "builtin", cloud: { organization: "acme", workspace: "inj", hostname: "tfe.example.com" } },
};

/** More than one base for fields with more than one form. */
const EXTRA_BASES: Record<string, string[]> = {
  "networking.cni.manifest": ["/root/calico.yaml"],
  "kubernetes.packages.aptRepository": ["https://k8s-mirror.example.internal/kubernetes/{minor}/deb stable main"],
};

/** zod's internal definitions differ per schema kind. */
type AnySchema = any;
const WRAPPERS = new Set(["optional", "default", "prefault", "nullable", "readonly", "catch", "nonoptional"]);
const unwrap = (s: AnySchema): AnySchema => (s?.def && WRAPPERS.has(s.def.type) ? unwrap(s.def.innerType) : s);

/** Every path whose value is text (list entries as index 0), from the schema itself. */
function stringPaths(schema: AnySchema, path: SpecPath = []): SpecPath[] {
  const s = unwrap(schema);
  switch (s?.def?.type) {
    case "object":
      return Object.entries(s.def.shape).flatMap(([k, v]) => stringPaths(v, [...path, k]));
    case "array":
      return stringPaths(s.def.element, [...path, 0]);
    case "string":
    case "enum":
      return [path];
    case "literal":
      return s.def.values.some((v: unknown) => typeof v === "string") ? [path] : [];
    case "pipe":
      return stringPaths(s.def.in, path);
    case "union":
      return s.def.options.some((o: AnySchema) => stringPaths(o, path).length > 0) ? [path] : [];
    default:
      return [];
  }
}

function valueAt(obj: unknown, path: SpecPath): unknown {
  return path.reduce<unknown>((o, k) => (o as Record<string | number, unknown> | undefined)?.[k], obj);
}

function withValue(path: SpecPath, value: string): unknown {
  const copy = structuredClone(BASE) as Record<string | number, unknown>;
  let o = copy;
  for (const k of path.slice(0, -1)) {
    o[k] ??= {};
    o = o[k] as Record<string | number, unknown>;
  }
  o[path[path.length - 1]!] = value;
  return copy;
}

const template = (path: SpecPath) => machinePath(path).replace(/\[\d+\]/g, "[]");

// ---- running what a spec renders ---------------------------------------------------------------

const secretValues = generateSecrets();
const SECRETS: Secrets = Object.fromEntries(
  SECRET_NAMES.map((name) => [name, hostSecretValue(secretValues, name, "sandbox-round")]),
);
const CTX = { caCertPem: secretValues.caCert, caCertHash: caCertHash(secretValues.caCert) };

/** Scripts rendered as files (keepalived checks, the backup script): run after their phase installed them. */
const installedScripts = (steps: Step[]) =>
  steps.flatMap((s) => s.files).filter((f) => /^07[0-7]{2}$/.test(f.mode) && f.content.startsWith("#!"));

/** One sandbox job per node: its phase steps in build order, its installed scripts, and on the first control plane the ops scripts built from the spec. */
function nodeJobs(spec: ClusterSpec): Job[] {
  const steps = renderCluster(spec, CTX);
  const first = controlPlanes(spec)[0]!;
  return spec.nodes.map((node) => {
    const job = new Job({ KHA_KUBE_VERSION: spec.kubernetes.version });
    const mine = steps.filter((s) => s.node.name === node.name);
    const manifest = spec.networking.cni.manifest;
    if (node.name === first.name && manifest?.startsWith("/")) job.touch(manifest);
    for (const step of mine) job.phase(step, SECRETS);
    // The runs every join makes on the first control plane (mint its token, then delete it).
    if (node.name === first.name)
      for (const step of steps.filter((s) => s.before ?? s.after))
        for (const [run, name] of [
          [step.before, "join-token"],
          [step.after, "join-cleanup"],
        ] as const)
          if (run) job.phase({ ...run, phase: `${name} for ${step.node.name}` as Step["phase"] }, SECRETS);
    for (const f of installedScripts(mine)) job.file(f.path, `${f.path} on ${node.name}`);
    if (node.name === first.name) {
      job.stdin(statsScript(spec), "verify: haproxy stats");
      job.stdin(workloadScript(spec, "nginx"), "verify --workload");
      job.stdin(etcdCheckScript(), "verify: etcd");
    }
    return job;
  });
}

/** Phase steps must run to the end ("done"), so every line that holds a spec value ran. */
function phaseFailures(result: JobResult): string[] {
  if (!result.ok) return [`sandbox: ${result.error}`];
  return result.runs
    .filter((r) => r.label.includes(" on ") && !r.label.startsWith("/"))
    .filter((r) => r.rc !== 0 || !r.out.includes(": done"))
    .map((r) => `${r.label}: exit ${r.rc}: ${(r.err || r.out).trim().split("\n").slice(-3).join(" | ")}`);
}

// ---- the test ----------------------------------------------------------------------------------

interface Variant {
  field: string;
  value: string;
  spec: ClusterSpec;
}

const FIELDS = stringPaths(ClusterSpecSchema);

describe("spec fields", () => {
  test("the schema walk finds every text field", () => {
    const names = FIELDS.map(machinePath);
    for (const known of [
      "name",
      "kubernetes.version",
      "kubernetes.packages.aptRepository",
      "ssh.user",
      "ssh.bastion.privateKeyPath",
      "nodes[0].name",
      "nodes[0].ssh.host",
      "controlPlaneEndpoint.interface",
      "loadBalancer.haproxy.stats.user",
      "loadBalancer.haproxy.timeouts.connect",
      "networking.dnsDomain",
      "networking.cni.manifest",
      "containerRuntime.sandboxImage",
      "etcd.dataDir",
      "etcd.backup.schedule",
      "terraform.cloud.hostname",
    ])
      expect(names).toContain(known);
    expect(names.length).toBeGreaterThanOrEqual(35);
  });

  test("the base spec is valid", () => {
    const r = checkSpecText(stringify(BASE));
    expect(r.problems).toEqual([]);
  });

  const accepted: Variant[] = [];
  const refusedElsewhere: string[] = [];
  let cases = 0;
  for (const path of FIELDS) {
    const field = machinePath(path);
    const base = valueAt(BASE, path);
    const bases = [typeof base === "string" ? base : "x", ...(EXTRA_BASES[template(path)] ?? [])];
    bases.forEach((b, bi) => {
      payloads(`${field.replace(/[^a-zA-Z0-9]/g, "_")}-${bi}`).forEach((p) => {
        cases++;
        const value = b + p;
        const r = checkSpecText(stringify(withValue(path, value)));
        if (r.spec) accepted.push({ field, value, spec: r.spec });
        else if (!r.problems.some((pr) => pr.path === field))
          refusedElsewhere.push(
            `${field} = ${JSON.stringify(value)}: ${r.problems.map((pr) => pr.message).join(" / ")}`,
          );
      });
    });
  }

  test("a refused value is refused naming its field", () => {
    expect(cases).toBeGreaterThan(300);
    expect(refusedElsewhere).toEqual([]);
  });

  test.skipIf(!haveSandbox)(
    "an accepted value runs nothing: every script built from it executed in the sandbox, no canary",
    async () => {
      const base = checkSpecText(stringify(BASE)).spec!;
      // A path manifest without a sha256 (the sandbox's file is empty): checked only when given.
      const pathBase = checkSpecText(
        stringify({
          ...BASE,
          networking: { ...BASE.networking, cni: { name: "calico", manifest: "/root/calico.yaml" } },
        }),
      ).spec!;
      const variants: Variant[] = [
        { field: "(base spec)", value: "", spec: base },
        { field: "(base spec, manifest path)", value: "", spec: pathBase },
        ...accepted,
      ];
      // Something must get through validation, or the sandbox proves nothing about quoting.
      for (const field of [
        "networking.cni.manifest",
        "kubernetes.packages.aptRepository",
        "kubernetes.packages.aptKeyUrl",
      ])
        expect(accepted.map((v) => v.field)).toContain(field);
      const jobs: { job: Job; variant: Variant }[] = [];
      const seen = new Set<string>();
      for (const variant of variants)
        for (const job of nodeJobs(variant.spec)) {
          const key = job.key();
          if (seen.has(key)) {
            job.discard();
            continue;
          }
          seen.add(key);
          jobs.push({ job, variant });
        }
      const results = await runJobs(jobs.map((j) => j.job));
      const problems: string[] = [];
      results.forEach((r, i) => {
        const { variant } = jobs[i]!;
        const what = `${variant.field} = ${JSON.stringify(variant.value)}`;
        for (const f of phaseFailures(r)) problems.push(`${what}: ${f}`);
        for (const c of r.canaries) problems.push(`${what}: the payload RAN (canary ${c} exists)`);
      });
      expect(problems).toEqual([]);
      // The stand-ins saw the payload as data: curl got the manifest URL as one argument.
      const cni = results.find(
        (r, i) => jobs[i]!.variant.field === "networking.cni.manifest" && r.calls.includes("kubectl"),
      );
      expect(cni?.calls).toMatch(/curl .*-o \S+ https:\/\/example\.com\/calico\.yaml/);
    },
    600_000,
  );
});
