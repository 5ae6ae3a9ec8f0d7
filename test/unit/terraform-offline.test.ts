// The builtin back-end needs no provider: terraform init, validate and plan run
// fully offline on the synthesized stack. The plan shows every step to create, and
// refuses host_key_* variables that would turn SSH host-key verification off.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureSecrets, terraformEnv } from "../../lib/secrets.ts";
import { EXAMPLE, steps, synthSpec } from "./stack-helpers.ts";
import { terraformBin, terraformRun } from "./tool-helpers.ts";

const terraform = terraformBin;
const run = terraformRun;

/** A real public key of `type` in "type base64" form, made by ssh-keygen. */
function publicKey(type: "ed25519" | "ecdsa" | "rsa"): string {
  const dir = mkdtempSync(join(tmpdir(), "kha-hostkey-"));
  const r = Bun.spawnSync(["ssh-keygen", "-q", "-t", type, "-N", "", "-f", join(dir, "k")]);
  if (r.exitCode !== 0) throw new Error(`ssh-keygen -t ${type}: ${r.stderr.toString()}`);
  return readFileSync(join(dir, "k.pub"), "utf8").trim().split(/\s+/).slice(0, 2).join(" ");
}

const hostKeyVar = (label: string) => `TF_VAR_host_key_${label.replace(/-/g, "_")}`;

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
    for (const n of syn.spec.nodes) env[hostKeyVar(n.name)] = publicKey("ed25519");

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
  describe("host_key_<node> variables: an empty or malformed key fails the plan, naming the node", () => {
    const keyDir = mkdtempSync(join(tmpdir(), "kha-key-"));
    writeFileSync(join(keyDir, "id"), "not-a-real-key\n", { mode: 0o600 });
    const syn = synthSpec(EXAMPLE, (spec) => {
      spec.terraform.resources = "builtin";
      spec.ssh.privateKeyPath = join(keyDir, "id");
      spec.ssh.bastion = { host: "198.18.0.2", port: 22, user: "ops" };
    });
    const stackDir = join(syn.dir, "stacks", syn.spec.name);
    const labels = [...syn.spec.nodes.map((n) => n.name), "bastion"];
    const good = () => {
      const types = ["ed25519", "ecdsa", "rsa"] as const;
      const env: Record<string, string> = { ...terraformEnv(ensureSecrets(syn.spec)) };
      for (const [i, l] of labels.entries()) env[hostKeyVar(l)] = publicKey(types[i % types.length]!);
      return env;
    };
    const plan = (env: Record<string, string>) =>
      run(stackDir, ["plan", "-input=false", "-no-color", "-detailed-exitcode", "-lock=false"], env);
    let env: Record<string, string>;

    test("init; real ed25519, ecdsa and rsa keys for every node and the bastion pass the plan", () => {
      expect(run(stackDir, ["init", "-input=false", "-no-color"], {}).code).toBe(0);
      env = good();
      const r = plan(env);
      expect(r.out).not.toContain("Invalid value for variable");
      expect(r.code).toBe(2);
    }, 120_000);

    const bad: Array<[string, string, (valid: string) => string]> = [
      ["empty (what pressing Enter at the prompt gives)", "cp-1", () => ""],
      ["empty, for the bastion", "bastion", () => ""],
      ["whitespace", "worker-2", () => " "],
      ["a placeholder", "cp-2", () => "ssh-ed25519 AAAAtest"],
      ["the type alone", "cp-3", () => "ssh-ed25519"],
      ["a known_hosts line (host name first)", "cp-1", (k) => `cp-1 ${k}`],
      ["an ed25519 key labelled ssh-rsa", "worker-1", (k) => `ssh-rsa ${k.split(" ")[1]}`],
      ["a truncated key", "cp-2", (k) => k.slice(0, 30)],
      ["a key with a stray character", "bastion", (k) => `${k.slice(0, 40)}!${k.slice(41)}`],
    ];
    for (const [what, label, make] of bad) {
      test(`${what} for ${label}: plan fails naming ${label} and bun run trust-hosts`, () => {
        const r = plan({ ...env, [hostKeyVar(label)]: make(publicKey("ed25519")) });
        expect(r.code).toBe(1);
        expect(r.out).toContain(`var.host_key_${label.replace(/-/g, "_")}`);
        const message = r.out.replace(/\s*│\s*/g, " ").replace(/\s+/g, " ");
        expect(message).toContain(`The host key of ${label} (`);
        expect(message).toContain("Run `bun run trust-hosts`");
        // Only the bad variable is reported.
        expect(r.out.split("Invalid value for variable").length - 1).toBe(1);
      }, 120_000);
    }
  });
});
