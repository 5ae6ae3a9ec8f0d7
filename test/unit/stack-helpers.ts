// Synthesize a spec into a temp dir and read back cdk.tf.json, for the stack tests.
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { synthesize } from "../../constructs/stack.ts";
import { parseSpec } from "../../lib/spec/load.ts";
import type { ClusterSpec } from "../../lib/spec/schema.ts";

export const EXAMPLE = readFileSync(resolve(import.meta.dir, "../../cluster.example.yaml"), "utf8");

// Every test run gets its own secrets dir, so tests never touch a developer's real secrets.
process.env.KUBEADM_HA_SECRETS_DIR ??= mkdtempSync(join(tmpdir(), "kha-secrets-"));

export interface Synthesized {
  spec: ClusterSpec;
  json: Record<string, any>;
  text: string;
  dir: string;
  renderDir: string;
  stackDir: string;
}

export function synthSpec(
  specText: string,
  mutate?: (spec: ClusterSpec) => void,
  opts: { specFile?: string } = {},
): Synthesized {
  const spec = parseSpec(specText, "test.yaml");
  mutate?.(spec);
  const dir = mkdtempSync(join(tmpdir(), "kha-synth-"));
  const renderDir = join(dir, "rendered", spec.name);
  const { stackDir } = synthesize(spec, { outdir: dir, renderDir, specFile: opts.specFile });
  const text = readFileSync(join(stackDir, "cdk.tf.json"), "utf8");
  return { spec, json: JSON.parse(text), text, dir, renderDir, stackDir };
}

/** Step resources by "<phase>_<node>" id, from either back-end. */
export function steps(json: Record<string, any>): Record<string, any> {
  const r = json.resource ?? {};
  const all = { ...(r.null_resource ?? {}), ...(r.terraform_data ?? {}) };
  const out: Record<string, any> = {};
  for (const [id, v] of Object.entries(all)) out[id] = v;
  return out;
}

/** The step ids a resource depends on (depends_on holds "type.id" references). */
export function dependsOn(resource: any): string[] {
  return (resource.depends_on ?? []).map((d: string) => d.split(".")[1]!).sort();
}

/** null_resource keeps self-readable values in triggers, terraform_data in input: compare them merged. */
export const triggersOf = (resource: any): Record<string, string> =>
  resource.triggers ?? { ...resource.triggers_replace, ...resource.input };
