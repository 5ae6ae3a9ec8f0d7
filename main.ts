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
import { shq } from "./lib/shell.ts";
import { loadSpec, specPath } from "./lib/spec/load.ts";
import type { ClusterSpec } from "./lib/spec/schema.ts";
import { endpoint } from "./lib/spec/topology.ts";

export interface StackOptions {
  spec: ClusterSpec;
  /** Absolute directory for the reviewable rendered tree (default <cwd>/out/<cluster>). */
  renderDir?: string;
  /** Absolute directory of the synthesized stack (to reference renderDir relatively). */
  stackDir: string;
  /** The spec file, when synthesizing from one: enables the preflight and kubeconfig local commands. */
  specFile?: string;
}

/** preflight and kubeconfig as local-exec commands of this checkout, for the spec file. */
function localCommands(spec: ClusterSpec, specFile: string | undefined) {
  if (!specFile || !spec.terraform.localCommands) return undefined;
  const root = import.meta.dir;
  const bun = resolve(root, "node_modules/.bin/bun");
  const environment: Record<string, string> = {};
  if (process.env.KUBEADM_HA_SECRETS_DIR)
    environment.KUBEADM_HA_SECRETS_DIR = resolve(process.env.KUBEADM_HA_SECRETS_DIR);
  // local-exec runs the command through sh: every path is quoted, whatever it holds.
  const cmd = (...args: string[]) => ({ command: [bun, ...args].map(shq).join(" "), workingDir: root, environment });
  const file = resolve(specFile);
  return {
    preflight: cmd("scripts/preflight.ts", file),
    kubeconfig: cmd("scripts/kubeconfig.ts", "--force", file),
  };
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
      localCommands: localCommands(spec, opts.specFile),
    });
    new TerraformOutput(this, "control_plane_endpoint", { value: endpoint(spec) });
  }
}

if (import.meta.main) {
  await runCommand(() => {
    const file = specPath();
    const spec = loadSpec(file);
    const app = new App({ outdir: process.env.CDKTF_OUTDIR ?? "cdktf.out" });
    const stackName = spec.name;
    const stack = new KubeadmHaStack(app, stackName, {
      spec,
      stackDir: resolve(app.outdir, "stacks", stackName),
      specFile: file,
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
