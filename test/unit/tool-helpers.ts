// Small helpers the renderer tests share.
export function run(cmd: string[], stdin?: string, env: Record<string, string> = {}) {
  const p = Bun.spawnSync(cmd, {
    stdin: stdin === undefined ? undefined : new TextEncoder().encode(stdin),
    env: { ...process.env, ...env },
  });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

/**
 * Whether a test's prerequisite holds, for `test.skipIf(!...)`: true when present; elsewhere
 * false with the reason printed, so the test is reported as skipped; in CI a missing
 * prerequisite throws, so the file fails instead of skipping.
 */
export function prerequisite(ok: boolean, missing: string, install: string): boolean {
  if (ok) return true;
  if (process.env.CI === "true") throw new Error(`${missing}; CI needs it (${install})`);
  console.warn(`skipping: ${missing}`);
  return false;
}

/** A validator tool (see prerequisite). */
export const requireTool = (name: string): boolean =>
  prerequisite(Bun.which(name) !== null, `${name} is not installed`, "install the Debian package");

/** Root and unshare(1), for scripts run in a private mount namespace with overlays (see prerequisite). */
export const requireIsolation = (): boolean =>
  prerequisite(
    process.getuid?.() === 0 && Bun.which("unshare") !== null,
    "these tests need root and unshare(1)",
    "run as root with util-linux",
  );
