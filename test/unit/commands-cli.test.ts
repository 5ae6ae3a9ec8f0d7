// Bad input to the stack and secrets commands: exit 2, one paragraph naming what is wrong, no stack trace.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "../..");
const work = mkdtempSync(join(tmpdir(), "kha-cli-"));
const env = { ...process.env, KUBEADM_HA_SECRETS_DIR: join(work, "secrets"), CDKTF_OUTDIR: join(work, "out") };

function run(args: string[], extraEnv: Record<string, string> = {}) {
  const r = Bun.spawnSync([join(ROOT, "node_modules/.bin/bun"), ...args], {
    cwd: ROOT,
    env: { ...env, ...extraEnv },
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
}

const noStack = (text: string) => expect(text).not.toMatch(/^\s+at /m);

describe("commands on bad input", () => {
  test("synth with an invalid spec: exit 2, the field named, nothing synthesized", () => {
    const bad = join(work, "bad.yaml");
    writeFileSync(
      bad,
      "name: x\nkubernetes: { version: '1.31.4' }\nnodes: []\ncontrolPlaneEndpoint: { vip: 10.0.0.1, interface: eth0 }\n",
    );
    const r = run(["run", "main.ts"], { CLUSTER_SPEC: bad });
    expect(r.code).toBe(2);
    expect(r.err).toContain("nodes");
    noStack(r.err);
  });

  test("synth with a missing spec file names the file and the fix", () => {
    const r = run(["run", "main.ts"], { CLUSTER_SPEC: join(work, "nope.yaml") });
    expect(r.code).toBe(2);
    expect(r.err).toContain("nope.yaml does not exist");
    noStack(r.err);
  });

  test("secrets --rotate with an unknown or unrotatable name", () => {
    for (const name of ["root-password", "ca-key"]) {
      const r = run(["scripts/secrets.ts", "cluster.example.yaml", "--rotate", name]);
      expect(r.code).toBe(2);
      expect(r.err).toContain(`"${name}" is not a rotatable secret`);
      noStack(r.err);
    }
  });

  test("secrets --rotate bumps the version and changes only the named secret; values are never printed", () => {
    const first = JSON.parse(run(["scripts/secrets.ts", "cluster.example.yaml", "--json"]).out);
    const r = run(["scripts/secrets.ts", "cluster.example.yaml", "--rotate", "stats-password", "--json"]);
    expect(r.code).toBe(0);
    const after = JSON.parse(r.out);
    expect(after.version).toBe(first.version + 1);
    expect(after.caCertHash).toBe(first.caCertHash);
    expect(Object.keys(after).sort()).toEqual(["caCertHash", "file", "version"]);
  });

  test("an unknown flag or deploy command is named", () => {
    const flag = run(["scripts/secrets.ts", "--frobnicate"]);
    expect(flag.code).toBe(2);
    expect(flag.err).toContain("frobnicate");
    const tf = run(["scripts/tf.ts", "apply-everything"]);
    expect(tf.code).toBe(2);
    expect(tf.err).toContain('unknown command "apply-everything"');
    noStack(flag.err + tf.err);
  });

  test("a secrets file readable by others is refused", () => {
    const dir = join(work, "loose");
    const ok = run(["scripts/secrets.ts", "cluster.example.yaml"], { KUBEADM_HA_SECRETS_DIR: dir });
    expect(ok.code).toBe(0);
    Bun.spawnSync(["chmod", "644", join(dir, "example.json")]);
    const r = run(["scripts/secrets.ts", "cluster.example.yaml"], { KUBEADM_HA_SECRETS_DIR: dir });
    expect(r.code).toBe(2);
    expect(r.err).toContain("chmod 600");
  });
});
