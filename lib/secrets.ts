// Cluster secrets: generated once, kept 0600 outside version control, stable
// across synths. The stack only ever sees them as sensitive Terraform variables
// (TF_VAR_*), so they never land in cdk.tf.json, rendered files or logs.
import { createHash, createPublicKey, randomBytes, randomInt } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { UserError } from "./errors.ts";
import { stderrLine } from "./progress.ts";
import type { SecretName } from "./render/types.ts";
import type { ClusterSpec } from "./spec/schema.ts";

export interface ClusterSecrets {
  /** Bumped on rotation; steps use it as a trigger, never the secret itself. */
  version: number;
  vrrpPassword: string;
  statsPassword: string;
  /**
   * 32 random bytes (hex) from which every join round derives its own bootstrap token and
   * certificate key (roundSecret): a token is never reused across rounds, and none is stored.
   */
  joinSeed: string;
  caKey: string;
  /** Public: the cluster CA certificate. Kept here because it is generated with its key. */
  caCert: string;
}

type SecretField = "vrrpPassword" | "statsPassword" | "joinSeed" | "caKey";
/** The sensitive Terraform variables, each with the secrets-file field it carries. */
export const TERRAFORM_SECRET_VARIABLES: Record<string, SecretField> = {
  vrrp_password: "vrrpPassword",
  stats_password: "statsPassword",
  join_seed: "joinSeed",
  ca_key: "caKey",
};
/**
 * Where each secret a host receives comes from: a variable as it is, or (round secrets) derived
 * from the join seed and the id of the step run that uploads it, so each run has its own value.
 */
export const HOST_SECRETS: Record<SecretName, { variable: string; round: boolean }> = {
  "vrrp-password": { variable: "vrrp_password", round: false },
  "stats-password": { variable: "stats_password", round: false },
  "bootstrap-token": { variable: "join_seed", round: true },
  "certificate-key": { variable: "join_seed", round: true },
  "ca-key": { variable: "ca_key", round: false },
};

/**
 * A round secret: sha256 over "<seed>/<round id>/<name>" (hex), shaped as kubeadm wants it.
 * The stack computes the same in Terraform (constructs/ha-cluster.ts), with the step's own
 * resource id as the round id; a test checks that the two agree.
 */
export function roundSecret(seed: string, roundId: string, name: SecretName): string {
  const h = createHash("sha256").update(`${seed}/${roundId}/${name}`).digest("hex");
  if (name === "bootstrap-token") return `${h.slice(0, 6)}.${h.slice(6, 22)}`;
  if (name === "certificate-key") return h;
  throw new Error(`${name} is not a round secret`);
}

/** The value a host receives for a secret, for the step run `roundId`. */
export function hostSecretValue(s: ClusterSecrets, name: SecretName, roundId: string): string {
  const { variable, round } = HOST_SECRETS[name];
  const value = String(s[TERRAFORM_SECRET_VARIABLES[variable]!]);
  return round ? roundSecret(value, roundId, name) : value;
}

/** Where a cluster's secrets live: `dir`, else $KUBEADM_HA_SECRETS_DIR, else ./.kubeadm-ha/secrets. */
export function secretsPath(spec: ClusterSpec, dir?: string): string {
  const base = dir ?? process.env.KUBEADM_HA_SECRETS_DIR ?? join(process.cwd(), ".kubeadm-ha", "secrets");
  return resolve(base, `${spec.name}.json`);
}

const ALNUM = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
const pick = (alphabet: string, n: number) =>
  Array.from({ length: n }, () => alphabet[randomInt(alphabet.length)]).join("");

function generateCa(): { caKey: string; caCert: string } {
  // openssl is on every host kubeadm supports and on the machines that run this tool.
  const r = Bun.spawnSync(
    [
      "openssl",
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "-",
      "-days",
      "3650",
      "-subj",
      "/CN=kubernetes",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign",
    ],
    { stdout: "pipe", stderr: "pipe" },
  );
  if (r.exitCode !== 0) {
    throw new UserError(
      `could not generate the cluster CA with openssl (exit ${r.exitCode}): ${r.stderr.toString().trim()}. Install openssl and run again.`,
    );
  }
  const out = r.stdout.toString();
  const caKey = out.match(/-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----\n/)?.[0];
  const caCert = out.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/)?.[0];
  if (!caKey || !caCert) throw new Error("openssl printed no key or certificate");
  return { caKey, caCert };
}

export function generateSecrets(): ClusterSecrets {
  return {
    version: 1,
    // 8 characters: VRRPv2 truncates longer passwords; no '#' or '!', which keepalived reads as comments.
    vrrpPassword: pick(ALNUM, 8),
    statsPassword: pick(ALNUM, 24),
    joinSeed: randomBytes(32).toString("hex"),
    ...generateCa(),
  };
}

/** Checks a secrets file a person may have edited; throws a UserError naming the field. */
export function checkSecrets(s: ClusterSecrets, file: string): void {
  const bad = (field: string, why: string) => new UserError(`${file}: ${field} ${why}`);
  if (!Number.isInteger(s.version) || s.version < 1) throw bad("version", "must be a whole number >= 1.");
  if (typeof s.vrrpPassword !== "string" || !/^[A-Za-z0-9._+=:@%^-]{1,8}$/.test(s.vrrpPassword))
    throw bad(
      "vrrpPassword",
      "must be 1-8 characters of letters, digits or ._+=:@%^- (VRRPv2 truncates longer passwords, and keepalived reads '#' and '!' as the start of a comment). Choose another or delete the field's value and run `bun run secrets --rotate vrrp-password`.",
    );
  if (typeof s.statsPassword !== "string" || !/^[A-Za-z0-9._+=:@%^-]{12,128}$/.test(s.statsPassword))
    throw bad("statsPassword", "must be 12-128 characters of letters, digits or ._+=:@%^- (no quotes, spaces or '#').");
  if (!/^[a-f0-9]{64}$/.test(s.joinSeed ?? ""))
    throw bad(
      "joinSeed",
      "must be 64 lowercase hex characters (32 random bytes). Delete the field to have a new one generated.",
    );
  if (!s.caKey?.includes("PRIVATE KEY") || !s.caCert?.includes("BEGIN CERTIFICATE"))
    throw bad("caKey/caCert", "must be a PEM private key and certificate; delete both to have them generated.");
}

function writePrivate(file: string, content: string): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  chmodSync(dirname(file), 0o700);
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, content, { mode: 0o600 });
  renameSync(tmp, file);
}

export function saveSecrets(spec: ClusterSpec, s: ClusterSecrets, dir?: string): string {
  const file = secretsPath(spec, dir);
  writePrivate(file, `${JSON.stringify(s, null, 2)}\n`);
  return file;
}

/** Load the cluster's secrets; generate and save them on first use. */
export function ensureSecrets(spec: ClusterSpec, opts: { create?: boolean; dir?: string } = {}): ClusterSecrets {
  const file = secretsPath(spec, opts.dir);
  if (!existsSync(file)) {
    if (opts.create === false)
      throw new UserError(`no secrets for cluster ${spec.name} at ${file}. Run \`bun run secrets\` first.`);
    const s = generateSecrets();
    saveSecrets(spec, s, opts.dir);
    stderrLine(`generated secrets for cluster ${spec.name} in ${file} (0600; keep it out of version control)`);
    return s;
  }
  const mode = statSync(file).mode & 0o777;
  if (mode & 0o077)
    throw new UserError(
      `${file} is readable by others (mode ${mode.toString(8)}). Run \`chmod 600 ${file}\` and run again.`,
    );
  let s: ClusterSecrets;
  try {
    s = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    throw new UserError(
      `${file} is not valid JSON (${(e as Error).message}). Fix it or move it away to generate new secrets (an existing cluster needs the old ones).`,
    );
  }
  s = upgradeSecrets(spec, s, opts.dir);
  checkSecrets(s, file);
  return s;
}

/**
 * Files written before join rounds had their own secrets hold one fixed bootstrap token and
 * certificate key: those are dropped (never reused) and a join seed takes their place.
 */
function upgradeSecrets(spec: ClusterSpec, s: ClusterSecrets, dir?: string): ClusterSecrets {
  const old = s as ClusterSecrets & { bootstrapToken?: string; certificateKey?: string };
  if (old.joinSeed !== undefined && old.bootstrapToken === undefined && old.certificateKey === undefined) return s;
  const { bootstrapToken: _t, certificateKey: _k, ...rest } = old;
  const upgraded: ClusterSecrets = { ...rest, joinSeed: old.joinSeed ?? randomBytes(32).toString("hex") };
  const file = saveSecrets(spec, upgraded, dir);
  stderrLine(
    `${file}: replaced the fixed bootstrap token and certificate key with a join seed (every join now gets its own)`,
  );
  return upgraded;
}

/** kubeadm's discovery hash: sha256 of the CA certificate's DER SubjectPublicKeyInfo. */
export function caCertHash(caCertPem: string): string {
  const spki = createPublicKey(caCertPem).export({ type: "spki", format: "der" });
  return `sha256:${createHash("sha256").update(spki).digest("hex")}`;
}

/** TF_VAR_* environment for terraform/cdktf runs. */
export function terraformEnv(s: ClusterSecrets): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [variable, field] of Object.entries(TERRAFORM_SECRET_VARIABLES))
    env[`TF_VAR_${variable}`] = String(s[field]);
  return env;
}
