// bun scripts/validate.ts [--json] [FILE]: check a cluster spec and list every problem in it.
import { parseCommand, runCommand } from "../lib/cli.ts";
import { UserError } from "../lib/errors.ts";
import { loadSpec, type Problem, SpecError, specPath } from "../lib/spec/load.ts";
import { controlPlanes, endpoint, workers } from "../lib/spec/topology.ts";

const command = {
  name: "validate",
  usage: "bun scripts/validate.ts [--json] [FILE]",
  description:
    "Checks a cluster spec (FILE, else $CLUSTER_SPEC, else cluster.yaml, else cluster.example.yaml) and reports " +
    "every problem at once, each with its line:column, the field, the bad value and the fix. Exits 0 when the " +
    "spec is valid, 2 when it is not. --json prints { valid, file, problems: [{ path, line, column, message }] } on stdout.",
  options: { json: { type: "boolean" } },
  allowPositionals: true,
} as const;

const count = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

runCommand(() => {
  const { values, positionals } = parseCommand(command);
  if (positionals.length > 1)
    throw new UserError(
      `validate: expected one spec file, got ${positionals.length} (${positionals.join(", ")}). Pass a single FILE.`,
    );
  const file = specPath(positionals[0]);
  const report = (valid: boolean, problems: Problem[]) =>
    process.stdout.write(`${JSON.stringify({ valid, file, problems }, null, 2)}\n`);
  try {
    const spec = loadSpec(file);
    if (values.json) report(true, []);
    else {
      const cps = controlPlanes(spec).length;
      process.stdout.write(
        `ok: ${file}: ${count(cps, "control plane")}, ${count(workers(spec).length, "worker")}, VIP ${endpoint(spec)}\n`,
      );
    }
    return 0;
  } catch (e) {
    if (!values.json || !(e instanceof UserError)) throw e;
    report(false, e instanceof SpecError ? e.problems : [{ path: "", line: null, column: null, message: e.message }]);
    return 2;
  }
});
