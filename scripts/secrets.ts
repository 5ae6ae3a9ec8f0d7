// bun run secrets: generate (once) or rotate the cluster's secrets, kept 0600 outside version control.
import { parseCommand, runCommand } from "../lib/cli.ts";
import { UserError } from "../lib/errors.ts";
import { SECRET_NAMES, type SecretName } from "../lib/render/types.ts";
import {
  caCertHash,
  ensureSecrets,
  generateSecrets,
  SECRET_VARIABLES,
  saveSecrets,
  secretsPath,
} from "../lib/secrets.ts";
import { loadSpec, specPath } from "../lib/spec/load.ts";

await runCommand(() => {
  const { values, positionals } = parseCommand({
    name: "secrets",
    usage: "bun run secrets [SPEC] [--rotate NAME[,NAME...]] [--json]",
    description:
      "Creates the cluster's secrets (VRRP and stats passwords, bootstrap token, certificate key, cluster CA) on first use and prints where they are and the CA hash joins verify. Values are never printed. --rotate replaces the named ones (vrrp-password, stats-password, bootstrap-token, certificate-key) and bumps the version, so the next deploy re-runs the steps that upload them. The CA cannot be rotated this way.",
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
      if (!SECRET_NAMES.includes(n as SecretName) || n === "ca-key")
        throw new UserError(
          `--rotate: "${n}" is not a rotatable secret. Use one or more of vrrp-password, stats-password, bootstrap-token, certificate-key.`,
        );
      const field = SECRET_VARIABLES[n as SecretName].field;
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
