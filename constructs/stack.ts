// The cluster's Terraform stack: spec ► secrets ► rendered steps ► HaCluster + backend, and
// synthesize(), the one way to write cdk.tf.json and the review tree (main.ts, cdktf synth, tests).
import { resolve } from "node:path";
import { App, CloudBackend, LocalBackend, NamedCloudWorkspace, TerraformOutput, TerraformStack } from "cdktf";
import type { Construct } from "constructs";
import { renderCluster } from "../lib/render/index.ts";
import { reviewTree } from "../lib/render/review-tree.ts";
import type { Step } from "../lib/render/types.ts";
import { caCertHash, ensureSecrets } from "../lib/secrets.ts";
import { shq } from "../lib/shell.ts";
import type { ClusterSpec } from "../lib/spec/schema.ts";
import { endpoint } from "../lib/spec/topology.ts";
import { replaceTree } from "../lib/write-tree.ts";
import { HaCluster } from "./ha-cluster.ts";
import { builtinBackend, hashicorpBackend } from "./step-backend.ts";

export interface StackOptions {
  spec: ClusterSpec;
  /** Absolute directory for the review tree (default <cwd>/out/<cluster>). */
  renderDir?: string;
  /** Absolute directory of the synthesized stack (to reference renderDir relatively). */
  stackDir: string;
  /** The spec file, when synthesizing from one: enables the preflight and kubeconfig local commands. */
  specFile?: string;
}

/** preflight and kubeconfig as local-exec commands of this checkout, for the spec file. */
function localCommands(spec: ClusterSpec, specFile: string | undefined) {
  if (!specFile || !spec.terraform.localCommands) return undefined;
  const root = resolve(import.meta.dir, "..");
  const bun = resolve(root, "node_modules/.bin/bun");
  const environment: Record<string, string> = {};
  if (process.env.KUBEADM_HA_SECRETS_DIR)
    environment.KUBEADM_HA_SECRETS_DIR = resolve(process.env.KUBEADM_HA_SECRETS_DIR);
  // local-exec runs the command through sh: every path is quoted, whatever it holds.
  const cmd = (...args: string[]) => ({ command: [bun, ...args].map(shq).join(" "), workingDir: root, environment });
  const file = resolve(specFile);
  return {
    preflight: cmd("scripts/preflight.ts", "--spec", file),
    kubeconfig: cmd("scripts/kubeconfig.ts", "--force", "--spec", file),
  };
}

export class KubeadmHaStack extends TerraformStack {
  readonly cluster: HaCluster;
  /** What the stack's steps upload and run, for the review tree. */
  readonly steps: Step[];
  readonly renderDir: string;

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
    this.steps = renderCluster(spec, { caCertPem: secrets.caCert, caCertHash: caCertHash(secrets.caCert) });
    this.renderDir = opts.renderDir ?? resolve("out", spec.name);
    this.cluster = new HaCluster(this, "cluster", {
      spec,
      steps: this.steps,
      secretsVersion: secrets.version,
      backend: spec.terraform.resources === "builtin" ? builtinBackend() : hashicorpBackend(this),
      renderDir: this.renderDir,
      stackDir: opts.stackDir,
      localCommands: localCommands(spec, opts.specFile),
    });
    new TerraformOutput(this, "control_plane_endpoint", { value: endpoint(spec) });
  }
  /**
   * cdktf resolves every token of every resource once before synthesizing, only to create
   * outputs for references between stacks, then again to write cdk.tf.json. Alone in its app,
   * this stack has no such references: skip that first run (a fifth of a synth). The backend
   * check it also does stays.
   */
  override prepareStack(): void {
    const stacks = this.node.scope?.node.children.filter((c) => TerraformStack.isStack(c)) ?? [];
    if (stacks.length > 1) super.prepareStack();
    else this.ensureBackendExists();
  }
}

export interface SynthOptions {
  /** cdktf's output directory; the stack lands in <outdir>/stacks/<stackName>. */
  outdir: string;
  /** Default: the spec's name. */
  stackName?: string;
  renderDir?: string;
  specFile?: string;
}

/**
 * Synthesize a spec: cdk.tf.json, then the review tree (written fresh, for both back-ends).
 * Everything that synthesizes (this entry point, `cdktf synth`, the tests) goes through here.
 */
export function synthesize(spec: ClusterSpec, opts: SynthOptions): { stack: KubeadmHaStack; stackDir: string } {
  const app = new App({ outdir: opts.outdir });
  const stackName = opts.stackName ?? spec.name;
  const stackDir = resolve(app.outdir, "stacks", stackName);
  const stack = new KubeadmHaStack(app, stackName, {
    spec,
    stackDir,
    renderDir: opts.renderDir,
    specFile: opts.specFile,
  });
  app.synth();
  replaceTree(stack.renderDir, reviewTree(stack.steps));
  return { stack, stackDir };
}
