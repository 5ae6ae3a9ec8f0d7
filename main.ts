// Entry point: spec ► secrets ► rendered steps ► HaCluster stack ► cdktf.out + the review tree.
// `bun run main.ts` (= `bun run synth`, fast) and `npx cdktf synth|deploy|diff` (through
// CLUSTER_SPEC, as scripts/tf.ts sets it) both run this.
import { plugin } from "bun";
import { MODULE_STAND_INS } from "./constructs/module-stand-ins.ts";
import { defineCommand, JSON_FLAG, runCommand, SPEC_FLAG, stderrLine } from "./lib/cli.ts";

const command = defineCommand({
  name: "synth",
  usage: "bun run synth [--spec FILE] [--json]",
  description:
    "Validates the spec, renders every config file and phase script, and writes the Terraform stack " +
    "(cdktf.out/stacks/<cluster>/cdk.tf.json, or $CDKTF_OUTDIR) and the review tree out/<cluster>/<node>/. " +
    "Creates the cluster's secrets file on first use (0600, outside git); contacts no host. Without --spec " +
    "and CLUSTER_SPEC it uses ./cluster.yaml, and where that does not exist the example spec " +
    "(cluster.example.yaml), saying so on stderr.",
  options: { ...SPEC_FLAG, ...JSON_FLAG },
  spec: "fallback",
  exits: { 0: "the stack and the review tree are written", 1: "writing failed", 2: "bad input: the spec or a flag" },
  jsonData: "{file, cluster, resources, stackDir, renderDir, unknownHosts}",
  examples: ["bun run synth --spec cluster.yaml", "bun run synth --spec cluster.yaml --json"],
});

if (import.meta.main) {
  await runCommand(command, async (cli) => {
    const { file } = cli.specChoice();
    const spec = cli.spec();
    // Before cdktf loads (hence the dynamic import): lighter stand-ins for modules cdktf requires.
    plugin(MODULE_STAND_INS);
    const { synthesize } = await import("./constructs/stack.ts");
    const { stack, stackDir } = synthesize(spec, { outdir: process.env.CDKTF_OUTDIR ?? "cdktf.out", specFile: file });
    const unknown = stack.cluster.connections.unknownHosts;
    if (unknown.length > 0) {
      stderrLine(
        `warning: no known host key for ${unknown.join(", ")} in ${spec.ssh.knownHostsPath}; Terraform will ask for host_key_* variables. Run \`bun run trust-hosts\` to record them after checking the fingerprints.`,
      );
    }
    stderrLine(
      `synthesized stack "${spec.name}" (${spec.terraform.resources} resources) into ${stackDir}; review every file and phase script in ${stack.renderDir}`,
    );
    return {
      data: {
        file,
        cluster: spec.name,
        resources: spec.terraform.resources,
        stackDir,
        renderDir: stack.renderDir,
        unknownHosts: unknown,
      },
    };
  });
}
