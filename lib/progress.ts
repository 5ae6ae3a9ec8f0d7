// Progress lines: a leaf module, so library layers can take a logger (and default to this
// one) without importing the command-line plumbing.

/** One progress event: the host (or "local", a command name), the phase, and what happens. */
export type Progress = (host: string, phase: string, message: string) => void;

const started = Date.now();

/** A progress line on stderr: elapsed time, host, phase, message. Keeps stdout clean for --json. */
export const progress: Progress = (host, phase, message) => {
  const s = ((Date.now() - started) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`[${s}s] ${host.padEnd(12)} ${phase.padEnd(10)} ${message}\n`);
};

/** A logger that drops every line (tests, and callers that report through JSON only). */
export const quietProgress: Progress = () => {};
