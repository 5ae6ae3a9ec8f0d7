// Synth wall time: direct `bun run main.ts` against a bare `bun -e 0` measured in the same run
// (interleaved, so a busy machine slows both) and against the cdktf CLI, for the example spec and
// for 3 control planes + 10/50/200 workers; plus spec lines vs rendered lines. Medians and worst.
// A synth normally finds the review tree as it renders it (left alone); "spec changed" alternates
// two specs, so every synth rewrites the tree. Targets: example median <= 0.3 s and <= 12x bare
// bun, 200 workers <= 1.5 s.
// Usage: bun bench/synth.ts [--runs N] [--cli-runs N] [--json]
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseCommand, runCommand } from "../lib/cli.ts";
import { renderCluster } from "../lib/render/index.ts";
import { caCertHash, ensureSecrets } from "../lib/secrets.ts";
import { parseSpec } from "../lib/spec/load.ts";

const ROOT = resolve(import.meta.dir, "..");
const BUN = join(ROOT, "node_modules/.bin/bun");
const EXAMPLE = readFileSync(join(ROOT, "cluster.example.yaml"), "utf8");
const TARGET = { exampleSeconds: 0.3, exampleOverBare: 12, workers200Seconds: 1.5 };

function specWithWorkers(n: number): string {
  const workers = Array.from({ length: n }, (_, i) => {
    const a = 1 + i;
    return `  - { name: worker-${a}, address: 10.0.${1 + Math.floor(a / 250)}.${(a % 250) + 1}, role: worker }`;
  });
  return EXAMPLE.replace(/ {2}- \{ name: worker-1.*\n {2}- \{ name: worker-2.*\n/, `${workers.join("\n")}\n`);
}

function timeRun(cmd: string[], env: Record<string, string>, cwd: string): number {
  const t = performance.now();
  const r = Bun.spawnSync(cmd, { cwd, env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed: ${r.stderr.toString().slice(-2000)}`);
  return (performance.now() - t) / 1000;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const worst = (xs: number[]) => Math.max(...xs);
const round = (x: number, digits = 3) => Number(x.toFixed(digits));

/** Lines of every config file and phase script rendered for the spec. */
function renderedLines(text: string): number {
  const spec = parseSpec(text, "bench.yaml");
  const s = ensureSecrets(spec);
  const steps = renderCluster(spec, { caCertPem: s.caCert, caCertHash: caCertHash(s.caCert) });
  const lines = (t: string) => t.split("\n").length;
  const run = (r: { script: string; files: { content: string }[] }) =>
    lines(r.script) + r.files.reduce((m, f) => m + lines(f.content), 0);
  return steps.reduce((n, st) => n + run(st) + (st.before ? run(st.before) : 0) + (st.after ? run(st.after) : 0), 0);
}

await runCommand(() => {
  const { values } = parseCommand({
    name: "bench/synth",
    usage: "bun bench/synth.ts [--runs N] [--cli-runs N] [--json]",
    description:
      "Measures synth wall time (direct, against a bare `bun -e 0` in the same run, and through the cdktf CLI), median and worst of N runs, and spec vs rendered lines.",
    options: { runs: { type: "string" }, "cli-runs": { type: "string" }, json: { type: "boolean" } },
  });
  const runs = Math.max(1, Number(values.runs ?? 7));
  const cliRuns = Math.max(1, Number(values["cli-runs"] ?? 5));
  const work = mkdtempSync(join(tmpdir(), "kha-bench-synth-"));
  const env = { KUBEADM_HA_SECRETS_DIR: join(work, "secrets"), CHECKPOINT_DISABLE: "1" };
  const rows: Record<string, unknown>[] = [];
  for (const [label, text] of [
    ["example (3 cp + 2 workers)", EXAMPLE],
    ["3 cp + 10 workers", specWithWorkers(10)],
    ["3 cp + 50 workers", specWithWorkers(50)],
    ["3 cp + 200 workers", specWithWorkers(200)],
  ] as const) {
    const example = label.startsWith("example");
    const file = join(work, `${label.replace(/\W+/g, "-")}.yaml`);
    writeFileSync(file, text);
    const e = { ...env, CLUSTER_SPEC: file, CDKTF_OUTDIR: join(work, "cdktf.out") };
    const synth = () => timeRun([BUN, "run", join(ROOT, "main.ts")], e, work);
    synth(); // warm-up: secrets, the review tree, the OS's file cache
    const direct: number[] = [];
    const bare: number[] = [];
    for (let i = 0; i < runs; i++) {
      bare.push(timeRun([BUN, "-e", "0"], {}, work));
      direct.push(synth());
    }
    let changed: number[] | undefined;
    let cli: number[] | undefined;
    if (example) {
      // Two specs that differ in one haproxy timeout: each synth finds the other's tree and rewrites it.
      const other = join(work, "example-changed.yaml");
      writeFileSync(
        other,
        text.replace("networking:", "loadBalancer: { haproxy: { timeouts: { client: 2h } } }\nnetworking:"),
      );
      changed = Array.from({ length: runs }, (_, i) =>
        timeRun([BUN, "run", join(ROOT, "main.ts")], { ...e, CLUSTER_SPEC: i % 2 ? file : other }, work),
      );
      cli = Array.from({ length: cliRuns }, () =>
        timeRun([join(ROOT, "node_modules/.bin/cdktf"), "synth", "--output", join(work, "cdktf.out")], e, ROOT),
      );
    }
    const specLines = text.split("\n").filter((l) => l.trim() && !l.trim().startsWith("#")).length;
    process.env.KUBEADM_HA_SECRETS_DIR = env.KUBEADM_HA_SECRETS_DIR;
    rows.push({
      spec: label,
      nodes: (text.match(/role:/g) ?? []).length,
      runs,
      directMedian: round(median(direct)),
      directWorst: round(worst(direct)),
      bareMedian: round(median(bare)),
      directOverBare: round(median(direct) / median(bare), 1),
      changedMedian: changed ? round(median(changed)) : null,
      changedWorst: changed ? round(worst(changed)) : null,
      cliMedian: cli ? round(median(cli)) : null,
      cliWorst: cli ? round(worst(cli)) : null,
      cliOverDirect: cli ? round(median(cli) / median(direct), 1) : null,
      specLines,
      renderedLines: renderedLines(text),
    });
  }
  const ex = rows[0]!;
  const w200 = rows[3]!;
  const targets = {
    exampleMedian: {
      value: ex.directMedian,
      target: TARGET.exampleSeconds,
      met: (ex.directMedian as number) <= TARGET.exampleSeconds,
    },
    exampleOverBare: {
      value: ex.directOverBare,
      target: TARGET.exampleOverBare,
      met: (ex.directOverBare as number) <= TARGET.exampleOverBare,
    },
    workers200Median: {
      value: w200.directMedian,
      target: TARGET.workers200Seconds,
      met: (w200.directMedian as number) <= TARGET.workers200Seconds,
    },
  };
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ rows, targets }, null, 2)}\n`);
    return;
  }
  const s = (x: unknown) => (x === null || x === undefined ? "—" : String(x));
  process.stdout.write(
    "| spec | nodes | direct synth, median / worst (s) | bare `bun -e 0` (s) | direct / bare | spec changed, median / worst (s) | `cdktf synth`, median / worst (s) | CLI / direct | spec lines | rendered lines |\n|---|---|---|---|---|---|---|---|---|---|\n",
  );
  for (const r of rows)
    process.stdout.write(
      `| ${r.spec} | ${r.nodes} | ${r.directMedian} / ${r.directWorst} | ${r.bareMedian} | ${r.directOverBare} | ${r.changedMedian === null ? "—" : `${r.changedMedian} / ${r.changedWorst}`} | ${r.cliMedian === null ? "—" : `${r.cliMedian} / ${r.cliWorst}`} | ${s(r.cliOverDirect)} | ${r.specLines} | ${r.renderedLines} |\n`,
    );
  process.stdout.write(
    `\n${runs} runs each (${cliRuns} for the CLI). Targets: example median ${targets.exampleMedian.value} s <= ${TARGET.exampleSeconds} s ${targets.exampleMedian.met ? "met" : "MISSED"}; ` +
      `${targets.exampleOverBare.value}x bare bun <= ${TARGET.exampleOverBare}x ${targets.exampleOverBare.met ? "met" : "MISSED"}; ` +
      `200 workers median ${targets.workers200Median.value} s <= ${TARGET.workers200Seconds} s ${targets.workers200Median.met ? "met" : "MISSED"}.\n`,
  );
});
