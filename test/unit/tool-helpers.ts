import { readFileSync } from "node:fs";
import { resolve } from "node:path";
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

/** terraform on PATH (a failure in CI when it is missing, undefined elsewhere). */
export const terraformBin = (() => {
  const t = Bun.which("terraform");
  if (!t && process.env.CI === "true") throw new Error("terraform is not on PATH; CI needs it for the offline tests");
  return t ?? undefined;
})();

/** terraform ARGS in CWD, offline and quiet, with the project's CLI config and extra environment. */
export function terraformRun(cwd: string, args: string[], env: Record<string, string> = {}) {
  const r = Bun.spawnSync([terraformBin!, ...args], {
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
}

/**
 * A throwaway self-signed certificate (EC P-256) made by openssl, for a test CA or a TLS server:
 * written to `certPath`/`keyPath`, returned as PEM text.
 */
export function selfSignedCert(opts: { certPath: string; keyPath: string; cn: string; days?: number }): {
  cert: string;
  key: string;
} {
  // biome-ignore format: flag list
  const r = run([
    "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
    "-days", String(opts.days ?? 1), "-subj", `/CN=${opts.cn}`, "-keyout", opts.keyPath, "-out", opts.certPath,
  ]);
  if (r.code !== 0) throw new Error(`openssl could not make a test certificate: ${r.err}`);
  return { cert: readFileSync(opts.certPath, "utf8"), key: readFileSync(opts.keyPath, "utf8") };
}

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export function freePort(): number {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const p = s.port;
  s.stop(true);
  return p;
}
