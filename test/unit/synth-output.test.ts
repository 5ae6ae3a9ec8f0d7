// What synth writes must not change by accident, and never because of how it is loaded:
// - `bun run main.ts` (lighter stand-ins for modules cdktf requires, see
//   constructs/module-stand-ins.ts) writes the same cdk.tf.json as a synth with cdktf's own modules;
// - the example's cdk.tf.json equals test/fixtures/golden/example.cdk.tf.json (captured before
//   the synth speed work), with a fixed cluster CA and the machine's paths replaced by <root>/<work>.
//   After an intended change of what synth renders: KHA_UPDATE_GOLDEN=1 bun test test/unit/synth-output.test.ts
import { describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { synthesize } from "../../constructs/stack.ts";
import { saveSecrets } from "../../lib/secrets.ts";
import { loadSpec } from "../../lib/spec/load.ts";
import { EXAMPLE } from "./stack-helpers.ts";

const ROOT = resolve(import.meta.dir, "../..");
const GOLDEN = join(ROOT, "test/fixtures/golden/example.cdk.tf.json");
const GOLDEN_CA = readFileSync(join(ROOT, "test/fixtures/golden/example-ca.crt"), "utf8");
const HOME = "/home/kha-golden";

/** A work dir laid out as a user's checkout: cluster.yaml, cdktf.out/, out/; secrets with the golden CA. */
function workDir(specText = EXAMPLE): { work: string; secretsDir: string; spec: string } {
  const work = mkdtempSync(join(tmpdir(), "kha-golden-"));
  const spec = join(work, "cluster.yaml");
  writeFileSync(spec, specText);
  const secretsDir = join(work, "secrets");
  mkdirSync(secretsDir, { mode: 0o700 });
  // Only the CA certificate reaches cdk.tf.json; the other values are placeholders of the right form.
  saveSecrets(
    loadSpec(spec),
    {
      version: 1,
      vrrpPassword: "golden01",
      statsPassword: "golden-stats-password",
      joinSeed: "0".repeat(64),
      caKey: "-----BEGIN PRIVATE KEY-----\nplaceholder: the golden test signs nothing\n-----END PRIVATE KEY-----\n",
      caCert: GOLDEN_CA,
    },
    secretsDir,
  );
  return { work, secretsDir, spec };
}

/** `bun run main.ts` in work (as a user runs it); returns cdk.tf.json. */
function cliSynth(w: ReturnType<typeof workDir>): string {
  const r = Bun.spawnSync([process.execPath, "run", join(ROOT, "main.ts")], {
    cwd: w.work,
    env: {
      ...process.env,
      HOME,
      CLUSTER_SPEC: w.spec,
      KUBEADM_HA_SECRETS_DIR: w.secretsDir,
      CDKTF_OUTDIR: join(w.work, "cdktf.out"),
    },
    stdout: "pipe",
    stderr: "pipe",
  });
  if (r.exitCode !== 0) throw new Error(`main.ts exited ${r.exitCode}: ${r.stderr.toString()}`);
  return readFileSync(join(w.work, "cdktf.out/stacks/example/cdk.tf.json"), "utf8");
}

/** The same synth in this process, with cdktf's own modules (no stand-ins registered here). */
function stockSynth(w: ReturnType<typeof workDir>, outdir: string): string {
  const saved = { home: process.env.HOME, secrets: process.env.KUBEADM_HA_SECRETS_DIR };
  process.env.HOME = HOME;
  process.env.KUBEADM_HA_SECRETS_DIR = w.secretsDir;
  try {
    const { stackDir } = synthesize(loadSpec(w.spec), {
      outdir: join(w.work, outdir),
      renderDir: join(w.work, "out", "example"),
      specFile: w.spec,
    });
    return readFileSync(join(stackDir, "cdk.tf.json"), "utf8");
  } finally {
    process.env.HOME = saved.home;
    process.env.KUBEADM_HA_SECRETS_DIR = saved.secrets;
  }
}

const normalize = (json: string, work: string): string => json.replaceAll(ROOT, "<root>").replaceAll(work, "<work>");

describe("synth output", () => {
  test.each(["hashicorp", "builtin"])(
    "main.ts with the module stand-ins writes the same cdk.tf.json as cdktf's own modules (%s)",
    (backend) => {
      const w = workDir(`${EXAMPLE}terraform: { resources: ${backend} }\n`);
      const cli = cliSynth(w);
      // Same relative layout (cdktf.out/stacks/example next to out/example), so relative paths agree.
      const stock = stockSynth(w, "cdktf.out");
      expect(cli.length).toBeGreaterThan(100_000);
      expect(cli === stock).toBe(true);
    },
  );

  test("the example's cdk.tf.json is the golden one", () => {
    const w = workDir();
    const actual = normalize(cliSynth(w), w.work);
    if (process.env.KHA_UPDATE_GOLDEN === "1" && process.env.CI !== "true") writeFileSync(GOLDEN, actual);
    const golden = readFileSync(GOLDEN, "utf8");
    if (actual !== golden) {
      const a = actual.split("\n");
      const g = golden.split("\n");
      const i = a.findIndex((line, n) => line !== g[n]);
      throw new Error(
        `cdk.tf.json differs from ${GOLDEN} first at line ${i + 1}:\n  golden: ${g[i]}\n  actual: ${a[i]}\nIf the change is intended, run KHA_UPDATE_GOLDEN=1 bun test test/unit/synth-output.test.ts and commit the fixture.`,
      );
    }
  });
});
