// Synth wall time: direct `bun run main.ts` vs the cdktf CLI, for the example
// spec and for 3 control planes + 10/50/200 workers; plus spec lines vs rendered lines.
// Usage: bun bench/synth.ts [--runs N] [--json]
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseCommand, runCommand } from "../lib/cli.ts";
import { renderCluster } from "../lib/render/index.ts";
import { caCertHash, ensureSecrets } from "../lib/secrets.ts";
import { parseSpec } from "../lib/spec/load.ts";

const ROOT = resolve(import.meta.dir, "..");
const EXAMPLE = readFileSync(join(ROOT, "cluster.example.yaml"), "utf8");

function specWithWorkers(n: number): string {
  const workers = Array.from({ length: n }, (_, i) => {
    const a = 1 + i;
    return `  - { name: worker-${a}, address: 10.0.${1 + Math.floor(a / 250)}.${(a % 250) + 1}, role: worker }`;
  });
  return EXAMPLE.replace(/ {2}- \{ name: worker-1.*\n {2}- \{ name: worker-2.*\n/, `${workers.join("\n")}\n`);
}

function timeRun(cmd: string[], env: Record<string, string>): number {
  const t = performance.now();
  const r = Bun.spawnSync(cmd, { cwd: ROOT, env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed: ${r.stderr.toString().slice(-2000)}`);
  return (performance.now() - t) / 1000;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Lines of every config file and phase script rendered for the spec. */
function renderedLines(text: string): number {
  const spec = parseSpec(text, "bench.yaml");
  const s = ensureSecrets(spec);
  const steps = renderCluster(spec, { caCertPem: s.caCert, caCertHash: caCertHash(s.caCert) });
  const lines = (t: string) => t.split("\n").length;
  return steps.reduce((n, st) => n + lines(st.script) + st.files.reduce((m, f) => m + lines(f.content), 0), 0);
}

await runCommand(() => {
  const { values } = parseCommand({
    name: "bench/synth",
    usage: "bun bench/synth.ts [--runs N] [--json]",
    description: "Measures synth wall time (direct and through the cdktf CLI) and spec vs rendered lines.",
    options: { runs: { type: "string" }, json: { type: "boolean" } },
  });
  const runs = Number(values.runs ?? 5);
  const work = mkdtempSync(join(tmpdir(), "kha-bench-synth-"));
  const env = { KUBEADM_HA_SECRETS_DIR: join(work, "secrets"), CHECKPOINT_DISABLE: "1" };
  const rows: Record<string, unknown>[] = [];
  for (const [label, text] of [
    ["example (3 cp + 2 workers)", EXAMPLE],
    ["3 cp + 10 workers", specWithWorkers(10)],
    ["3 cp + 50 workers", specWithWorkers(50)],
    ["3 cp + 200 workers", specWithWorkers(200)],
  ] as const) {
    const file = join(work, `${label.replace(/\W+/g, "-")}.yaml`);
    writeFileSync(file, text);
    const out = join(work, "out");
    const e = { ...env, CLUSTER_SPEC: file, CDKTF_OUTDIR: out };
    timeRun(["node_modules/.bin/bun", "run", "main.ts"], e); // warm-up (and secrets generation)
    const direct = median(Array.from({ length: runs }, () => timeRun(["node_modules/.bin/bun", "run", "main.ts"], e)));
    const cli = label.startsWith("example")
      ? median(
          Array.from({ length: Math.min(runs, 3) }, () =>
            timeRun(["node_modules/.bin/cdktf", "synth", "--output", out], e),
          ),
        )
      : undefined;
    const specLines = text.split("\n").filter((l) => l.trim() && !l.trim().startsWith("#")).length;
    process.env.KUBEADM_HA_SECRETS_DIR = env.KUBEADM_HA_SECRETS_DIR;
    const rendered = renderedLines(text);
    rows.push({
      spec: label,
      nodes: (text.match(/role:/g) ?? []).length,
      directSeconds: Number(direct.toFixed(3)),
      cliSeconds: cli === undefined ? null : Number(cli.toFixed(3)),
      cliOverDirect: cli === undefined ? null : Number((cli / direct).toFixed(1)),
      specLines,
      renderedLines: rendered,
    });
  }
  if (values.json) {
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
    return;
  }
  process.stdout.write(
    "| spec | nodes | direct synth (s) | cdktf synth (s) | CLI / direct | spec lines | rendered lines |\n|---|---|---|---|---|---|---|\n",
  );
  for (const r of rows)
    process.stdout.write(
      `| ${r.spec} | ${r.nodes} | ${r.directSeconds} | ${r.cliSeconds ?? "—"} | ${r.cliOverDirect ?? "—"} | ${r.specLines} | ${r.renderedLines} |\n`,
    );
});
