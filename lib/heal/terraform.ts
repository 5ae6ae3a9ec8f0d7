// The Terraform side of healing: a node's steps run again through the normal apply of the
// synthesized stack (`terraform apply -replace=...`), so the state stays what happened. The
// secrets reach terraform as TF_VAR_* only, as for deploy (scripts/tf.ts).
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { UserError } from "../errors.ts";
import type { Progress } from "../progress.ts";
import { ensureSecrets, terraformEnv } from "../secrets.ts";
import type { ClusterSpec } from "../spec/schema.ts";
import { type StackStep, stackSteps, stateSteps } from "./plan.ts";

/** Where `bun run synth` / deploy keep the cluster's stack (CDKTF_OUTDIR as main.ts reads it). */
export const defaultStackDir = (spec: ClusterSpec): string =>
  resolve(process.env.CDKTF_OUTDIR ?? "cdktf.out", "stacks", spec.name);

/** The steps of the synthesized stack in `stackDir`; a UserError when there is none. */
export function readStackSteps(stackDir: string): StackStep[] {
  const file = join(stackDir, "cdk.tf.json");
  if (!existsSync(file))
    throw new UserError(
      `--stack-dir ${stackDir}: no cdk.tf.json there. Synthesize and deploy the cluster first (bun run synth, bun run deploy), or name the stack directory with --stack-dir.`,
    );
  if (!existsSync(join(stackDir, ".terraform")))
    throw new UserError(
      `--stack-dir ${stackDir}: terraform was never initialized there (no .terraform): this stack has not been deployed. Name the directory the cluster was deployed from.`,
    );
  return stackSteps(JSON.parse(readFileSync(file, "utf8")));
}

/** terraform's environment: the cluster's secrets as TF_VAR_* only (never created here), no checkpoint calls. */
function terraformRunEnv(spec: ClusterSpec): Record<string, string | undefined> {
  return {
    ...process.env,
    ...terraformEnv(ensureSecrets(spec, { create: false })),
    CHECKPOINT_DISABLE: "1",
    TF_IN_AUTOMATION: "1",
    TF_CLI_CONFIG_FILE: process.env.TF_CLI_CONFIG_FILE ?? resolve(import.meta.dir, "../../.tf/terraformrc"),
  };
}

export interface ApplyResult {
  code: number;
  seconds: number;
  tail: string;
}

/**
 * `terraform apply -auto-approve` in the stack, replacing `replace` (addresses), with `vars` (names
 * and values the stack validates, e.g. join_via); output streamed as progress.
 */
export async function terraformApply(
  spec: ClusterSpec,
  stackDir: string,
  replace: string[],
  log: Progress,
  vars: Record<string, string> = {},
): Promise<ApplyResult> {
  const started = performance.now();
  const args = [
    "apply",
    "-input=false",
    "-auto-approve",
    "-no-color",
    ...replace.map((a) => `-replace=${a}`),
    ...Object.entries(vars).map(([k, v]) => `-var=${k}=${v}`),
  ];
  const proc = Bun.spawn(["terraform", ...args], {
    cwd: stackDir,
    env: terraformRunEnv(spec),
    stdout: "pipe",
    stderr: "pipe",
  });
  let out = "";
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    let partial = "";
    for await (const chunk of stream) {
      const text = decoder.decode(chunk);
      out += text;
      partial += text;
      const lines = partial.split("\n");
      partial = lines.pop() ?? "";
      // Resource lines only: the phase scripts' own output stays in the tail on failure.
      for (const l of lines)
        if (/: (Creating|Creation complete|Destroying|Destruction complete|Still creating)/.test(l))
          log("terraform", "apply", l.trim());
    }
  };
  await Promise.all([pump(proc.stdout), pump(proc.stderr)]);
  const code = await proc.exited;
  return { code, seconds: (performance.now() - started) / 1000, tail: out.slice(-4000) };
}

/** The step resources in the stack's Terraform state (`terraform show -json`). */
export async function readStateSteps(spec: ClusterSpec, stackDir: string): Promise<StackStep[]> {
  const proc = Bun.spawn(["terraform", "show", "-json", "-no-color"], {
    cwd: stackDir,
    env: terraformRunEnv(spec),
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (code !== 0)
    throw new UserError(`terraform show in ${stackDir} failed (exit ${code}): ${err.trim().slice(0, 600)}`, 1);
  return stateSteps(JSON.parse(out));
}
