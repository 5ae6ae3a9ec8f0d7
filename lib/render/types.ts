// What the renderers hand to the constructs layer: plain data, no cdktf.
import type { NodeSpec } from "../spec/schema.ts";

/** Phases in the order a cluster is built. */
export const PHASES = ["prepare", "loadbalancer", "init", "cni", "join-material", "join", "etcd-backup-timer"] as const;
export type Phase = (typeof PHASES)[number];

/** A config file as it will sit on a host. Never contains a secret. */
export interface RenderedFile {
  /** Absolute path on the host, e.g. /etc/haproxy/haproxy.cfg. */
  path: string;
  content: string;
  /** Octal mode string, e.g. "0644". */
  mode: string;
}

/** Secrets a step needs on the host; uploaded 0600 to SECRETS_DIR/<name>, never rendered. */
export const SECRET_NAMES = [
  "vrrp-password",
  "stats-password",
  "bootstrap-token",
  "certificate-key",
  "ca-key",
] as const;
export type SecretName = (typeof SECRET_NAMES)[number];

/** One phase on one node: files to install, secrets to upload, the script that applies them. */
export interface Step {
  phase: Phase;
  node: NodeSpec;
  files: RenderedFile[];
  secrets: SecretName[];
  /** Complete bash script (see phase-script.ts); run as root from the staging directory. */
  script: string;
  /** Paths the step removes (left by an earlier spec); drift reports them when they are on the host. */
  absent?: string[];
}
