// bun run validate [--spec FILE] [--json]: check a cluster spec and list every problem in it.
import { defineCommand, JSON_FLAG, runCommand, SPEC_FLAG } from "../lib/cli.ts";
import { UserError } from "../lib/errors.ts";
import { loadChosenSpec, type Problem, SpecError } from "../lib/spec/load.ts";
import { controlPlanes, endpoint, workers } from "../lib/spec/topology.ts";

const command = defineCommand({
  name: "validate",
  usage: "bun run validate [--spec FILE] [--json]",
  description:
    "Checks a cluster spec and reports every problem at once, each with its line:column, the field, the bad value " +
    "and the fix. Reads the spec only. Without --spec and CLUSTER_SPEC it checks ./cluster.yaml, and where that " +
    "does not exist the example spec (cluster.example.yaml), saying so on stderr.",
  options: { ...SPEC_FLAG, ...JSON_FLAG },
  spec: "fallback",
  exits: { 0: "the spec is valid", 2: "the spec is invalid (every problem listed), or bad usage" },
  jsonData: "{file, valid, problems: [{path, line, column, message}]}",
  examples: ["bun run validate --spec cluster.yaml", "bun run validate --spec cluster.yaml --json"],
});

const count = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

await runCommand(command, (cli) => {
  const file = cli.specChoice().file;
  try {
    const spec = loadChosenSpec(cli.specChoice());
    if (!cli.json) {
      const cps = controlPlanes(spec).length;
      process.stdout.write(
        `ok: ${file}: ${count(cps, "control plane")}, ${count(workers(spec).length, "worker")}, VIP ${endpoint(spec)}\n`,
      );
    }
    return { data: { file, valid: true, problems: [] } };
  } catch (e) {
    if (!cli.json || !(e instanceof UserError)) throw e;
    const problems: Problem[] =
      e instanceof SpecError ? e.problems : [{ path: "", line: null, column: null, message: e.message }];
    return { code: e.exitCode, data: { file, valid: false, problems }, error: e.message };
  }
});
