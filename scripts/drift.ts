// bun run drift: compare what every host holds with what the spec renders; see lib/ops/drift.ts.
// Exit codes: 0 no drift, 1 a host could not be checked (or --fix failed), 2 bad input, 3 drift found
// (Terraform's plan -detailed-exitcode says 2 for changes; here 2 is bad input, as in every command).
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { defineCommand, JSON_FLAG, progress, runCommand, SPEC_FLAG } from "../lib/cli.ts";
import { EXIT, UserError } from "../lib/errors.ts";
import { closeAll, connectAll } from "../lib/ops/connect.ts";
import {
  driftRows,
  fixCommandLine,
  fixPlan,
  type NodeDrift,
  replaceAddresses,
  runDrift,
  stackDir,
} from "../lib/ops/drift.ts";
import { formatTable, reportData } from "../lib/ops/report.ts";
import { renderCluster } from "../lib/render/index.ts";
import { caCertHash, ensureSecrets, terraformEnv } from "../lib/secrets.ts";

/** Drift found: Terraform's "2 = changes", moved to 3 because 2 is bad input in every command. */
const DRIFT_FOUND = 3;

const command = defineCommand({
  name: "drift",
  usage: "bun run drift [--spec FILE] [--json] [--fix [--yes] [--dry-run]]",
  description:
    "Compares, over SSH, the sha256 and mode of every file the current spec renders for each host (configs, scripts; secrets are never rendered) with the file on the host, and lists host, path and what differs (changed, missing, mode, or unwanted: a file an earlier spec installed that the current one removes, such as an unscheduled backup timer), plus the Terraform addresses whose re-apply puts them back: terraform apply -replace=ADDRESS ... in cdktf.out/stacks/<cluster>. Read-only unless --fix. Local drift (spec changed since the last apply) is Terraform's: terraform plan -detailed-exitcode in the stack directory.",
  options: {
    ...SPEC_FLAG,
    ...JSON_FLAG,
    fix: {
      type: "boolean",
      description: "run that terraform apply -replace=... (secrets as TF_VAR_*; terraform asks unless --yes)",
    },
    yes: { type: "boolean", description: "with --fix: apply without asking (needed without a terminal)" },
    "dry-run": { type: "boolean", description: "with --fix: print the apply command instead of running it" },
  },
  spec: "hosts",
  exits: {
    0: "no drift (or --fix applied)",
    1: "a host could not be checked, or --fix failed",
    2: "bad input (flags, spec, secrets, missing stack for --fix), or --fix refused",
    3: "drift found (also after --fix --dry-run): like terraform plan -detailed-exitcode's 2",
  },
  jsonData:
    "{cluster, summary, rows, drift: [{host, path, kind, ...}], replace: [ADDRESS], unchecked: [HOST], command?}",
  examples: ["bun run drift --spec cluster.yaml", "bun run drift --spec cluster.yaml --fix --dry-run"],
});

await runCommand(command, async (cli) => {
  const { values } = cli;
  // --fix changes hosts: terraform asks before it applies, so here only the refusal without a
  // terminal (and without --yes), before any work.
  if (values.fix && !values["dry-run"])
    await cli.confirm("re-applies steps on the drifted hosts (--dry-run shows the command)", { ask: false });
  if ((values.yes || values["dry-run"]) && !values.fix)
    throw new UserError(`--${values.yes ? "yes" : "dry-run"} applies to --fix only. Add --fix, or drop it.`);
  const spec = cli.spec();
  const secrets = ensureSecrets(spec, { create: false });
  const steps = renderCluster(spec, { caCertPem: secrets.caCert, caCertHash: caCertHash(secrets.caCert) });
  if (values.fix) {
    const dir = stackDir(spec);
    if (!existsSync(resolve(dir, "cdk.tf.json")))
      throw new UserError(
        `--fix needs the synthesized stack in ${dir}, and there is none. Run \`bun run synth\` (same spec) first, then drift --fix again.`,
      );
  }

  const sessions = await connectAll(spec, spec.nodes, { phase: "drift" });
  let results: NodeDrift[];
  try {
    results = await runDrift(spec, steps, sessions);
  } finally {
    closeAll(sessions);
  }
  const items = results.flatMap((r) => r.items);
  const unchecked = results.filter((r) => r.error).map((r) => r.host);
  const addresses = replaceAddresses(spec, steps, items);
  const plan = fixPlan(spec, addresses, { yes: values.yes, variables: Object.keys(terraformEnv(secrets)) });
  const rows = driftRows(results, sessions);

  const data = reportData(spec.name, rows, {
    drift: items,
    replace: addresses,
    unchecked,
    ...(addresses.length ? { command: fixCommandLine(plan) } : {}),
  });
  if (!cli.json) {
    process.stdout.write(formatTable(rows, `drift of cluster ${spec.name}: hosts vs rendered files`));
    if (addresses.length) {
      process.stdout.write(
        `\nre-apply to put the hosts back:\n  ${addresses.map((a) => `-replace=${a}`).join(" \\\n  ")}\n`,
      );
      process.stdout.write(`command: ${fixCommandLine(plan)}\n`);
    }
  }
  const found = `${items.length} drifted file(s) on ${new Set(items.map((i) => i.host)).size} host(s); re-apply with bun run drift --fix`;

  if (addresses.length && values.fix) {
    if (values["dry-run"]) {
      process.stderr.write(
        `dry run: would run (with ${plan.variables.join(", ")} from the secrets file):\n${fixCommandLine(plan)}\n`,
      );
      return { code: DRIFT_FOUND, data, error: found };
    }
    const env = {
      ...process.env,
      ...terraformEnv(secrets),
      CHECKPOINT_DISABLE: "1",
      ...(existsSync(resolve(".tf/terraformrc")) && !process.env.TF_CLI_CONFIG_FILE
        ? { TF_CLI_CONFIG_FILE: resolve(".tf/terraformrc") }
        : {}),
    };
    // With --json, stdout is the envelope's alone: terraform's output goes to stderr.
    const out = cli.json ? 2 : "inherit";
    if (plan.needsInit) {
      progress("drift", "fix", `terraform init in ${plan.cwd}`);
      const init = Bun.spawn(["terraform", "init", "-input=false"], {
        cwd: plan.cwd,
        env,
        stdio: ["inherit", out, "inherit"],
      });
      if ((await init.exited) !== 0)
        throw new UserError("terraform init failed in the stack directory (see above).", EXIT.failed);
    }
    progress("drift", "fix", `terraform apply ${addresses.map((a) => `-replace=${a}`).join(" ")}`);
    const apply = Bun.spawn(plan.argv, { cwd: plan.cwd, env, stdio: ["inherit", out, "inherit"] });
    const code = await apply.exited;
    if (code !== 0)
      throw new UserError(
        `terraform apply exited ${code}; the hosts may still drift. Run bun run drift again.`,
        EXIT.failed,
      );
    progress("drift", "fix", "applied; run bun run drift again to confirm the hosts match");
    return { data };
  }
  if (items.length) {
    progress("drift", "done", found);
    return { code: DRIFT_FOUND, data, error: found };
  }
  if (unchecked.length) {
    progress("drift", "done", `could not check ${unchecked.join(", ")}`);
    return { code: EXIT.failed, data, error: `could not check ${unchecked.join(", ")} (see the ssh rows)` };
  }
  progress("drift", "done", "no drift");
  return { data };
});
