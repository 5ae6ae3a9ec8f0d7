// Progress lines: a leaf module, so library layers can take a logger (and default to this
// one) without importing the command-line plumbing.
import { writeSync } from "node:fs";

/**
 * Write all of `text` to a file descriptor (1 stdout, 2 stderr) synchronously. process.stderr
 * and process.stdout are streams whose first use loads node:net (a pipe) or node:tty (a
 * terminal), 10-30 ms of synth's start-up; a synchronous write also lands before process.exit.
 * A descriptor that would block (non-blocking pipe, full) gets the rest through the stream.
 */
export function writeFd(fd: 1 | 2, text: string): void {
  const bytes = Buffer.from(text);
  let off = 0;
  try {
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EAGAIN") throw e;
    (fd === 1 ? process.stdout : process.stderr).write(bytes.subarray(off));
  }
}

/** A line (or lines) on stderr, for notes and warnings outside the progress format. */
export const stderrLine = (text: string): void => writeFd(2, text.endsWith("\n") ? text : `${text}\n`);

/** One progress event: the host (or "local", a command name), the phase, and what happens. */
export type Progress = (host: string, phase: string, message: string) => void;

const started = Date.now();

/** A progress line on stderr: elapsed time, host, phase, message. Keeps stdout clean for --json. */
export const progress: Progress = (host, phase, message) => {
  const s = ((Date.now() - started) / 1000).toFixed(1).padStart(6);
  writeFd(2, `[${s}s] ${host.padEnd(12)} ${phase.padEnd(10)} ${message}\n`);
};

/** A logger that drops every line (tests, and callers that report through JSON only). */
export const quietProgress: Progress = () => {};
