// Entry point: spec ► secrets ► rendered steps ► HaCluster stack ► cdktf.out.
// `bun run main.ts` (fast) and `npx cdktf synth|deploy|diff` both run this.
import { resolve } from "node:path";
import { App, CloudBackend, LocalBackend, NamedCloudWorkspace, TerraformOutput, TerraformStack } from "cdktf";
import type { Construct } from "constructs";
import { HaCluster } from "./constructs/ha-cluster.ts";
import { builtinBackend, hashicorpBackend } from "./constructs/step-backend.ts";
import { runCommand } from "./lib/cli.ts";
import { renderCluster } from "./lib/render/index.ts";
import { caCertHash, ensureSecrets } from "./lib/secrets.ts";
import { loadSpec, specPath } from "./lib/spec/load.ts";
import type { ClusterSpec } from "./lib/spec/schema.ts";
import { endpoint } from "./lib/spec/topology.ts";

export interface StackOptions {
  spec: ClusterSpec;
  /** Absolute directory for the reviewable rendered tree (default <cwd>/out/<cluster>). */
  renderDir?: string;
  /** Absolute directory of the synthesized stack (to reference renderDir relatively). */
  stackDir: string;
}

export class KubeadmHaStack extends TerraformStack {
  readonly cluster: HaCluster;

  constructor(scope: Construct, id: string, opts: StackOptions) {
    super(scope, id);
    const { spec } = opts;
    if (spec.terraform.cloud) {
      const c = spec.terraform.cloud;
      new CloudBackend(this, {
        organization: c.organization,
        hostname: c.hostname,
        workspaces: new NamedCloudWorkspace(c.workspace),
      });
    } else {
      new LocalBackend(this, { path: "terraform.tfstate" });
    }
    const secrets = ensureSecrets(spec);
    const steps = renderCluster(spec, { caCertPem: secrets.caCert, caCertHash: caCertHash(secrets.caCert) });
    this.cluster = new HaCluster(this, "cluster", {
      spec,
      steps,
      secretsVersion: secrets.version,
      backend: spec.terraform.resources === "builtin" ? builtinBackend() : hashicorpBackend(this),
      renderDir: opts.renderDir ?? resolve("out", spec.name),
      stackDir: opts.stackDir,
    });
    new TerraformOutput(this, "control_plane_endpoint", { value: endpoint(spec) });
  }
}

if (import.meta.main) {
  await runCommand(() => {
    const spec = loadSpec(specPath());
    const app = new App({ outdir: process.env.CDKTF_OUTDIR ?? "cdktf.out" });
    const stackName = spec.name;
    const stack = new KubeadmHaStack(app, stackName, {
      spec,
      stackDir: resolve(app.outdir, "stacks", stackName),
    });
    app.synth();
    const unknown = stack.cluster.connections.unknownHosts;
    if (unknown.length > 0) {
      process.stderr.write(
        `warning: no known host key for ${unknown.join(", ")} in ${spec.ssh.knownHostsPath}; Terraform will ask for host_key_* variables. Run \`bun run trust-hosts\` to record them after checking the fingerprints.\n`,
      );
    }
    process.stderr.write(
      `synthesized stack "${stackName}" (${spec.terraform.resources} resources) into ${resolve(app.outdir)}\n`,
    );
  });
}
