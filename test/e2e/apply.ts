// End to end: synthesize the lab spec's `builtin` stack and run the real
// `terraform init/plan/apply` against the lab hosts (real provisioners, real
// phase scripts, real keepalived/haproxy; kubeadm is the lab's recording stand-in).
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { stringify } from "yaml";
import { synthesize } from "../../constructs/stack.ts";
import { ensureSecrets, terraformEnv } from "../../lib/secrets.ts";
import { loadSpec } from "../../lib/spec/load.ts";
import type { ClusterSpec } from "../../lib/spec/schema.ts";
import { type LabLb, type LabOs, labPaths, labUp, PROJECT_ROOT } from "../lab/lab.ts";

export const E2E_DIR = join(labPaths.stateDir, "e2e");
export const STACK_DIR = join(E2E_DIR, "stacks", "lab");

export function labSecretsEnv(): void {
  process.env.KUBEADM_HA_SECRETS_DIR = labPaths.secretsDir;
}

export function labSpec(): ClusterSpec {
  return loadSpec(labPaths.spec);
}

/**
 * Synthesize the lab stack (optionally with a changed spec) into E2E_DIR. A changed spec is
 * written to its own file beside the lab's (relative paths resolve alike) and synthesized from
 * there, as a user's edited cluster.yaml would be: the stack's preflight step reads the spec file,
 * and with the unchanged one it checked hosts the stack no longer has (a removed control plane,
 * reset a moment before, failed it).
 */
export function synthLab(mutate?: (spec: ClusterSpec) => void): ClusterSpec {
  labSecretsEnv();
  let spec = labSpec();
  let specFile: string = labPaths.spec;
  if (mutate) {
    mutate(spec);
    specFile = join(dirname(labPaths.spec), "cluster.synth.yaml");
    writeFileSync(specFile, stringify(spec), { mode: 0o600 });
    spec = loadSpec(specFile);
  }
  mkdirSync(E2E_DIR, { recursive: true });
  synthesize(spec, {
    outdir: E2E_DIR,
    stackName: "lab",
    renderDir: join(E2E_DIR, "rendered"),
    specFile,
  });
  return spec;
}

export interface TfResult {
  code: number;
  out: string;
  seconds: number;
}

export async function terraform(args: string[], opts: { log?: boolean } = {}): Promise<TfResult> {
  labSecretsEnv();
  const spec = labSpec();
  const started = performance.now();
  const proc = Bun.spawn(["terraform", ...args, "-no-color"], {
    cwd: STACK_DIR,
    env: {
      ...process.env,
      ...terraformEnv(ensureSecrets(spec)),
      CHECKPOINT_DISABLE: "1",
      TF_IN_AUTOMATION: "1",
      TF_CLI_CONFIG_FILE: resolve(PROJECT_ROOT, ".tf/terraformrc"),
    },
    stdout: "pipe",
    stderr: "pipe",
  });
  let out = "";
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      const text = decoder.decode(chunk);
      out += text;
      if (opts.log) process.stderr.write(text);
    }
  };
  await Promise.all([pump(proc.stdout), pump(proc.stderr)]);
  const code = await proc.exited;
  return { code, out, seconds: (performance.now() - started) / 1000 };
}

/** Seconds each resource took, from apply output ("x: Creation complete after 3s"). */
export function stepSeconds(applyOutput: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of applyOutput.matchAll(/^([\w.]+): Creation complete after (?:(\d+)m)?(\d+)s/gm)) {
    out[m[1]!] = Number(m[2] ?? 0) * 60 + Number(m[3]);
  }
  return out;
}

/** Order in which resources started ("x: Creating..."). */
export function creationOrder(applyOutput: string): string[] {
  return [...applyOutput.matchAll(/^([\w.]+): Creating\.\.\./gm)].map((m) => m[1]!);
}

export const renderedFile = (node: string, path: string): string =>
  readFileSync(join(E2E_DIR, "rendered", node, path), "utf8");

/**
 * New lab hosts as before kubeadm, then the whole stack applied to them:
 * what a user's `bun run deploy` does on fresh machines. Returns the apply result.
 */
export async function applyLab(opts: { log?: boolean; os?: LabOs; lb?: LabLb } = {}): Promise<TfResult> {
  await labUp({ fresh: true, kubeadm: "pending", os: opts.os, lb: opts.lb });
  synthLab();
  const init = await terraform(["init", "-input=false"]);
  if (init.code !== 0) throw new Error(`terraform init failed:\n${init.out}`);
  const apply = await terraform(["apply", "-input=false", "-auto-approve"], opts);
  if (apply.code !== 0) throw new Error(`terraform apply failed:\n${apply.out.slice(-6000)}`);
  return apply;
}
