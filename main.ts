// Entry point: spec ► secrets ► rendered steps ► HaCluster stack ► cdktf.out + the review tree.
// `bun run main.ts` (fast) and `npx cdktf synth|deploy|diff` both run this.
import { plugin } from "bun";
import { MODULE_STAND_INS } from "./constructs/module-stand-ins.ts";
import { runCommand } from "./lib/cli.ts";
import { loadSpec, specPath } from "./lib/spec/load.ts";

if (import.meta.main) {
  // Before cdktf loads (hence the dynamic import): lighter stand-ins for modules cdktf requires.
  plugin(MODULE_STAND_INS);
  const { synthesize } = await import("./constructs/stack.ts");
  await runCommand(() => {
    const file = specPath();
    const spec = loadSpec(file);
    const { stack, stackDir } = synthesize(spec, { outdir: process.env.CDKTF_OUTDIR ?? "cdktf.out", specFile: file });
    const unknown = stack.cluster.connections.unknownHosts;
    if (unknown.length > 0) {
      process.stderr.write(
        `warning: no known host key for ${unknown.join(", ")} in ${spec.ssh.knownHostsPath}; Terraform will ask for host_key_* variables. Run \`bun run trust-hosts\` to record them after checking the fingerprints.\n`,
      );
    }
    process.stderr.write(
      `synthesized stack "${spec.name}" (${spec.terraform.resources} resources) into ${stackDir}; review every file and phase script in ${stack.renderDir}\n`,
    );
  });
}
