// The builtin back-end's terraform_data needs Terraform 1.4: synth checks that once, not once per step.
import { describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { EXAMPLE } from "./stack-helpers.ts";

const ROOT = resolve(import.meta.dir, "../..");

/** `bun run main.ts` on the builtin example with a recording `terraform` first on PATH that reports `version`. */
function synthWithTerraform(version: string) {
  const work = mkdtempSync(join(tmpdir(), "kha-tfcheck-"));
  const bin = join(work, "bin");
  const log = join(work, "terraform.log");
  Bun.spawnSync(["mkdir", bin]);
  writeFileSync(
    join(bin, "terraform"),
    `#!/bin/sh\necho "$*" >> ${JSON.stringify(log)}\necho "Terraform v${version}"\n`,
  );
  chmodSync(join(bin, "terraform"), 0o755);
  writeFileSync(join(work, "cluster.yaml"), `${EXAMPLE}terraform: { resources: builtin }\n`);
  const r = Bun.spawnSync([process.execPath, "run", join(ROOT, "main.ts")], {
    cwd: work,
    env: {
      ...process.env,
      PATH: `${bin}:${process.env.PATH}`,
      CLUSTER_SPEC: join(work, "cluster.yaml"),
      KUBEADM_HA_SECRETS_DIR: join(work, "secrets"),
      CDKTF_OUTDIR: join(work, "cdktf.out"),
    },
    stdout: "pipe",
    stderr: "pipe",
  });
  const calls = (() => {
    try {
      return readFileSync(log, "utf8").trim().split("\n");
    } catch {
      return [];
    }
  })();
  return { code: r.exitCode, stderr: r.stderr.toString(), calls };
}

describe("builtin back-end: the Terraform version check", () => {
  test("runs `terraform version` once per synth (cdktf adds one per terraform_data resource)", () => {
    const r = synthWithTerraform("1.9.8");
    expect(r.stderr).toContain('synthesized stack "example" (builtin resources)');
    expect(r.code).toBe(0);
    expect(r.calls).toEqual(["version"]);
  });

  test("still refuses a Terraform without terraform_data", () => {
    const r = synthWithTerraform("1.3.9");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("terraform version 1.3.9 is lower than the required version >=1.4");
    expect(r.calls).toEqual(["version"]);
  });
});
