// The frame every phase script shares, run for real with bash on temp paths:
// install only on change, rollback, the failing step named, the stage always removed.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { phaseScript } from "../../lib/render/phase-script.ts";
import type { RenderedFile } from "../../lib/render/types.ts";

const work = mkdtempSync(join(tmpdir(), "kha-frame-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Lay out a stage the way the constructs upload it, then run the script. */
function runStep(files: RenderedFile[], body: string) {
  const stage = mkdtempSync(join(work, "stage-"));
  for (const f of files) {
    const p = join(stage, "root", f.path);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, f.content);
  }
  const script = phaseScript({ phase: "prepare", node: "n1", files, secrets: [], body });
  writeFileSync(join(stage, "run.sh"), script);
  const r = Bun.spawnSync(["bash", join(stage, "run.sh")], { stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString(), stage, script };
}

describe("phase script frame", () => {
  const target = join(work, "etc", "demo.conf");
  const other = join(work, "etc", "new.conf");

  test("installs a changed file with its mode; a second run changes nothing", () => {
    const files = [{ path: target, content: "a=1\n", mode: "0640" }];
    const first = runStep(files, 'step "body"');
    expect(first.code).toBe(0);
    expect(first.out).toContain(`installed ${target}`);
    expect(readFileSync(target, "utf8")).toBe("a=1\n");
    expect(statSync(target).mode & 0o777).toBe(0o640);
    const second = runStep(files, `if changed ${target}; then echo CHANGED; fi`);
    expect(second.code).toBe(0);
    expect(second.out).not.toContain("installed");
    expect(second.out).not.toContain("CHANGED");
  });

  test("rollback_files puts back changed files and removes new ones", () => {
    const files = [
      { path: target, content: "a=2\n", mode: "0640" },
      { path: other, content: "fresh\n", mode: "0644" },
    ];
    const r = runStep(files, 'step "validate"\nrollback_files\ndie "config rejected"');
    expect(r.code).toBe(1);
    expect(readFileSync(target, "utf8")).toBe("a=1\n");
    expect(existsSync(other)).toBe(false);
    expect(r.err).toContain("config rejected");
  });

  test("a failing command names the step it failed in; the stage is removed either way", () => {
    const r = runStep([], 'step "the broken step"\nfalse\nstep "never"');
    expect(r.code).toBe(1);
    expect(r.err).toContain('FAILED during "the broken step"');
    expect(r.out).not.toContain("never");
    expect(existsSync(r.stage)).toBe(false);
    const ok = runStep([], 'step "fine"');
    expect(existsSync(ok.stage)).toBe(false);
  });

  test("the frame is shellcheck-clean", () => {
    const script = phaseScript({
      phase: "prepare",
      node: "n1",
      files: [{ path: "/etc/x.conf", content: "", mode: "0644" }],
      secrets: ["vrrp-password"],
      body: 'step "x"\nif changed /etc/x.conf; then rollback_files; fi\nsecret vrrp-password >/dev/null',
    });
    const r = Bun.spawnSync(["shellcheck", "-s", "bash", "-"], { stdin: Buffer.from(script), stdout: "pipe" });
    expect(r.stdout.toString()).toBe("");
    expect(r.exitCode).toBe(0);
  });
});
