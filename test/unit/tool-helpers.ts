// Small helpers the renderer tests share.
export function run(cmd: string[], stdin?: string, env: Record<string, string> = {}) {
  const p = Bun.spawnSync(cmd, {
    stdin: stdin === undefined ? undefined : new TextEncoder().encode(stdin),
    env: { ...process.env, ...env },
  });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

/** A validator tool: present, or a failure in CI, or a skip with a reason elsewhere. */
export function requireTool(name: string): boolean {
  if (Bun.which(name)) return true;
  if (process.env.CI === "true") throw new Error(`${name} is required in CI (install the Debian package)`);
  console.warn(`skipping: ${name} is not installed`);
  return false;
}
