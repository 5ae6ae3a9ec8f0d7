// Cluster secrets: generated once, kept 0600 outside version control, stable
// across synths. The stack only ever sees them as sensitive Terraform variables
// (TF_VAR_*), so they never land in cdk.tf.json, rendered files or logs.
import { createHash, createPublicKey, randomBytes, randomInt } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { UserError } from "./errors.ts";
import type { SecretName } from "./render/types.ts";
import type { ClusterSpec } from "./spec/schema.ts";

export interface ClusterSecrets {
  /** Bumped on rotation; steps use it as a trigger, never the secret itself. */
  version: number;
  vrrpPassword: string;
  statsPassword: string;
  bootstrapToken: string;
  certificateKey: string;
  caKey: string;
  /** Public: the cluster CA certificate. Kept here because it is generated with its key. */
  caCert: string;
}

/** Terraform variable name and secret file name on hosts, per secret. */
export const SECRET_VARIABLES: Record<SecretName, { variable: string; field: keyof ClusterSecrets }> = {
  "vrrp-password": { variable: "vrrp_password", field: "vrrpPassword" },
  "stats-password": { variable: "stats_password", field: "statsPassword" },
  "bootstrap-token": { variable: "bootstrap_token", field: "bootstrapToken" },
  "certificate-key": { variable: "certificate_key", field: "certificateKey" },
  "ca-key": { variable: "ca_key", field: "caKey" },
};

/** Where a cluster's secrets live: `dir`, else $KUBEADM_HA_SECRETS_DIR, else ./.kubeadm-ha/secrets. */
export function secretsPath(spec: ClusterSpec, dir?: string): string {
  const base = dir ?? process.env.KUBEADM_HA_SECRETS_DIR ?? join(process.cwd(), ".kubeadm-ha", "secrets");
  return resolve(base, `${spec.name}.json`);
}

const ALNUM = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
const LOWER = "abcdefghijklmnopqrstuvwxyz0123456789";
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
    bootstrapToken: `${pick(LOWER, 6)}.${pick(LOWER, 16)}`,
    certificateKey: randomBytes(32).toString("hex"),
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
  if (!/^[a-z0-9]{6}\.[a-z0-9]{16}$/.test(s.bootstrapToken ?? ""))
    throw bad(
      "bootstrapToken",
      "must look like abcdef.0123456789abcdef (6 and 16 lowercase letters or digits), as kubeadm requires.",
    );
  if (!/^[a-f0-9]{64}$/.test(s.certificateKey ?? ""))
    throw bad("certificateKey", "must be 64 lowercase hex characters (a 32-byte AES key), as kubeadm requires.");
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
    process.stderr.write(
      `generated secrets for cluster ${spec.name} in ${file} (0600; keep it out of version control)\n`,
    );
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
  checkSecrets(s, file);
  return s;
}

/** kubeadm's discovery hash: sha256 of the CA certificate's DER SubjectPublicKeyInfo. */
export function caCertHash(caCertPem: string): string {
  const spki = createPublicKey(caCertPem).export({ type: "spki", format: "der" });
  return `sha256:${createHash("sha256").update(spki).digest("hex")}`;
}

/** TF_VAR_* environment for terraform/cdktf runs. */
export function terraformEnv(s: ClusterSecrets): Record<string, string> {
  const env: Record<string, string> = {};
  for (const { variable, field } of Object.values(SECRET_VARIABLES)) env[`TF_VAR_${variable}`] = String(s[field]);
  return env;
}
