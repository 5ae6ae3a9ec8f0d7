// bun run secrets: generate (once) or rotate the cluster's secrets, kept 0600 outside version control.
import { parseCommand, runCommand } from "../lib/cli.ts";
import { UserError } from "../lib/errors.ts";
import {
  type ClusterSecrets,
  caCertHash,
  ensureSecrets,
  generateSecrets,
  saveSecrets,
  secretsPath,
} from "../lib/secrets.ts";
import { loadSpec, specPath } from "../lib/spec/load.ts";

const ROTATABLE: Record<string, keyof ClusterSecrets> = {
  "vrrp-password": "vrrpPassword",
  "stats-password": "statsPassword",
  "join-seed": "joinSeed",
};

await runCommand(() => {
  const { values, positionals } = parseCommand({
    name: "secrets",
    usage: "bun run secrets [SPEC] [--rotate NAME[,NAME...]] [--json]",
    description:
      "Creates the cluster's secrets (VRRP and stats passwords, the join seed every join derives its own bootstrap token and certificate key from, cluster CA) on first use and prints where they are and the CA hash joins verify. Values are never printed. --rotate replaces the named ones (vrrp-password, stats-password, join-seed) and bumps the version, so the next deploy re-runs the steps that upload them. The CA cannot be rotated this way.",
    options: { rotate: { type: "string" }, json: { type: "boolean" } },
    allowPositionals: true,
  });
  const spec = loadSpec(specPath(positionals[0]));
  let s = ensureSecrets(spec);
  if (values.rotate) {
    const names = String(values.rotate)
      .split(",")
      .map((n) => n.trim());
    const fresh = generateSecrets();
    for (const n of names) {
      const field = ROTATABLE[n];
      if (!field)
        throw new UserError(
          n === "bootstrap-token" || n === "certificate-key"
            ? `--rotate: "${n}" is not stored any more: every join mints its own and deletes it afterwards. Rotate join-seed to replace what they are derived from.`
            : `--rotate: "${n}" is not a rotatable secret. Use one or more of ${Object.keys(ROTATABLE).join(", ")}.`,
        );
      s = { ...s, [field]: fresh[field] };
    }
    s = { ...s, version: s.version + 1 };
    saveSecrets(spec, s);
  }
  const info = { file: secretsPath(spec), version: s.version, caCertHash: caCertHash(s.caCert) };
  if (values.json) process.stdout.write(`${JSON.stringify(info)}\n`);
  else
    process.stdout.write(`secrets: ${info.file} (version ${info.version}, mode 0600)\nCA hash: ${info.caCertHash}\n`);
});
