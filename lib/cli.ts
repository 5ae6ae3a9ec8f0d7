// Shared command-line plumbing: flag parsing with --help, one-paragraph errors, progress lines.
import { type ParseArgsConfig, parseArgs } from "node:util";
import { UserError } from "./errors.ts";

type Options = NonNullable<ParseArgsConfig["options"]>;

export interface CommandDef<O extends Options> {
  name: string;
  usage: string;
  /** One paragraph shown by --help. */
  description: string;
  options: O;
  allowPositionals?: boolean;
}

/**
 * Parse argv for a command. --help prints usage and exits 0; an unknown flag is a
 * UserError (exit 2) that names the flag.
 */
export function parseCommand<O extends Options>(def: CommandDef<O>, argv = process.argv.slice(2)) {
  const options = { ...def.options, help: { type: "boolean", short: "h" } } as O & {
    help: { type: "boolean"; short: "h" };
  };
  let parsed: ReturnType<typeof parseArgs<{ options: typeof options; allowPositionals: boolean; strict: true }>>;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: def.allowPositionals ?? false, strict: true });
  } catch (e) {
    throw new UserError(`${def.name}: ${(e as Error).message}. Run with --help to see the accepted flags.`);
  }
  if ((parsed.values as Record<string, unknown>).help) {
    const flags = Object.entries(def.options)
      .map(([k, v]) => `  --${k}${v.type === "string" ? " VALUE" : ""}`)
      .join("\n");
    process.stdout.write(`usage: ${def.usage}\n\n${def.description}\n\nflags:\n${flags}\n  --help\n`);
    process.exit(0);
  }
  return parsed;
}

/** A flag value that must pass a format check (lib/spec/formats.ts): a UserError naming the flag otherwise. */
export function checkedFlag(flag: string, value: string, problem: (value: string) => string | undefined): string {
  const p = problem(value);
  if (p) throw new UserError(`--${flag} ${JSON.stringify(value)} ${p}.`);
  return value;
}

/** Run a command's main: UserError -> its message and exit code, anything else -> exit 1 without a stack unless KUBEADM_HA_DEBUG is set. */
export async function runCommand(
  // biome-ignore lint/suspicious/noConfusingVoidType: commands may return nothing (exit 0) or an exit code
  main: () => Promise<number | undefined | void> | number | undefined | void,
): Promise<never> {
  try {
    const code = await main();
    process.exit(typeof code === "number" ? code : 0);
  } catch (e) {
    if (e instanceof UserError) {
      process.stderr.write(`error: ${e.message}\n`);
      process.exit(e.exitCode);
    }
    const err = e as Error;
    process.stderr.write(`internal error: ${err?.message ?? String(e)}\n`);
    if (process.env.KUBEADM_HA_DEBUG) process.stderr.write(`${err?.stack ?? ""}\n`);
    else process.stderr.write("(set KUBEADM_HA_DEBUG=1 for the stack trace)\n");
    process.exit(1);
  }
}

const started = Date.now();
/** A progress line on stderr: elapsed time, host, phase, message. Keeps stdout clean for --json. */
export function progress(host: string, phase: string, message: string): void {
  const s = ((Date.now() - started) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`[${s}s] ${host.padEnd(12)} ${phase.padEnd(10)} ${message}\n`);
}
