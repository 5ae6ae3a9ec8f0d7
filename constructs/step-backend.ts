// The two resource back-ends. They differ only in which Terraform resource types
// carry the steps and the rendered files; the graph, the provisioners and the
// connections are built once, in ha-cluster.ts. Every cdktf provider import lives here.
import { File } from "@cdktf/provider-local/lib/file";
import { LocalProvider } from "@cdktf/provider-local/lib/provider";
import { NullProvider } from "@cdktf/provider-null/lib/provider";
import { Resource as NullResource } from "@cdktf/provider-null/lib/resource";
import {
  DataResource,
  type FileProvisioner,
  type LocalExecProvisioner,
  type RemoteExecProvisioner,
  type SSHProvisionerConnection,
  type TerraformResource,
} from "cdktf";
import { ValidateTerraformVersion } from "cdktf/lib/validations/validate-terraform-version";
import type { Construct, IValidation } from "constructs";

export type Provisioner = FileProvisioner | LocalExecProvisioner | RemoteExecProvisioner;

export interface StepProps {
  /** Non-secret values whose change replaces the step (and so re-runs its provisioners). */
  triggers: Record<string, string>;
  /** Non-secret values a destroy-time provisioner reads back through `self` (see selfRef). */
  selfValues?: Record<string, string>;
  dependsOn: TerraformResource[];
  connection?: SSHProvisionerConnection;
  provisioners: Provisioner[];
}

export interface RenderedFileProps {
  /** Path of the reviewable copy on the machine that runs Terraform. */
  filename: string;
  content: string;
  mode: string;
}

export interface ResourceBackend {
  readonly name: "hashicorp" | "builtin";
  /**
   * An expression for a selfValues entry. Destroy-time provisioners may only reference
   * `self`: null_resource keeps them in triggers, terraform_data in input.
   */
  selfRef(key: string): string;
  step(scope: Construct, id: string, props: StepProps): TerraformResource;
  renderedFile(scope: Construct, id: string, props: RenderedFileProps): void;
}

/**
 * null_resource steps + local_file copies (needs the hashicorp/null and hashicorp/local providers).
 * The copies are the config files of the review tree main.ts writes at synth, with the same
 * content, so apply rewrites them identically and destroy removes them.
 */
export function hashicorpBackend(scope: Construct): ResourceBackend {
  new NullProvider(scope, "null");
  new LocalProvider(scope, "local");
  return {
    name: "hashicorp",
    selfRef: (key) => `\${self.triggers.${key}}`,
    step: (s, id, p) =>
      new NullResource(s, id, {
        triggers: { ...p.triggers, ...p.selfValues },
        dependsOn: p.dependsOn,
        connection: p.connection,
        provisioners: p.provisioners,
      }),
    renderedFile: (s, id, p) => {
      new File(s, id, { filename: p.filename, content: p.content, filePermission: p.mode });
    },
  };
}

/**
 * terraform_data steps, no provider at all (air-gapped sites, our end-to-end tests).
 * No resource for the rendered copies: the review tree main.ts writes at synth is all there is.
 */
export function builtinBackend(): ResourceBackend {
  let versionChecked = false;
  return {
    name: "builtin",
    selfRef: (key) => `\${self.input.${key}}`,
    step: (s, id, p) => {
      const r = new DataResource(s, id, {
        triggersReplace: p.triggers,
        input: p.selfValues,
        dependsOn: p.dependsOn,
        connection: p.connection,
        provisioners: p.provisioners,
      });
      if (versionChecked) dropTerraformVersionCheck(r);
      versionChecked = true;
      return r;
    },
    renderedFile: () => undefined,
  };
}

/**
 * cdktf gives every terraform_data resource the same "Terraform >= 1.4" check, and each one runs
 * `terraform version` at synth: 19 runs for the example (over a second), 400 for 200 workers.
 * The first resource keeps it. constructs keeps validations in a private array (constructs and
 * cdktf are pinned); test/unit/synth-terraform-check.test.ts counts the runs.
 */
function dropTerraformVersionCheck(r: DataResource): void {
  const validations = (r.node as unknown as { _validations?: IValidation[] })._validations;
  if (!Array.isArray(validations))
    throw new Error("constructs no longer keeps node._validations: revisit step-backend.ts");
  for (let i = validations.length - 1; i >= 0; i--)
    if (validations[i] instanceof ValidateTerraformVersion) validations.splice(i, 1);
}
