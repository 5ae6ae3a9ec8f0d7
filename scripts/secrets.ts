// bun run secrets: generate (once) or rotate the cluster's secrets, kept 0600 outside version control.
import { defineCommand, JSON_FLAG, runCommand, SPEC_FLAG } from "../lib/cli.ts";
import { UserError } from "../lib/errors.ts";
import {
  type ClusterSecrets,
  caCertHash,
  ensureSecrets,
  generateSecrets,
  saveSecrets,
  secretsPath,
} from "../lib/secrets.ts";

const ROTATABLE: Record<string, keyof ClusterSecrets> = {
  "vrrp-password": "vrrpPassword",
  "stats-password": "statsPassword",
  "join-seed": "joinSeed",
};

const command = defineCommand({
  name: "secrets",
  usage: "bun run secrets [--spec FILE] [--rotate NAME[,NAME...]] [--json]",
  description:
    "Creates the cluster's secrets (VRRP and stats passwords, the join seed every join derives its own bootstrap token and certificate key from, cluster CA) on first use and prints where they are and the CA hash joins verify. Values are never printed. --rotate replaces the named ones and bumps the version, so the next deploy re-runs the steps that upload them. The CA cannot be rotated this way. Writes a local 0600 file only; contacts no host.",
  options: {
    ...SPEC_FLAG,
    rotate: {
      type: "string",
      value: "NAMES",
      description: "replace these secrets (comma-separated: vrrp-password, stats-password, join-seed)",
    },
    ...JSON_FLAG,
  },
  spec: "local",
  exits: { 0: "secrets exist (created or rotated)", 2: "bad input (flag, spec, secrets file)" },
  jsonData: "{file, version, caCertHash}",
  examples: ["bun run secrets --spec cluster.yaml", "bun run secrets --spec cluster.yaml --rotate stats-password"],
});

await runCommand(command, (cli) => {
  // Every name checked before anything is created or changed.
  const fields = (cli.values.rotate?.split(",") ?? []).map((raw) => {
    const n = raw.trim();
    const field = ROTATABLE[n];
    if (!field)
      throw new UserError(
        n === "bootstrap-token" || n === "certificate-key"
          ? `--rotate: "${n}" is not stored any more: every join mints its own and deletes it afterwards. Rotate join-seed to replace what they are derived from.`
          : `--rotate: "${n}" is not a rotatable secret. Use one or more of ${Object.keys(ROTATABLE).join(", ")}.`,
      );
    return field;
  });
  const spec = cli.spec();
  let s = ensureSecrets(spec);
  if (fields.length) {
    const fresh = generateSecrets();
    for (const field of fields) s = { ...s, [field]: fresh[field] };
    s = { ...s, version: s.version + 1 };
    saveSecrets(spec, s);
  }
  const info = { file: secretsPath(spec), version: s.version, caCertHash: caCertHash(s.caCert) };
  if (!cli.json)
    process.stdout.write(`secrets: ${info.file} (version ${info.version}, mode 0600)\nCA hash: ${info.caCertHash}\n`);
  return { data: info };
});
