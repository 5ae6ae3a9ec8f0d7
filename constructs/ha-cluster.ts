// HaCluster: the rendered steps of a cluster as Terraform resources, in the order
// a cluster is built, with explicit dependsOn so `terraform graph` shows it:
//   prepare (all) ► load balancer (control planes, one at a time) ► init ► CNI
//   ► control-plane joins (one at a time) ► worker joins (parallel)
// A join step mints its own token on the join-via control plane (the first one unless
// node:replace names another), joins, then deletes the token.
// Each step is replaced (and so re-run) when the sha256 of what it uploads changes.
import { createHash } from "node:crypto";
import { join, relative } from "node:path";
import { Fn, type SSHProvisionerConnection, type TerraformResource, TerraformVariable, Token } from "cdktf";
import { Construct } from "constructs";
import { UserError } from "../lib/errors.ts";
import { stageDir } from "../lib/render/paths.ts";
import { RESET_HOST_SH } from "../lib/render/reset-host.ts";
import { treeConfigPath } from "../lib/render/review-tree.ts";
import type { NodeRun, Phase, SecretName, Step } from "../lib/render/types.ts";
import { HOST_SECRETS } from "../lib/secrets.ts";
import { shq } from "../lib/shell.ts";
import type { ClusterSpec, NodeSpec } from "../lib/spec/schema.ts";
import { controlPlanes, endpoint, firstControlPlane } from "../lib/spec/topology.ts";
import { Connections, tfId } from "./connection.ts";
import type { Provisioner, ResourceBackend } from "./step-backend.ts";

export interface HaClusterProps {
  spec: ClusterSpec;
  /** Every step of the cluster, from lib/render (renderCluster). */
  steps: Step[];
  /** Bumped when secrets rotate; a trigger for the steps that upload them (never the secrets themselves). */
  secretsVersion: number;
  backend: ResourceBackend;
  /** Absolute directory of the review tree (lib/render/review-tree.ts), e.g. <project>/out/<cluster>. */
  renderDir: string;
  /** Absolute directory Terraform runs in (the synthesized stack), to reference renderDir relatively. */
  stackDir: string;
  /**
   * Commands run on the machine that runs Terraform (local-exec): `preflight` before any
   * step touches a host (every prepare step depends on it), `kubeconfig` after init.
   */
  localCommands?: { preflight?: LocalCommand; kubeconfig?: LocalCommand };
}

export interface LocalCommand {
  command: string;
  workingDir: string;
  environment: Record<string, string>;
}

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

/**
 * Terraform reads ${...} and %{...} inside any string as its own templates; shell
 * scripts are full of them. Escape so uploaded content arrives byte for byte.
 */
export const tfLiteral = (s: string): string => s.replace(/([$%])\{/g, (_m, sigil: string) => `${sigil}${sigil}{`);

export class HaCluster extends Construct {
  /** The Terraform resource of each step, keyed "<phase>/<node>". */
  readonly resources = new Map<string, TerraformResource>();
  readonly connections: Connections;
  /** The join_via variable, when some run mints join material or reads where it was minted. */
  private readonly joinVia?: TerraformVariable;
  private readonly cps: NodeSpec[];

  constructor(scope: Construct, id: string, props: HaClusterProps) {
    super(scope, id);
    const { spec, backend } = props;
    validateProps(props);
    this.connections = new Connections(this, spec);
    this.cps = controlPlanes(spec);
    const secretVars = this.secretVariables(props.steps);
    this.joinVia = this.joinViaVariable(spec, props.steps);

    const res = (phase: Phase, node: NodeSpec) => this.resources.get(`${phase}/${node.name}`);
    const dependencies = (step: Step): TerraformResource[] => {
      const deps: (TerraformResource | undefined)[] = [];
      const cps = props.steps.filter((s) => s.phase === step.phase).map((s) => s.node);
      const previous = cps[cps.findIndex((n) => n.name === step.node.name) - 1];
      const first = firstControlPlane(spec);
      const cpJoins = props.steps.filter((s) => s.phase === "join" && s.node.role === "control-plane");
      const lastCpJoin = cpJoins[cpJoins.length - 1];
      switch (step.phase) {
        case "prepare":
          break;
        case "loadbalancer":
          // One control plane at a time, so a rolling change never takes two load balancers down at once.
          deps.push(res("prepare", step.node), previous && res("loadbalancer", previous));
          break;
        case "init":
          deps.push(
            res("prepare", step.node),
            ...props.steps.filter((s) => s.phase === "loadbalancer").map((s) => res("loadbalancer", s.node)),
          );
          break;
        case "cni":
          deps.push(res("init", first));
          break;
        case "join":
          deps.push(res("prepare", step.node), res("cni", first) ?? res("init", first), res("loadbalancer", step.node));
          if (step.node.role === "control-plane") {
            // Control planes join strictly one at a time: each new etcd member must be in before the next.
            const idx = cpJoins.findIndex((s) => s.node.name === step.node.name);
            deps.push(idx > 0 ? res("join", cpJoins[idx - 1]!.node) : undefined);
          } else if (lastCpJoin) {
            deps.push(res("join", lastCpJoin.node));
          }
          break;
        case "etcd-backup-timer":
          deps.push(step.node.name === first.name ? res("init", first) : res("join", step.node));
          break;
      }
      return deps.filter((d): d is TerraformResource => d !== undefined);
    };

    const membership = spec.terraform.resetOnDestroy
      ? this.membership(spec, backend)
      : new Map<string, TerraformResource>();
    const local = (id: string, cmd: LocalCommand, triggers: Record<string, string>, dependsOn: TerraformResource[]) => {
      const r = backend.step(this, id, {
        triggers,
        dependsOn,
        provisioners: [
          {
            type: "local-exec",
            command: tfLiteral(cmd.command),
            workingDir: cmd.workingDir,
            environment: cmd.environment,
          },
        ],
      });
      r.overrideLogicalId(id);
      return r;
    };
    // Preflight reads every host and changes nothing; it re-runs when the node set changes.
    const preflight = props.localCommands?.preflight
      ? local(
          "preflight",
          props.localCommands.preflight,
          { nodes: spec.nodes.map((n) => `${n.name}=${n.address}`).join(",") },
          [],
        )
      : undefined;

    for (const step of props.steps) {
      const stepId = tfId(`${step.phase}_${step.node.name}`);
      for (const f of step.files) {
        const local = join(props.renderDir, treeConfigPath(step.node.name, f.path));
        const filename = backend.name === "builtin" ? local : `\${path.module}/${relative(props.stackDir, local)}`;
        backend.renderedFile(this, `file_${stepId}_${tfId(f.path)}`, {
          filename,
          content: backend.name === "builtin" ? f.content : tfLiteral(f.content),
          mode: f.mode,
        });
      }
      const resource = backend.step(this, stepId, {
        triggers: this.triggers(step, props.secretsVersion),
        dependsOn: [
          ...dependencies(step),
          ...[membership.get(step.node.name), step.phase === "prepare" ? preflight : undefined].filter(
            (m) => m !== undefined,
          ),
        ],
        connection: this.connections.forNode(step.node),
        provisioners: this.provisioners(step, secretVars),
      });
      // Stable, readable addresses (null_resource.loadbalancer_cp_1): drift reports them for -replace=.
      resource.overrideLogicalId(stepId);
      this.resources.set(`${step.phase}/${step.node.name}`, resource);
    }

    if (props.localCommands?.kubeconfig) {
      const init = res("init", firstControlPlane(spec));
      local("kubeconfig", props.localCommands.kubeconfig, { endpoint: endpoint(spec) }, init ? [init] : []);
    }
  }

  /**
   * resetOnDestroy: one resource per node whose only job is a destroy-time `kubeadm reset`.
   * Its identity is the node alone and every step of the node depends on it, so a changed
   * setting (which replaces steps) never resets anything, and on destroy it runs last.
   */
  private membership(spec: ClusterSpec, backend: ResourceBackend): Map<string, TerraformResource> {
    const out = new Map<string, TerraformResource>();
    for (const node of spec.nodes) {
      const conn = this.connections.forNode(node);
      if (this.connections.keySource(node) === "variable") {
        throw new UserError(
          `terraform.resetOnDestroy: destroy-time steps cannot read Terraform variables, so node ${node.name} needs ssh.privateKeyPath (or ssh.agent: true) instead of the ssh_private_key variable. Set one, or turn resetOnDestroy off.`,
        );
      }
      const selfValues: Record<string, string> = {
        host: conn.host,
        port: String(conn.port),
        user: conn.user ?? "root",
        host_key: conn.hostKey ?? "",
      };
      if (conn.bastionHost) {
        Object.assign(selfValues, {
          bastion_host: conn.bastionHost,
          bastion_port: String(conn.bastionPort),
          bastion_user: conn.bastionUser ?? "",
          bastion_host_key: conn.bastionHostKey ?? "",
        });
      }
      const ref = (k: string) => backend.selfRef(k);
      const connection: SSHProvisionerConnection = {
        type: "ssh",
        host: ref("host"),
        port: Token.asNumber(ref("port")),
        user: ref("user"),
        privateKey: conn.privateKey,
        agent: conn.agent,
        hostKey: ref("host_key"),
        timeout: conn.timeout,
        ...(conn.bastionHost
          ? {
              bastionHost: ref("bastion_host"),
              bastionPort: Token.asNumber(ref("bastion_port")),
              bastionUser: ref("bastion_user"),
              bastionPrivateKey: conn.bastionPrivateKey,
              bastionHostKey: ref("bastion_host_key"),
            }
          : {}),
      };
      const sudo = this.connections.needsSudo(node) ? "sudo -n " : "";
      const id = tfId(`membership_${node.name}`);
      const r = backend.step(this, id, {
        triggers: { node: node.name, address: node.address },
        selfValues,
        dependsOn: [],
        connection,
        provisioners: [
          // cdktf's type lacks `when` for remote-exec; Terraform accepts it on every provisioner.
          {
            type: "remote-exec",
            when: "destroy",
            // The same reset as node:remove: also stops systemd's keepalived and haproxy.
            inline: [`${sudo}bash -c ${shq(RESET_HOST_SH)}`],
          } as Provisioner,
        ],
      });
      r.overrideLogicalId(id);
      out.set(node.name, r);
    }
    return out;
  }

  /**
   * Which control plane mints join material: the first by default; node:replace names a healthy
   * one when the first is the node being replaced (so is down or empty). Not a trigger: changing it
   * replaces nothing.
   */
  private joinViaVariable(spec: ClusterSpec, steps: Step[]): TerraformVariable | undefined {
    if (!steps.some((s) => runsOf(s).some((r) => r.joinVia))) return undefined;
    const names = this.cps.map((n) => n.name);
    const v = new TerraformVariable(this, "join_via", {
      type: "string",
      default: firstControlPlane(spec).name,
      description:
        "The control plane that mints join material (bun run node:replace sets it when the first control plane is being replaced)",
    });
    v.overrideLogicalId("join_via");
    v.addValidation({
      condition: Fn.contains(names, v.stringValue),
      errorMessage: `join_via must name a control plane of the spec: ${names.join(", ")}.`,
    });
    return v;
  }

  /** One sensitive variable per secret source some step's uploads need. */
  private secretVariables(steps: Step[]): Map<string, TerraformVariable> {
    const used = new Set(steps.flatMap((s) => runsOf(s).flatMap((r) => r.secrets)));
    const vars = new Map<string, TerraformVariable>();
    for (const name of used) {
      const id = HOST_SECRETS[name].variable;
      if (vars.has(id)) continue;
      const v = new TerraformVariable(this, id, {
        type: "string",
        sensitive: true,
        description: `cluster secret "${id}" (set by \`bun run deploy\` from the 0600 secrets file, or as a sensitive workspace variable)`,
      });
      v.overrideLogicalId(id); // so TF_VAR_<id> finds it
      vars.set(id, v);
    }
    return vars;
  }

  /** Hashes of exactly what the step uploads, plus the secrets version if it uploads secrets. */
  private triggers(step: Step, secretsVersion: number): Record<string, string> {
    const runs = runsOf(step);
    const files = runs.flatMap((r) => r.files.map((f) => `${f.path}\0${f.mode}\0${f.content}`)).join("\0");
    const t: Record<string, string> = {
      node: step.node.name,
      address: step.node.address,
      files_sha256: sha256(files),
      script_sha256: sha256(runs.map((r) => `${r.node.name}\0${r.script}`).join("\0")),
    };
    if (runs.some((r) => r.secrets.length > 0)) t.secrets_version = String(secretsVersion);
    return t;
  }

  /** The step's own run, and the runs it makes on another node before and after it. */
  private provisioners(step: Step, secretVars: Map<string, TerraformVariable>): Provisioner[] {
    const run = (r: NodeRun, name: string, own: boolean): Provisioner[] => {
      const connection = own
        ? undefined
        : r.joinVia === "runs-there"
          ? this.connections.forNamed(this.cps, this.joinVia!.stringValue)
          : this.connections.forNode(r.node);
      return this.runProvisioners(r, name, secretVars).map((p) => (connection ? { ...p, connection } : p));
    };
    return [
      ...(step.before ? run(step.before, `${step.phase}-before`, false) : []),
      ...run(step, step.phase, true),
      ...(step.after ? run(step.after, `${step.phase}-after`, false) : []),
    ];
  }

  /**
   * Upload a run's files and secrets into a private stage and run its script as root.
   * Terraform's file provisioner must know the path before it uploads, so the stage is not
   * mktemp's name but one as unguessable: the step's resource id, made at apply time, created
   * with an exclusive `mkdir -m 0700` that fails on anything already there (no -p, no rm first).
   */
  private runProvisioners(r: NodeRun, name: string, secretVars: Map<string, TerraformVariable>): Provisioner[] {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: Terraform's own expression, resolved at apply
    const stage = stageDir(name, "${self.id}");
    const dirs = new Set<string>([`${stage}/secrets`]);
    for (const f of r.files) dirs.add(`${stage}/root${f.path.slice(0, f.path.lastIndexOf("/"))}`);
    const sudo =
      r.joinVia === "runs-there"
        ? this.connections.sudoForNamed(this.cps, this.joinVia!.stringValue)
        : this.connections.needsSudo(r.node)
          ? "sudo -n "
          : "";
    return [
      // Owned by the SSH user, 0700: uploads (and secrets) are never readable by others.
      { type: "remote-exec", inline: [`mkdir -m 0700 ${stage} && mkdir -p ${[...dirs].sort().join(" ")}`] },
      ...r.files.map(
        (f): Provisioner => ({ type: "file", content: tfLiteral(f.content), destination: `${stage}/root${f.path}` }),
      ),
      // Secrets only ever travel as sensitive variables in file provisioners, so the remote-exec output stays visible.
      ...r.secrets.map(
        (secret): Provisioner => ({
          type: "file",
          content: secretContent(secret, secretVars),
          destination: `${stage}/secrets/${secret}`,
        }),
      ),
      // Its name only (validated against the control planes), so the script knows where material was minted.
      ...(r.joinVia
        ? [{ type: "file", content: this.joinVia!.stringValue, destination: `${stage}/join-via` } as Provisioner]
        : []),
      { type: "file", content: tfLiteral(r.script), destination: `${stage}/run.sh` },
      { type: "remote-exec", inline: [`${sudo}bash ${stage}/run.sh`] },
    ];
  }
}

/** A step's runs in order: before (another node), its own, after (another node). */
const runsOf = (step: Step): NodeRun[] => [step.before, step, step.after].filter((r): r is NodeRun => r !== undefined);

/**
 * What a host receives for a secret: the variable, or for a round secret a value derived from
 * the join seed and this resource's id (new each time the step is created), as roundSecret in
 * lib/secrets.ts computes it.
 */
export function secretContent(name: SecretName, vars: Map<string, TerraformVariable>): string {
  const { variable, round } = HOST_SECRETS[name];
  if (!round) return vars.get(variable)!.stringValue;
  const hash = `sha256(join("/", [var.${variable}, self.id, "${name}"]))`;
  if (name === "bootstrap-token") return `\${substr(${hash}, 0, 6)}.\${substr(${hash}, 6, 16)}`;
  return `\${${hash}}`;
}

function validateProps(props: HaClusterProps): void {
  const seen = new Set<string>();
  for (const s of props.steps) {
    const key = `${s.phase}/${s.node.name}`;
    if (seen.has(key)) throw new Error(`HaCluster: two steps for ${key}`);
    seen.add(key);
  }
}
