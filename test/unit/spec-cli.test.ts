// `bun scripts/validate.ts` as a user runs it: exit codes, stdout/stderr, the --json envelope,
// --help, and never a stack trace.
import { beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { INVALID_CASES, invalidSpec, VALID_SPECS, validSpec } from "../fixtures/specs/cases.ts";
import { eachLimited, type Ran, ROOT, runBun } from "./cli-helpers.ts";

const SCRIPT = join(ROOT, "scripts/validate.ts");

type Run = Ran;
const validate = (args: string[], opts: { cwd?: string; env?: Record<string, string | undefined> } = {}) =>
  runBun([SCRIPT, ...args], opts);

/** Run many invocations a few at a time (each is a fresh bun process, ~0.2 s). */
async function validateAll(files: string[], extra: string[] = []): Promise<Map<string, Run>> {
  const runs = await eachLimited(files, (f) => validate([...extra, "--spec", f]));
  return new Map(files.map((f, i) => [f, runs[i]!]));
}

const noStackTrace = (text: string) => {
  expect(text).not.toMatch(/^\s+at /m);
  expect(text).not.toContain("internal error");
};

describe("invalid specs exit 2 with every problem on stderr", () => {
  let runs: Map<string, Run>;
  beforeAll(async () => {
    runs = await validateAll(INVALID_CASES.map((c) => invalidSpec(c.file)));
  }, 120_000);
  for (const c of INVALID_CASES) {
    test(c.file, () => {
      const run = runs.get(invalidSpec(c.file));
      expect(run?.code).toBe(2);
      expect(run?.stdout).toBe("");
      expect(run?.stderr).toStartWith(
        `error: ${invalidSpec(c.file)} is not a valid cluster spec (${c.problems} problem`,
      );
      for (const text of c.expect) expect(run?.stderr).toContain(text);
      noStackTrace(run?.stderr ?? "");
    });
  }
});

describe("valid specs", () => {
  test("each valid fixture exits 0 with a one-line summary", async () => {
    const runs = await validateAll(VALID_SPECS.map(validSpec));
    for (const [file, run] of runs) {
      expect({ file, code: run.code, stderr: run.stderr }).toEqual({ file, code: 0, stderr: "" });
      expect(run.stdout).toMatch(
        new RegExp(`^ok: ${file}: \\d+ control planes?, \\d+ workers?, VIP 10\\.0\\.0\\.10:(8443|6443)\\n$`),
      );
    }
    expect(runs.get(validSpec("single-control-plane.yaml"))?.stdout).toContain(": 1 control plane, 2 workers,");
  });

  test("without --spec, CLUSTER_SPEC or ./cluster.yaml it checks the example and says so on stderr", async () => {
    const dir = mkdtempSync(join(tmpdir(), "validate-"));
    try {
      const run = await validate([], { cwd: dir });
      expect(run.code).toBe(0);
      expect(run.stdout).toBe(
        `ok: ${join(ROOT, "cluster.example.yaml")}: 3 control planes, 2 workers, VIP 10.0.0.162:8443\n`,
      );
      expect(run.stderr).toContain("no --spec, no CLUSTER_SPEC and no ./cluster.yaml: validate uses the example spec");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("CLUSTER_SPEC names the default file", async () => {
    const file = invalidSpec("control-planes-even.yaml");
    const run = await validate([], { env: { CLUSTER_SPEC: file } });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`${file}:9:1: nodes: 4 control planes`);
  });
});

describe("--json: the envelope {ok, command, data: {file, valid, problems}, error}", () => {
  test("invalid: problems on stdout, exit 2", async () => {
    const file = invalidSpec("many-problems.yaml");
    const run = await validate(["--json", "--spec", file]);
    expect(run.code).toBe(2);
    expect(run.stderr).toBe("");
    const out = JSON.parse(run.stdout);
    expect(out).toMatchObject({ ok: false, command: "validate", error: { code: 2 } });
    expect(out.error.message).toStartWith(`${file} is not a valid cluster spec (10 problems)`);
    expect(out.data.valid).toBe(false);
    expect(out.data.file).toBe(file);
    expect(out.data.problems).toHaveLength(10);
    expect(out.data.problems[0]).toEqual({
      path: "name",
      line: 1,
      column: 7,
      message: `name: "Lab_1" must be a lowercase DNS label: letters, digits and '-', at most 63 characters; write "lab-1".`,
    });
    expect(out.data.problems.map((p: { path: string }) => p.path)).toContain("nodes[2].name");
  });

  test("valid: ok, valid true and no problems, exit 0", async () => {
    const run = await validate(["--json", "--spec", "cluster.example.yaml"]);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({
      ok: true,
      command: "validate",
      data: { valid: true, file: "cluster.example.yaml", problems: [] },
      error: null,
    });
  });

  test("a missing file is one problem without a position", async () => {
    const run = await validate(["--json", "--spec", "/nonexistent.yaml"]);
    expect(run.code).toBe(2);
    const out = JSON.parse(run.stdout);
    expect(out.data).toMatchObject({ valid: false, file: "/nonexistent.yaml" });
    expect(out.data.problems).toEqual([
      { path: "", line: null, column: null, message: expect.stringContaining("/nonexistent.yaml does not exist") },
    ]);
  });
});

describe("command line", () => {
  test("--help prints usage and exits 0", async () => {
    const run = await validate(["--help"]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("usage: bun run validate [--spec FILE] [--json]");
    expect(run.stdout).toContain("--json");
  });

  test("a missing file exits 2 naming it", async () => {
    const run = await validate(["--spec", "/nonexistent.yaml"]);
    expect(run).toMatchObject({ code: 2, stdout: "" });
    expect(run.stderr).toContain("spec file /nonexistent.yaml does not exist");
    noStackTrace(run.stderr);
  });

  test("an unknown flag or a file without --spec exits 2", async () => {
    const flag = await validate(["--jsno"]);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain("--jsno");
    const two = await validate(["a.yaml", "b.yaml"]);
    expect(two.code).toBe(2);
    expect(two.stderr).toContain('unexpected argument "a.yaml" "b.yaml". Name the spec with --spec FILE.');
  });
});
