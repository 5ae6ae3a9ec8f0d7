// What the renderers hand to the constructs layer: plain data, no cdktf.
import type { NodeSpec } from "../spec/schema.ts";

/** Phases in the order a cluster is built. */
export const PHASES = ["prepare", "loadbalancer", "init", "cni", "join", "etcd-backup-timer"] as const;
export type Phase = (typeof PHASES)[number];

/** A config file as it will sit on a host. Never contains a secret. */
export interface RenderedFile {
  /** Absolute path on the host, e.g. /etc/haproxy/haproxy.cfg. */
  path: string;
  content: string;
  /** Octal mode string, e.g. "0644". */
  mode: string;
}

/**
 * Secrets a step needs on the host, uploaded 0600 into the step's private stage, never rendered.
 * The daemons' passwords are installed into SECRETS_DIR (keepalived and haproxy read them for as
 * long as they run); join secrets are read from the stage and leave the host with it.
 */
export const SECRET_NAMES = [
  "vrrp-password",
  "stats-password",
  "bootstrap-token",
  "certificate-key",
  "ca-key",
] as const;
export type SecretName = (typeof SECRET_NAMES)[number];
/** Secrets that outlive the step on the host (in SECRETS_DIR), because a daemon reads them. */
export const INSTALLED_SECRETS: readonly SecretName[] = ["vrrp-password", "stats-password"];
/**
 * Secrets minted for one step only (a fresh value each time the step runs): the bootstrap
 * token and certificate key of one join round. Never the same value in two rounds.
 */
export const ROUND_SECRETS: readonly SecretName[] = ["bootstrap-token", "certificate-key"];

/** A script run on one node: files to install, secrets to upload, the script that applies them. */
export interface NodeRun {
  node: NodeSpec;
  /** A run on another node than its step's: its name in the review tree, e.g. "join-token". */
  name?: string;
  files: RenderedFile[];
  secrets: SecretName[];
  /** Complete bash script (see phase-script.ts); run as root from the staging directory. */
  script: string;
  /** Paths the step removes (left by an earlier spec); drift reports them when they are on the host. */
  absent?: string[];
  /**
   * The join-via control plane (Terraform variable join_via: the first control plane unless
   * `node:replace` names a healthy one because the first is the node being replaced).
   * "runs-there": the run connects to it instead of `node` (which names the default).
   * "reads": the run only learns its name (in $STAGE/join-via).
   */
  joinVia?: "runs-there" | "reads";
}

/**
 * One phase on one node. A step may also run scripts on another node around its own, with
 * the same round secrets: a join mints its token on the join-via control plane (`before`) and
 * deletes it there once the node has joined (`after`).
 */
export interface Step extends NodeRun {
  phase: Phase;
  before?: NodeRun;
  after?: NodeRun;
}
