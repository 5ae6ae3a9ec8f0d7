// bun run deploy|diff|destroy: cdktf with the cluster's secrets passed as
// TF_VAR_* environment variables (never as arguments, files in the stack, or logs).
import { resolve } from "node:path";
import { runCommand } from "../lib/cli.ts";
import { UserError } from "../lib/errors.ts";
import { ensureSecrets, terraformEnv } from "../lib/secrets.ts";
import { loadSpec, specPath } from "../lib/spec/load.ts";

const COMMANDS = ["deploy", "diff", "destroy", "synth"];

await runCommand(async () => {
  const [command, ...rest] = process.argv.slice(2);
  if (!command || command === "--help" || command === "-h" || !COMMANDS.includes(command)) {
    const usage = `usage: bun run deploy|diff|destroy [-- cdktf flags]\n\nRuns \`cdktf ${COMMANDS.join("|")}\` for the spec in $CLUSTER_SPEC (default cluster.yaml, else cluster.example.yaml), with the cluster secrets from the 0600 secrets file passed as TF_VAR_* variables. diff exits like \`terraform plan -detailed-exitcode\` would not: use \`bun run drift\` or terraform directly for exit codes.\n`;
    if (command === "--help" || command === "-h") {
      process.stdout.write(usage);
      return 0;
    }
    throw new UserError(`unknown command "${command ?? ""}". ${usage}`);
  }
  const spec = loadSpec(specPath());
  const env = {
    ...process.env,
    ...terraformEnv(ensureSecrets(spec)),
    CHECKPOINT_DISABLE: "1",
    TF_CLI_CONFIG_FILE: process.env.TF_CLI_CONFIG_FILE ?? resolve(".tf/terraformrc"),
  };
  const proc = Bun.spawn([resolve("node_modules/.bin/cdktf"), command, ...rest], {
    env,
    stdio: ["inherit", "inherit", "inherit"],
  });
  return await proc.exited;
});
