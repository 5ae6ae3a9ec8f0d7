// Secrets: generated in kubeadm's formats, refused when a person edits them into something unsafe.
import { describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { UserError } from "../../lib/errors.ts";
import { caCertHash, checkSecrets, generateSecrets } from "../../lib/secrets.ts";

describe("secrets", () => {
  const s = generateSecrets();

  test("generated values have kubeadm's and keepalived's formats", () => {
    expect(s.vrrpPassword).toMatch(/^[A-Za-z0-9]{8}$/);
    expect(s.joinSeed).toMatch(/^[a-f0-9]{64}$/);
    expect(() => checkSecrets(s, "f")).not.toThrow();
    expect(generateSecrets().vrrpPassword).not.toBe(s.vrrpPassword);
  });

  test("the CA is a CA named kubernetes, and its hash matches openssl's", () => {
    const cert = new X509Certificate(s.caCert);
    expect(cert.ca).toBe(true);
    expect(cert.subject).toContain("CN=kubernetes");
    // The pipeline kubeadm documents for computing --discovery-token-ca-cert-hash.
    const r = Bun.spawnSync(
      [
        "bash",
        "-c",
        "openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -hex | sed 's/^.* //'",
      ],
      { stdin: Buffer.from(s.caCert) },
    );
    expect(caCertHash(s.caCert)).toBe(`sha256:${r.stdout.toString().trim()}`);
  });

  test.each([
    ["vrrpPassword", "P@##D321!", "vrrpPassword"],
    ["vrrpPassword", "123456789", "vrrpPassword"],
    ["statsPassword", "short", "statsPassword"],
    ["joinSeed", "XYZ", "joinSeed"],
  ])("an edited %s of %p is refused, naming the field", (field, value, named) => {
    const bad = { ...s, [field]: value };
    expect(() => checkSecrets(bad, "secrets.json")).toThrow(UserError);
    expect(() => checkSecrets(bad, "secrets.json")).toThrow(named);
  });
});
