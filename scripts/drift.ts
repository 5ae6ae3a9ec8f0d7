// bun run drift: compare what every host holds with what the spec renders; see lib/ops/drift.ts.
// Exit codes (as issue 5 asks, drift is 2, so bad input moves to 64 in this command only):
//   0 no drift, 2 drift, 1 a host could not be checked (or --fix failed), 64 bad input.
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { parseCommand, progress, runCommand } from "../lib/cli.ts";
import { UserError } from "../lib/errors.ts";
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
import { formatTable, jsonReport } from "../lib/ops/report.ts";
import { renderCluster } from "../lib/render/index.ts";
import { caCertHash, ensureSecrets, terraformEnv } from "../lib/secrets.ts";
import { loadSpec, specPath } from "../lib/spec/load.ts";

const BAD_INPUT = 64;

/** Input problems (flags, spec, secrets, stack) exit 64 here: 2 means drift. */
function asInput<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof UserError) throw new UserError(e.message, BAD_INPUT);
    throw e;
  }
}

await runCommand(async () => {
  const { values, positionals } = asInput(() =>
    parseCommand({
      name: "drift",
      usage: "bun run drift [--json] [--fix [--yes] [--dry-run]] [SPEC]",
      description: `Compares, over SSH, the sha256 and mode of every file the current spec renders for each host (configs, scripts; secrets are never rendered) with the file on the host, and lists host, path and what differs (changed, missing, mode, or unwanted: a file an earlier spec installed that the current one removes, such as an unscheduled backup timer), plus the Terraform addresses whose re-apply puts them back: terraform apply -replace=ADDRESS ... in ${"cdktf.out/stacks/<cluster>"}. --fix runs that apply (secrets passed as TF_VAR_* variables; it asks for confirmation unless --yes); --dry-run prints the command instead. Local drift (spec changed since the last apply) is Terraform's: terraform plan -detailed-exitcode in the stack directory exits 0 (no changes), 2 (changes) or 1 (error). Exit codes: 0 no drift, 2 drift found (also after a --dry-run), 1 a host could not be checked or --fix failed, ${BAD_INPUT} bad input (flags, spec, secrets, missing stack).`,
      options: {
        json: { type: "boolean" },
        fix: { type: "boolean" },
        yes: { type: "boolean" },
        "dry-run": { type: "boolean" },
      },
      allowPositionals: true,
    }),
  );
  const spec = asInput(() => loadSpec(specPath(positionals[0])));
  const secrets = asInput(() => ensureSecrets(spec, { create: false }));
  const steps = renderCluster(spec, { caCertPem: secrets.caCert, caCertHash: caCertHash(secrets.caCert) });
  if (values.fix) {
    const dir = stackDir(spec);
    if (!existsSync(resolve(dir, "cdk.tf.json")))
      throw new UserError(
        `--fix needs the synthesized stack in ${dir}, and there is none. Run \`bun run synth\` (same spec) first, then drift --fix again.`,
        BAD_INPUT,
      );
  }

  const sessions = await connectAll(spec, spec.nodes, { phase: "drift" }).catch((e) => {
    throw e instanceof UserError ? new UserError(e.message, BAD_INPUT) : e;
  });
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

  if (values.json) {
    process.stdout.write(
      jsonReport("drift", rows, {
        drift: items,
        replace: addresses,
        unchecked,
        ...(addresses.length ? { command: fixCommandLine(plan) } : {}),
      }),
    );
  } else {
    process.stdout.write(formatTable(rows, `drift of cluster ${spec.name}: hosts vs rendered files`));
    if (addresses.length) {
      process.stdout.write(
        `\nre-apply to put the hosts back:\n  ${addresses.map((a) => `-replace=${a}`).join(" \\\n  ")}\n`,
      );
      process.stdout.write(`command: ${fixCommandLine(plan)}\n`);
    }
  }

  if (addresses.length && values.fix) {
    if (values["dry-run"]) {
      process.stderr.write(
        `dry run: would run (with ${plan.variables.join(", ")} from the secrets file):\n${fixCommandLine(plan)}\n`,
      );
      return 2;
    }
    const env = {
      ...process.env,
      ...terraformEnv(secrets),
      CHECKPOINT_DISABLE: "1",
      ...(existsSync(resolve(".tf/terraformrc")) && !process.env.TF_CLI_CONFIG_FILE
        ? { TF_CLI_CONFIG_FILE: resolve(".tf/terraformrc") }
        : {}),
    };
    if (plan.needsInit) {
      progress("drift", "fix", `terraform init in ${plan.cwd}`);
      const init = Bun.spawn(["terraform", "init", "-input=false"], {
        cwd: plan.cwd,
        env,
        stdio: ["inherit", "inherit", "inherit"],
      });
      if ((await init.exited) !== 0)
        throw new UserError("terraform init failed in the stack directory (see above).", 1);
    }
    progress("drift", "fix", `terraform apply ${addresses.map((a) => `-replace=${a}`).join(" ")}`);
    const apply = Bun.spawn(plan.argv, { cwd: plan.cwd, env, stdio: ["inherit", "inherit", "inherit"] });
    const code = await apply.exited;
    if (code !== 0)
      throw new UserError(`terraform apply exited ${code}; the hosts may still drift. Run bun run drift again.`, 1);
    progress("drift", "fix", "applied; run bun run drift again to confirm the hosts match");
    return 0;
  }
  if (items.length) {
    progress("drift", "done", `${items.length} drifted file(s) on ${new Set(items.map((i) => i.host)).size} host(s)`);
    return 2;
  }
  if (unchecked.length) {
    progress("drift", "done", `could not check ${unchecked.join(", ")}`);
    return 1;
  }
  progress("drift", "done", "no drift");
  return 0;
});
