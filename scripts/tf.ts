// bun run deploy|diff|destroy: cdktf with the cluster's secrets passed as
// TF_VAR_* environment variables (never as arguments, files in the stack, or logs).
import { resolve } from "node:path";
import { type CommandDef, defineCommand, type Flags, helpText, runCommand, SPEC_FLAG } from "../lib/cli.ts";
import { UserError } from "../lib/errors.ts";
import { ensureSecrets, terraformEnv } from "../lib/secrets.ts";
import { chooseSpecFile, loadChosenSpec } from "../lib/spec/load.ts";

const WHAT: Record<string, string> = {
  deploy: "applies the stack to the hosts; cdktf shows the plan and asks first (its own prompt) unless --auto-approve",
  diff: "shows what a deploy would change (terraform plan); changes nothing",
  destroy: "destroys the stack's resources; cdktf asks first (its own prompt) unless --auto-approve",
};

const commandFor = (verb: string) =>
  defineCommand({
    name: verb,
    usage: `bun run ${verb} [--spec FILE] [cdktf flags]`,
    description: `Runs \`cdktf ${verb}\` for the spec: ${WHAT[verb]}. The spec is synthesized first (main.ts, the same spec through CLUSTER_SPEC), and the cluster secrets from the 0600 secrets file reach terraform only as TF_VAR_* variables. Every other flag goes to cdktf unchanged.`,
    options: { ...SPEC_FLAG },
    spec: "hosts",
    exits: { 0: "cdktf succeeded", 1: "cdktf failed (its own exit code, passed on)", 2: "bad input (spec, secrets)" },
    examples: [`bun run ${verb} --spec cluster.yaml`, `CLUSTER_SPEC=cluster.yaml bun run ${verb}`],
  }) as CommandDef<Flags>;

await runCommand(async () => {
  const [verb, ...args] = process.argv.slice(2);
  if (!verb || !(verb in WHAT))
    throw new UserError(
      `${verb ? `unknown command "${verb}"` : "no command given"}: use bun run deploy, bun run diff or bun run destroy (each with --help).`,
    );
  // Our flags (--spec, --help); the rest, with or without a leading --, is cdktf's.
  let flag: string | undefined;
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--help" || a === "-h") {
      process.stdout.write(helpText(commandFor(verb)));
      return 0;
    }
    if (a === "--spec" || a.startsWith("--spec=")) {
      flag = a === "--spec" ? args[++i] : a.slice("--spec=".length);
      if (flag === undefined || flag.startsWith("-"))
        throw new UserError(`${verb}: --spec needs a file, e.g. --spec cluster.yaml.`);
    } else if (a !== "--" || rest.length) rest.push(a);
  }
  const choice = chooseSpecFile({ command: verb, use: "hosts", flag });
  const spec = loadChosenSpec(choice);
  const env = {
    ...process.env,
    ...terraformEnv(ensureSecrets(spec)),
    // cdktf runs main.ts, which reads the spec from here: the same one as ours.
    CLUSTER_SPEC: resolve(choice.file),
    CHECKPOINT_DISABLE: "1",
    TF_CLI_CONFIG_FILE: process.env.TF_CLI_CONFIG_FILE ?? resolve(".tf/terraformrc"),
  };
  const proc = Bun.spawn([resolve(import.meta.dir, "../node_modules/.bin/cdktf"), verb, ...rest], {
    env,
    stdio: ["inherit", "inherit", "inherit"],
  });
  return await proc.exited;
});
