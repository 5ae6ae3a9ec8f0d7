// A join round's bootstrap token and certificate key are derived by Terraform at apply time
// from the join seed and the step's own resource id. Terraform runs the stack's expression for
// real here (terraform_data, no provider, offline) and the result must equal roundSecret in
// lib/secrets.ts, which the Bun tools use: one derivation, two implementations, checked equal.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { secretContent } from "../../constructs/ha-cluster.ts";
import type { SecretName } from "../../lib/render/types.ts";
import { roundSecret } from "../../lib/secrets.ts";
import { terraformBin, terraformRun } from "./tool-helpers.ts";

const terraform = terraformBin;
const tf = terraformRun;

describe.skipIf(!terraform)("round secrets", () => {
  test("Terraform's derivation (seed + self.id) equals roundSecret, and each resource gets its own", () => {
    const dir = mkdtempSync(join(tmpdir(), "kha-round-"));
    const names: SecretName[] = ["bootstrap-token", "certificate-key"];
    const vars = new Map([["join_seed", { stringValue: "${var.join_seed}" } as never]]);
    const resource = (n: number) => ({
      provisioner: [
        {
          "local-exec": {
            // Sensitive values travel in the environment; the command itself holds none.
            command: `printf '%s' "$ID" > id${n}; printf '%s' "$T" > t${n}; printf '%s' "$K" > k${n}`,
            environment: {
              ID: "${self.id}",
              T: secretContent(names[0]!, vars),
              K: secretContent(names[1]!, vars),
            },
          },
        },
      ],
    });
    const config = {
      variable: { join_seed: { type: "string", sensitive: true } },
      resource: { terraform_data: { a: resource(1), b: resource(2) } },
    };
    writeFileSync(join(dir, "main.tf.json"), JSON.stringify(config));
    const seed = "ab".repeat(32);
    const env = { TF_VAR_join_seed: seed };
    expect(tf(dir, ["init", "-input=false", "-no-color"], env).code).toBe(0);
    const apply = tf(dir, ["apply", "-input=false", "-no-color", "-auto-approve"], env);
    expect(apply.out).toContain("Apply complete");
    expect(apply.out).not.toContain(seed);
    const read = (f: string) => readFileSync(join(dir, f), "utf8");
    for (const n of [1, 2]) {
      const id = read(`id${n}`);
      expect(id.length).toBeGreaterThan(8);
      expect(read(`t${n}`)).toBe(roundSecret(seed, id, "bootstrap-token"));
      expect(read(`k${n}`)).toBe(roundSecret(seed, id, "certificate-key"));
      expect(read(`t${n}`)).toMatch(/^[a-z0-9]{6}\.[a-z0-9]{16}$/);
      expect(read(`k${n}`)).toMatch(/^[0-9a-f]{64}$/);
      expect(apply.out).not.toContain(read(`t${n}`));
    }
    expect(read("t1")).not.toBe(read("t2"));
  }, 120_000);
});
