// One source of truth: for every spec fixture, valid and invalid, `validate` and `synth`
// reach the same verdict. A rule that only synth (a renderer) or only the hosts enforce
// lets `validate` pass a spec that then fails at deploy time.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { synthesize } from "../../constructs/stack.ts";
import { UserError } from "../../lib/errors.ts";
import { loadSpec } from "../../lib/spec/load.ts";
import { SPECS_DIR } from "../fixtures/specs/cases.ts";

const ROOT = resolve(import.meta.dir, "../..");
const work = mkdtempSync(join(tmpdir(), "kha-agree-"));
// Synth generates secrets on first use: never into a developer's real secrets directory.
process.env.KUBEADM_HA_SECRETS_DIR = join(work, "secrets");

const FIXTURES = ["valid", "invalid"].flatMap((kind) =>
  readdirSync(join(SPECS_DIR, kind))
    .filter((f) => f.endsWith(".yaml"))
    .sort()
    .map((f) => join(SPECS_DIR, kind, f)),
);

type Verdict = { ok: true } | { ok: false; message: string };

/** A UserError is a verdict (exit 2); anything else is a bug the test must show. */
function verdict(run: () => void): Verdict {
  try {
    run();
    return { ok: true };
  } catch (e) {
    if (e instanceof UserError) return { ok: false, message: e.message };
    throw e;
  }
}

/** What `bun run validate FILE` does. */
const validateVerdict = (file: string) => verdict(() => loadSpec(file));

let seq = 0;
/** What `bun run synth` (main.ts) does, into a temporary output directory. */
function synthVerdict(file: string): Verdict {
  return verdict(() => {
    const spec = loadSpec(file);
    const dir = join(work, `synth-${++seq}`);
    synthesize(spec, { outdir: dir, renderDir: join(dir, "out", spec.name), specFile: file });
  });
}

describe("validate and synth agree on every fixture", () => {
  test("the fixtures are there", () => {
    expect(FIXTURES.length).toBeGreaterThan(60);
  });
  for (const file of FIXTURES) {
    const name = file.slice(SPECS_DIR.length + 1);
    test(name, () => {
      const v = validateVerdict(file);
      const s = synthVerdict(file);
      const show = (x: Verdict) => (x.ok ? "accepted" : `refused: ${x.message.slice(0, 400)}`);
      expect(`synth ${show(s)}`).toBe(`synth ${v.ok ? "accepted" : show(v)}`);
      expect(v.ok).toBe(name.startsWith("valid/"));
    });
  }
});

async function cli(script: string, file: string, env: Record<string, string> = {}): Promise<number> {
  const cwd = mkdtempSync(join(work, "cli-"));
  const proc = Bun.spawn([process.execPath, join(ROOT, script), ...(script === "main.ts" ? [] : ["--spec", file])], {
    cwd,
    env: {
      ...process.env,
      CLUSTER_SPEC: file,
      CDKTF_OUTDIR: join(cwd, "cdktf.out"),
      KUBEADM_HA_SECRETS_DIR: join(work, "secrets"),
      ...env,
    },
    stdout: "pipe",
    stderr: "pipe",
  });
  return proc.exited;
}

describe("the commands themselves: same exit code", () => {
  // The valid fixtures and the cases the issue names, through the real commands.
  const picked = FIXTURES.filter((f) => /\/valid\/|cni-cilium|cni-flannel|base-priority/.test(f));
  for (const file of picked) {
    test(file.slice(SPECS_DIR.length + 1), async () => {
      const [validateCode, synthCode] = await Promise.all([cli("scripts/validate.ts", file), cli("main.ts", file)]);
      expect({ validate: validateCode, synth: synthCode }).toEqual({
        validate: file.includes("/valid/") ? 0 : 2,
        synth: file.includes("/valid/") ? 0 : 2,
      });
    }, 60_000);
  }
});
