// The builtin back-end needs no provider: terraform init, validate and plan run
// fully offline on the synthesized stack. The plan shows every step to create.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ensureSecrets, terraformEnv } from "../../lib/secrets.ts";
import { EXAMPLE, steps, synthSpec } from "./stack-helpers.ts";

const terraform = Bun.which("terraform");
if (!terraform && process.env.CI === "true")
  throw new Error("terraform is not on PATH; CI needs it for the offline plan");

const run = (cwd: string, args: string[], env: Record<string, string>) => {
  const r = Bun.spawnSync([terraform!, ...args], {
    cwd,
    env: {
      ...process.env,
      ...env,
      CHECKPOINT_DISABLE: "1",
      TF_IN_AUTOMATION: "1",
      TF_CLI_CONFIG_FILE: resolve(import.meta.dir, "../../.tf/terraformrc"),
    },
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: r.exitCode, out: r.stdout.toString() + r.stderr.toString() };
};

describe.skipIf(!terraform)("terraform offline (builtin back-end)", () => {
  test("init, validate and plan succeed with no network; plan lists every step", () => {
    const keyDir = mkdtempSync(join(tmpdir(), "kha-key-"));
    writeFileSync(join(keyDir, "id"), "not-a-real-key\n", { mode: 0o600 });
    const syn = synthSpec(EXAMPLE, (spec) => {
      spec.terraform.resources = "builtin";
      spec.ssh.privateKeyPath = join(keyDir, "id");
    });
    const stackDir = join(syn.dir, "stacks", syn.spec.name);
    const env: Record<string, string> = { ...terraformEnv(ensureSecrets(syn.spec)) };
    for (const n of syn.spec.nodes) env[`TF_VAR_host_key_${n.name.replace(/-/g, "_")}`] = "ssh-ed25519 AAAAtest";

    const init = run(stackDir, ["init", "-input=false", "-no-color"], env);
    expect(init.out).toContain("Terraform has been successfully initialized");
    expect(init.code).toBe(0);
    const validate = run(stackDir, ["validate", "-no-color"], env);
    expect(validate.out).toContain("The configuration is valid");
    const plan = run(stackDir, ["plan", "-input=false", "-no-color", "-detailed-exitcode", "-out=plan.bin"], env);
    expect(plan.code).toBe(2); // 2 = changes present
    const count = Object.keys(steps(syn.json)).length;
    expect(plan.out).toContain(`Plan: ${count} to add, 0 to change, 0 to destroy`);
    // Secrets are sensitive variables: the plan never shows them.
    const secrets = ensureSecrets(syn.spec);
    for (const v of [secrets.vrrpPassword, secrets.statsPassword, secrets.joinSeed]) {
      expect(plan.out.includes(v)).toBe(false);
    }
  }, 120_000);

  test("terraform accepts the destroy-time reset (self-only connection) of resetOnDestroy", () => {
    const keyDir = mkdtempSync(join(tmpdir(), "kha-key-"));
    writeFileSync(join(keyDir, "id"), "not-a-real-key\n", { mode: 0o600 });
    const syn = synthSpec(EXAMPLE, (spec) => {
      spec.terraform.resources = "builtin";
      spec.terraform.resetOnDestroy = true;
      spec.ssh.privateKeyPath = join(keyDir, "id");
    });
    const stackDir = join(syn.dir, "stacks", syn.spec.name);
    expect(run(stackDir, ["init", "-input=false", "-no-color"], {}).code).toBe(0);
    const validate = run(stackDir, ["validate", "-no-color"], {});
    expect(validate.out).toContain("The configuration is valid");
  }, 120_000);
});
