// SSH connection blocks for every step, from the spec. Host keys come from the
// spec's known_hosts; a host without a known key gets a required Terraform
// variable instead, so Terraform stops and asks rather than trusting blindly; the
// variable refuses an empty or malformed key, which Terraform would take as "no check".
import { existsSync, readFileSync } from "node:fs";
import { Fn, type SSHProvisionerConnection, TerraformVariable, Token } from "cdktf";
import type { Construct } from "constructs";
import { HOST_KEY_PATTERN, hostKeyFor } from "../lib/remote/known-hosts.ts";
import { resolveSpecPath } from "../lib/spec/load.ts";
import type { ClusterSpec, NodeSpec } from "../lib/spec/schema.ts";

/** Terraform-safe identifier from a node name (names are DNS labels). */
export const tfId = (name: string): string => name.replace(/[^A-Za-z0-9_]/g, "_");

export class Connections {
  private readonly knownHosts: string;
  private sshKeyVariable?: TerraformVariable;
  private readonly hostKeyVariables = new Map<string, TerraformVariable>();
  /** One connection block per node: every step (and every join's runs on the first control plane) shares it. */
  private readonly byNode = new Map<string, SSHProvisionerConnection>();
  /** Hosts whose key is not in known_hosts (reported by synth). */
  readonly unknownHosts: string[] = [];

  constructor(
    private readonly scope: Construct,
    private readonly spec: ClusterSpec,
  ) {
    const path = resolveSpecPath(spec, spec.ssh.knownHostsPath);
    this.knownHosts = existsSync(path) ? readFileSync(path, "utf8") : "";
  }

  /** Key material for a key path, or the sensitive ssh_private_key variable (Terraform Cloud has no local files). */
  private privateKey(path: string | undefined): string | undefined {
    if (path) return Fn.file(resolveSpecPath(this.spec, path));
    if (this.spec.ssh.agent) return undefined;
    this.sshKeyVariable ??= new TerraformVariable(this.scope, "ssh_private_key", {
      type: "string",
      sensitive: true,
      description: "SSH private key for the cluster hosts (used when the spec names no key file and no agent)",
    });
    this.sshKeyVariable.overrideLogicalId("ssh_private_key");
    return this.sshKeyVariable.stringValue;
  }

  private hostKey(label: string, host: string, port: number): string {
    const known = hostKeyFor(this.knownHosts, host, port);
    if (known) return known;
    const entry = `${label} (${host}:${port})`;
    if (!this.unknownHosts.includes(entry)) this.unknownHosts.push(entry);
    const id = `host_key_${tfId(label)}`;
    let v = this.hostKeyVariables.get(id);
    if (!v) {
      v = new TerraformVariable(this.scope, id, {
        type: "string",
        description: `SSH host key of ${label} (${host}:${port}) as "type base64"; run \`bun run trust-hosts\` to record it instead`,
      });
      // Plain names, so TF_VAR_host_key_<node> and workspace variables find them.
      v.overrideLogicalId(id);
      // Terraform's SSH communicator skips host-key verification when host_key is empty: refuse that at plan.
      v.addValidation({
        condition: Fn.can(Fn.regex(HOST_KEY_PATTERN, v.stringValue)),
        errorMessage: `The host key of ${label} (${host}:${port}) is empty or not "type base64" (for example "ssh-ed25519 AAAAC3Nza..."), and an empty host key would let Terraform connect to ${label} without checking it. Run \`bun run trust-hosts\` to record the keys in known_hosts after checking the fingerprints, or set ${id} to the key from /etc/ssh/ssh_host_ed25519_key.pub on ${label}.`,
      });
      this.hostKeyVariables.set(id, v);
    }
    return v.stringValue;
  }

  forNode(node: NodeSpec): SSHProvisionerConnection {
    let conn = this.byNode.get(node.name);
    if (!conn) {
      conn = this.connection(node);
      this.byNode.set(node.name, conn);
    }
    return conn;
  }

  private connection(node: NodeSpec): SSHProvisionerConnection {
    const ssh = this.spec.ssh;
    const host = node.ssh?.host ?? node.address;
    const port = node.ssh?.port ?? ssh.port;
    const conn: SSHProvisionerConnection = {
      type: "ssh",
      host,
      port,
      user: node.ssh?.user ?? ssh.user,
      privateKey: this.privateKey(node.ssh?.privateKeyPath ?? ssh.privateKeyPath),
      agent: ssh.agent ? "true" : "false",
      hostKey: this.hostKey(node.name, host, port),
      timeout: "2m",
    };
    const b = ssh.bastion;
    if (!b) return conn;
    return {
      ...conn,
      bastionHost: b.host,
      bastionPort: b.port,
      bastionUser: b.user ?? ssh.user,
      bastionPrivateKey: this.privateKey(b.privateKeyPath ?? ssh.privateKeyPath),
      bastionHostKey: this.hostKey("bastion", b.host, b.port),
    };
  }

  /**
   * The connection of whichever of `nodes` the Terraform expression `name` names (the join_via
   * variable): each field is one lookup over the nodes' own connections, or the shared value.
   */
  forNamed(nodes: NodeSpec[], name: string): SSHProvisionerConnection {
    const conns = nodes.map((n) => [n.name, this.forNode(n)] as const);
    const pick = <T>(field: (c: SSHProvisionerConnection) => T): T => {
      const values = conns.map(([, c]) => field(c));
      if (values.every((v) => v === values[0])) return values[0] as T;
      return Fn.lookup(Object.fromEntries(conns.map(([n, c]) => [n, field(c)])), name) as T;
    };
    const first = conns[0]![1];
    return {
      ...first,
      host: Token.asString(pick((c) => c.host)),
      port: Token.asNumber(pick((c) => c.port)),
      user: pick((c) => c.user),
      privateKey: pick((c) => c.privateKey),
      hostKey: pick((c) => c.hostKey),
    };
  }

  /** The sudo prefix for a run on the node `name` names (see forNamed). */
  sudoForNamed(nodes: NodeSpec[], name: string): string {
    const prefixes = nodes.map((n) => (this.needsSudo(n) ? "sudo -n " : ""));
    if (prefixes.every((p) => p === prefixes[0])) return prefixes[0]!;
    return Token.asString(Fn.lookup(Object.fromEntries(nodes.map((n, i) => [n.name, prefixes[i]])), name));
  }

  /** Where the node's SSH key comes from: a file named in the spec, the agent, or the ssh_private_key variable. */
  keySource(node: NodeSpec): "file" | "agent" | "variable" {
    if (node.ssh?.privateKeyPath ?? this.spec.ssh.privateKeyPath) return "file";
    return this.spec.ssh.agent ? "agent" : "variable";
  }

  /** Whether commands need sudo on this node (the runbook's hosts use a sudo user). */
  needsSudo(node: NodeSpec): boolean {
    return (node.ssh?.user ?? this.spec.ssh.user) !== "root";
  }
}
