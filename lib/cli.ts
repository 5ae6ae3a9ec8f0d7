// Shared command-line plumbing, one of each for every command: the flag parser and its --help
// (one line per flag, from the flag definitions), the spec convention (--spec, CLUSTER_SPEC,
// ./cluster.yaml), the JSON envelope {ok, command, data, error}, the confirmation before a host
// changes, one-paragraph errors with the exit codes of lib/errors.ts, and progress lines.
import { parseArgs } from "node:util";
import { EXIT, UserError } from "./errors.ts";
import { stderrLine, writeFd } from "./progress.ts";
import { chooseSpecFile, loadChosenSpec, type SpecChoice, type SpecUse } from "./spec/load.ts";
import type { ClusterSpec } from "./spec/schema.ts";

export { type Progress, progress, stderrLine } from "./progress.ts";

/** One flag: its type, an optional one-letter alias, and the line --help shows for it. */
export interface FlagDef {
  type: "string" | "boolean";
  short?: string;
  /** One line for --help (every command under scripts/ has one; a test checks). */
  description?: string;
  /** The value's placeholder in --help, e.g. FILE (string flags; VALUE when absent). */
  value?: string;
}
export type Flags = Record<string, FlagDef>;

export interface CommandDef<O extends Flags> {
  /** As the user types it after `bun run`, e.g. "etcd:backup". */
  name: string;
  /** The command line, e.g. "bun run verify [--spec FILE] [--json]". */
  usage: string;
  /** One paragraph shown by --help. */
  description: string;
  options: O;
  /** Positional arguments, shown by --help; a command without them refuses any. */
  positionals?: { name: string; description: string }[];
  /** Accept any number of positionals (the lab's `etcdctl -- ARGS`); the command checks them. */
  allowPositionals?: boolean;
  /** Exit codes, code -> meaning, shown by --help (the README's table says the same). */
  exits?: Record<number, string>;
  /** The shape of `data` in the --json envelope, shown by --help. */
  jsonData?: string;
  examples?: string[];
  /** How the command uses its spec (see SpecUse); it must then have the --spec flag. */
  spec?: SpecUse;
}

/** The --spec flag, the same for every command. */
export const SPEC_FLAG = {
  spec: {
    type: "string",
    value: "FILE",
    description: "the cluster spec (default: $CLUSTER_SPEC, else ./cluster.yaml)",
  },
} as const;

/** The --json flag, the same for every command. */
export const JSON_FLAG = {
  json: { type: "boolean", description: "print one JSON envelope {ok, command, data, error} on stdout" },
} as const;

/** The flags node:replace and node:remove share: the deployed stack, a plan-only run, the wait. */
export const HEAL_FLAGS = {
  "stack-dir": {
    type: "string",
    value: "DIR",
    description: "the deployed stack (default cdktf.out/stacks/<cluster>, or $CDKTF_OUTDIR/stacks/<cluster>)",
  },
  "dry-run": { type: "boolean", description: "check and print the plan; change nothing" },
  timeout: {
    type: "string",
    value: "SECONDS",
    description: "how long to wait for the cluster to be whole (default 300)",
  },
} as const;

const HELP_FLAG = { help: { type: "boolean", short: "h", description: "print this help" } } as const;

type Parsed<O extends Flags> = ReturnType<
  typeof parseArgs<{ options: O & typeof HELP_FLAG; allowPositionals: true; strict: true }>
>;
export type Values<O extends Flags> = Parsed<O>["values"];

/** A command definition, kept with its literal flag types (for typed `values`). */
export function defineCommand<const O extends Flags>(def: CommandDef<O>): CommandDef<O> {
  return def;
}

/** Wrap `text` at `width` columns, every line after the first indented by `indent`. */
function wrap(text: string, width: number, indent = ""): string {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/).filter(Boolean)) {
    const next = line ? `${line} ${word}` : word;
    if (next.length > width - (lines.length ? indent.length : 0) && line) {
      lines.push(line);
      line = word;
    } else line = next;
  }
  if (line) lines.push(line);
  return lines.map((l, i) => (i === 0 ? l : `${indent}${l}`)).join("\n");
}

/** The --help text: usage, description, one line per flag and argument, exit codes, JSON data, examples. */
export function helpText<O extends Flags>(def: CommandDef<O>): string {
  const width = 100;
  const flag = ([name, f]: [string, FlagDef]) =>
    `${f.short ? `-${f.short}, ` : "    "}--${name}${f.type === "string" ? ` ${f.value ?? "VALUE"}` : ""}`;
  const flags = Object.entries({ ...def.options, ...HELP_FLAG } as Flags);
  const args = def.positionals ?? [];
  const left = Math.max(...flags.map((f) => flag(f).length), ...args.map((a) => a.name.length + 4)) + 2;
  const row = (l: string, text: string) => `  ${l.padEnd(left)}${wrap(text, width - left - 2, " ".repeat(left + 2))}`;
  const parts = [`usage: ${def.usage}`, wrap(def.description, width)];
  if (args.length) parts.push(`arguments:\n${args.map((a) => row(`    ${a.name}`, a.description)).join("\n")}`);
  parts.push(`flags:\n${flags.map((f) => row(flag(f), f[1].description ?? "")).join("\n")}`);
  if (def.exits)
    parts.push(
      `exit codes:\n${Object.entries(def.exits)
        .map(([code, meaning]) => `  ${code.padEnd(4)}${wrap(meaning, width - 6, "      ")}`)
        .join("\n")}`,
    );
  if (def.jsonData) parts.push(`--json data: ${wrap(def.jsonData, width - 13, "  ")}`);
  if (def.examples?.length) parts.push(`examples:\n${def.examples.map((e) => `  ${e}`).join("\n")}`);
  return `${parts.join("\n\n")}\n`;
}

/** node's parseArgs errors, said shortly: which flag, and which flags there are. */
function parseProblem(e: Error & { code?: string }, options: Flags): string {
  const flag = /'(-[^' ]+)/.exec(e.message)?.[1] ?? "";
  const known = Object.keys(options)
    .map((k) => `--${k}`)
    .join(", ");
  if (e.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION")
    return `unknown flag ${flag}. The flags are ${known || "(none)"} and --help.`;
  if (e.code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
    const value = options[flag.replace(/^--/, "")]?.value ?? "VALUE";
    return /argument missing/.test(e.message)
      ? `${flag} needs a value: ${flag} ${value}.`
      : `${flag} takes no value: write ${flag} alone.`;
  }
  return `${e.message}. Run with --help to see the accepted flags.`;
}

/**
 * Parse argv for a command. --help prints the help and exits 0; an unknown flag is a
 * UserError (exit 2) that names the flag.
 */
export function parseCommand<O extends Flags>(def: CommandDef<O>, argv = process.argv.slice(2)): Parsed<O> {
  const options = { ...def.options, ...HELP_FLAG } as O & typeof HELP_FLAG;
  let parsed: Parsed<O>;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true }) as Parsed<O>;
  } catch (e) {
    throw new UserError(`${def.name}: ${parseProblem(e as Error & { code?: string }, def.options)}`);
  }
  if ((parsed.values as Record<string, unknown>).help) {
    writeFd(1, helpText(def));
    process.exit(0);
  }
  const accepted = def.allowPositionals ? Infinity : (def.positionals?.length ?? 0);
  if (parsed.positionals.length > accepted) {
    const extra = parsed.positionals.slice(accepted).map((p) => JSON.stringify(p));
    throw new UserError(
      `${def.name}: unexpected argument ${extra.join(" ")}. ${def.spec ? "Name the spec with --spec FILE. " : ""}Run with --help to see the accepted arguments.`,
    );
  }
  return parsed;
}

/** A flag value that must pass a format check (lib/spec/formats.ts): a UserError naming the flag otherwise. */
export function checkedFlag(flag: string, value: string, problem: (value: string) => string | undefined): string {
  const p = problem(value);
  if (p) throw new UserError(`--${flag} ${JSON.stringify(value)} ${p}.`);
  return value;
}

/** A --timeout-style flag: whole seconds from 10 to 3600, `fallback` when absent; a UserError naming the flag otherwise. */
export function secondsFlag(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 10 || n > 3600)
    throw new UserError(
      `--${flag} ${value} is not a whole number of seconds from 10 to 3600. Example: --${flag} ${fallback}.`,
    );
  return n;
}

/** What a command's main hands back: its exit code, the envelope's data, and the error message when it failed. */
export interface Outcome {
  code?: number;
  data?: unknown;
  /** One paragraph: why the command did not succeed (for the envelope's error; text output says it its own way). */
  error?: string;
}

/** The one --json shape of every command. `ok` is true exactly when the exit code is 0. */
export interface Envelope {
  ok: boolean;
  command: string;
  data: unknown;
  error: { message: string; code: number } | null;
}

export function envelope(command: string, code: number, data: unknown, message?: string): Envelope {
  return {
    ok: code === EXIT.ok,
    command,
    data: data ?? null,
    error: code === EXIT.ok ? null : { message: message ?? `${command} exited ${code}`, code },
  };
}

/** What a running command knows: its flags, whether --json was asked for, and its spec. */
export interface Invocation<O extends Flags> {
  values: Values<O>;
  positionals: string[];
  json: boolean;
  /** The spec file by the one convention (never the example unless the command may use it). */
  specChoice(): SpecChoice;
  /** The spec, loaded once on first use. */
  spec(): ClusterSpec;
  /** Ask before changing hosts (or go on with --yes, the command's flag by default); see confirm. */
  confirm(what: string, opts?: Omit<ConfirmOptions, "command" | "what">): Promise<void>;
  /** Print the outcome (the envelope with --json) and exit: for signal handlers that cannot return. */
  exit(code: number, outcome?: Outcome): never;
}

// biome-ignore lint/suspicious/noConfusingVoidType: a main may return nothing (exit 0)
type MainResult = number | undefined | void | Outcome;

/** How a command that changes hosts asks first (confirm). */
export interface ConfirmOptions {
  command: string;
  /** What will change, as the rest of a sentence after the command's name. */
  what: string;
  /** --yes: go on without asking. */
  yes?: boolean;
  /** What to type to go on (default "yes"); e.g. the cluster name before a restore. */
  answer?: string;
  /**
   * false: only refuse without a terminal (and without --yes); the question itself comes later
   * from a tool the command runs (terraform's own prompt for drift --fix). Default true.
   */
  ask?: boolean;
  /** Shown on stderr before the question (the plan being confirmed). */
  preface?: string;
  /** Aborts a pending question (a signal handler's AbortController). */
  signal?: AbortSignal;
  /** Ctrl-C at the question (a terminal's Ctrl-C reaches readline, not the process). */
  onInterrupt?: () => void;
}

/**
 * The one confirmation before a command changes hosts. With `yes` it goes on; without a
 * terminal it refuses (exit 2) and says to pass --yes; otherwise it asks on stderr and goes on
 * only for the expected answer. Nothing is changed on refusal: call it before any change.
 */
export async function confirm(opts: ConfirmOptions): Promise<void> {
  if (!(await confirmed(opts)))
    throw new UserError(`${opts.command}: not confirmed; nothing was changed. Pass --yes to skip the question.`);
}

/** confirm, for callers that report a wrong answer their own way: false instead of the refusal. */
export async function confirmed(opts: ConfirmOptions): Promise<boolean> {
  if (opts.yes) return true;
  if (!process.stdin.isTTY)
    throw new UserError(
      `${opts.command} ${opts.what}. There is no terminal to ask for confirmation: pass --yes to go on. Nothing was changed.`,
    );
  if (opts.ask === false) return true;
  if (opts.preface) stderrLine(opts.preface);
  const answer = opts.answer ?? "yes";
  // Loaded here, not at start-up: only a confirmation needs it.
  const { createInterface } = await import("node:readline/promises");
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  if (opts.onInterrupt) rl.on("SIGINT", opts.onInterrupt);
  const typed = await rl
    .question(`${opts.command} ${opts.what}. Type ${answer} to go on: `, opts.signal ? { signal: opts.signal } : {})
    .finally(() => rl.close());
  return answer === "yes" ? typed.trim().toLowerCase() === "yes" : typed.trim() === answer;
}

function finish(command: string, json: boolean, code: number, outcome: Outcome = {}): never {
  if (json) writeFd(1, `${JSON.stringify(envelope(command, code, outcome.data, outcome.error), null, 2)}\n`);
  process.exit(code);
}

/**
 * Run a command: parse its flags (--help, bad flags), pick its spec, run `main`, print the
 * envelope with --json, and exit with the code. A UserError becomes its one paragraph and exit
 * code; anything else exits 1 without a stack unless KUBEADM_HA_DEBUG is set. In JSON mode every
 * outcome, errors included, is one envelope on stdout.
 *
 * The one-argument form (no definition) is for entry points that parse their own arguments.
 */
export async function runCommand(main: () => Promise<MainResult> | MainResult): Promise<never>;
export async function runCommand<O extends Flags>(
  def: CommandDef<O>,
  main: (cli: Invocation<O>) => Promise<MainResult> | MainResult,
  argv?: string[],
): Promise<never>;
export async function runCommand<O extends Flags>(
  defOrMain: CommandDef<O> | (() => Promise<MainResult> | MainResult),
  main?: (cli: Invocation<O>) => Promise<MainResult> | MainResult,
  argv = process.argv.slice(2),
): Promise<never> {
  const def = typeof defOrMain === "function" ? undefined : defOrMain;
  const command = def?.name ?? "command";
  const dashDash = argv.indexOf("--");
  const json = !!def?.options.json && (dashDash < 0 ? argv : argv.slice(0, dashDash)).includes("--json");
  try {
    const result = def ? await main!(invocation(def, argv, json)) : await (defOrMain as () => MainResult)();
    const outcome: Outcome = typeof result === "object" && result !== null ? result : { code: result ?? EXIT.ok };
    return finish(command, json, outcome.code ?? EXIT.ok, outcome);
  } catch (e) {
    if (e instanceof UserError) {
      if (!json) stderrLine(`error: ${e.message}`);
      return finish(command, json, e.exitCode, { error: e.message });
    }
    const err = e as Error;
    const message = `internal error: ${err?.message ?? String(e)}`;
    const debug = process.env.KUBEADM_HA_DEBUG ? (err?.stack ?? "") : "(set KUBEADM_HA_DEBUG=1 for the stack trace)";
    stderrLine(`${message}\n${debug}`);
    return finish(command, json, EXIT.failed, { error: message });
  }
}

function invocation<O extends Flags>(def: CommandDef<O>, argv: string[], json: boolean): Invocation<O> {
  const { values, positionals } = parseCommand(def, argv);
  const flag = (values as { spec?: string }).spec;
  let choice: SpecChoice | undefined;
  let spec: ClusterSpec | undefined;
  const specChoice = () => {
    if (!def.spec) throw new Error(`${def.name} declares no spec use`);
    if (!choice) {
      choice = chooseSpecFile({ command: def.name, use: def.spec, flag });
      if (choice.note) stderrLine(choice.note);
    }
    return choice;
  };
  return {
    values,
    positionals,
    json,
    specChoice,
    spec: () => {
      spec ??= loadChosenSpec(specChoice());
      return spec;
    },
    confirm: (what, opts = {}) =>
      confirm({ ...opts, command: def.name, what, yes: opts.yes ?? (values as { yes?: boolean }).yes }),
    exit: (code, outcome) => finish(def.name, json, code, outcome),
  };
}
