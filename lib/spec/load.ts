// Reading a spec: YAML text -> validated ClusterSpec, or one UserError that lists every
// problem in the file, each with its line:column, the field, the bad value and the fix.
import { existsSync, readFileSync, realpathSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import { type Document, isMap, isScalar, isSeq, LineCounter, type Node, parseDocument, type YAMLError } from "yaml";
import type { z } from "zod";
import { UserError } from "../errors.ts";
import { type ClusterSpec, ClusterSpecSchema } from "./schema.ts";
import { closest } from "./suggest.ts";
import { type SpecPath, validateSpec } from "./validate.ts";

/** One problem in a spec file. `line`/`column` are 1-based; null when the problem is not at one place. */
export interface Problem {
  /** Machine-readable path, e.g. `nodes[2].address` ("" for the whole file). */
  path: string;
  line: number | null;
  column: number | null;
  /** One paragraph: the field (with the node's name for node entries), the bad value and the fix. */
  message: string;
}

/** A spec that cannot be used; `problems` holds all of them, sorted by line. */
export class SpecError extends UserError {
  constructor(
    readonly file: string,
    readonly problems: Problem[],
  ) {
    const paragraphs = problems.map((p) =>
      p.line === null ? `${file}: ${p.message}` : `${file}:${p.line}:${p.column}: ${p.message}`,
    );
    const count = problems.length === 1 ? "1 problem" : `${problems.length} problems`;
    super(`${file} is not a valid cluster spec (${count}):\n\n${paragraphs.join("\n\n")}\n`);
    this.name = "SpecError";
  }
}

const baseDirs = new WeakMap<object, string>();

/** Absolute directory of the file `spec` was loaded from (the working directory for specs parsed from text). */
export function specBaseDir(spec: ClusterSpec): string {
  return baseDirs.get(spec) ?? process.cwd();
}

/** A path written in the spec, made absolute: a leading `~/` is $HOME, relative paths are relative to the spec file. */
export function resolveSpecPath(spec: ClusterSpec, p: string): string {
  const home = process.env.HOME || homedir();
  if (p === "~") return home;
  if (p.startsWith("~/")) return join(home, p.slice(2));
  return isAbsolute(p) ? p : resolve(specBaseDir(spec), p);
}

export function parseSpec(text: string, source = "cluster.yaml"): ClusterSpec {
  const checked = checkSpecText(text);
  if (!checked.spec) throw new SpecError(source, checked.problems);
  baseDirs.set(checked.spec, process.cwd());
  return checked.spec;
}

/** The example spec shipped with the project: placeholder hosts, never a real cluster. */
export const EXAMPLE_SPEC = resolve(import.meta.dir, "../../cluster.example.yaml");

/**
 * How a command may use a spec. `hosts`: it contacts the spec's hosts, so the example is refused
 * unless `--spec` names it. `local`: it only reads the spec (or writes local files). `fallback`:
 * local, and with no spec given and no ./cluster.yaml it uses the example and says so (synth,
 * validate: the first commands on a fresh checkout).
 */
export type SpecUse = "hosts" | "local" | "fallback";

export interface SpecChoice {
  file: string;
  /** Where the choice came from: the --spec flag, $CLUSTER_SPEC, ./cluster.yaml, or the example fallback. */
  source: "flag" | "env" | "default" | "example";
  /** A line for stderr when the choice deserves one (the example fallback). */
  note?: string;
}

export const PICK_SPEC =
  "Pick the cluster with --spec FILE or `export CLUSTER_SPEC=FILE`, or create ./cluster.yaml " +
  "(cp cluster.example.yaml cluster.yaml, then describe your hosts in it).";

/** Whether `file` is the example spec: the project's file itself, or an unedited copy of it. */
export function isExampleSpec(file: string): boolean {
  try {
    if (realpathSync(file) === realpathSync(EXAMPLE_SPEC)) return true;
    return readFileSync(file, "utf8") === readFileSync(EXAMPLE_SPEC, "utf8");
  } catch {
    return false;
  }
}

/**
 * The one spec convention of every command: --spec FILE, else $CLUSTER_SPEC, else ./cluster.yaml.
 * Never a silent fallback: see SpecUse. Throws a UserError (exit 2) that says how to pick a spec.
 */
export function chooseSpecFile(opts: {
  command: string;
  use: SpecUse;
  flag?: string;
  env?: Record<string, string | undefined>;
}): SpecChoice {
  const env = opts.env ?? process.env;
  let choice: SpecChoice;
  if (opts.flag !== undefined) {
    if (opts.flag.trim() === "") throw new UserError(`--spec is empty: name the spec file, e.g. --spec cluster.yaml.`);
    choice = { file: opts.flag, source: "flag" };
  } else if (env.CLUSTER_SPEC) choice = { file: env.CLUSTER_SPEC, source: "env" };
  else if (existsSync("cluster.yaml")) choice = { file: "cluster.yaml", source: "default" };
  else if (opts.use === "fallback") {
    const rel = relative(process.cwd(), EXAMPLE_SPEC);
    const file = rel.startsWith("..") ? EXAMPLE_SPEC : rel;
    return {
      file,
      source: "example",
      note: `note: no --spec, no CLUSTER_SPEC and no ./cluster.yaml: ${opts.command} uses the example spec ${file}. ${PICK_SPEC}`,
    };
  } else {
    throw new UserError(
      `${opts.command}: no cluster spec: no --spec, no CLUSTER_SPEC, and no ./cluster.yaml here. ${PICK_SPEC}`,
    );
  }
  if (opts.use === "hosts" && choice.source !== "flag" && isExampleSpec(choice.file)) {
    const via = choice.source === "env" ? `CLUSTER_SPEC=${choice.file}` : "./cluster.yaml";
    throw new UserError(
      `${opts.command} contacts the hosts of the spec, and ${via} is the example spec (cluster.example.yaml, ` +
        `placeholder hosts), which is used only when named with --spec cluster.example.yaml. ${PICK_SPEC}`,
    );
  }
  return choice;
}

/** Load the chosen spec; a missing file is named with where its name came from. */
export function loadChosenSpec(choice: SpecChoice): ClusterSpec {
  if (choice.source === "env" && !existsSync(choice.file))
    throw new UserError(
      `CLUSTER_SPEC=${choice.file}: the file does not exist. Set CLUSTER_SPEC to an existing spec, or pass --spec FILE.`,
    );
  return loadSpec(choice.file);
}

export function loadSpec(path: string): ClusterSpec {
  if (!existsSync(path))
    throw new UserError(
      `spec file ${path} does not exist. Pass an existing file with --spec FILE (or CLUSTER_SPEC=FILE).`,
    );
  if (statSync(path).isDirectory())
    throw new UserError(
      `spec file ${path} is a directory. Pass the YAML file itself, e.g. ${join(path, "cluster.yaml")}.`,
    );
  const spec = parseSpec(readFileSync(path, "utf8"), path);
  baseDirs.set(spec, dirname(resolve(path)));
  return spec;
}

/** Every problem in `text`, or the spec when there are none. Never throws for bad input. */
export function checkSpecText(text: string): { spec?: ClusterSpec; problems: Problem[] } {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  const at = (offset: number | undefined) => {
    if (offset === undefined) return { line: null, column: null };
    const pos = lineCounter.linePos(offset);
    return { line: pos.line, column: pos.col };
  };
  if (doc.errors.length > 0) {
    // One mistake often trips several parser errors on the same line; the first says the most.
    const problems = doc.errors.map((e) => yamlProblem(e, at));
    return { problems: problems.filter((p, i) => problems.findIndex((q) => q.line === p.line) === i) };
  }

  const contents = doc.contents;
  if (contents === null || (isScalar(contents) && contents.value === null))
    return { problems: [{ path: "", ...at(undefined), message: `the file is empty. ${START_HINT}` }] };
  if (!isMap(contents)) {
    const what = isSeq(contents) ? "a list" : `a single value (${sourceText(text, contents)})`;
    return {
      problems: [
        { path: "", ...at(contents.range?.[0]), message: `the file holds ${what}, not a mapping. ${START_HINT}` },
      ],
    };
  }
  let raw: Record<string, unknown>;
  try {
    raw = doc.toJS() as Record<string, unknown>;
  } catch (e) {
    return {
      problems: [
        {
          path: "",
          ...at(undefined),
          message: `the YAML cannot be read: ${(e as Error).message}. Simplify anchors and aliases.`,
        },
      ],
    };
  }

  const locate = (path: SpecPath, key = false) => at(offsetOf(doc, path, key));
  const problems: Problem[] = [];
  const parsed = ClusterSpecSchema.safeParse(raw, { reportInput: true, error: defaultMessage });
  if (!parsed.success) {
    for (const issue of parsed.error.issues) problems.push(...issueProblems(issue, raw, doc, text, locate));
  }
  // A spec that passed the schema whole is its own sections: no second pass over each one.
  const sections = parsed.success
    ? { spec: parsed.data, usable: new Set(Object.keys(ClusterSpecSchema.shape) as (keyof ClusterSpec)[]) }
    : parseSections(raw);
  for (const f of validateSpec(sections.spec, (s) => sections.usable.has(s))) {
    problems.push({ path: machinePath(f.path), ...locate(f.path), message: `${humanPath(f.path, raw)}: ${f.message}` });
  }
  problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
  return problems.length === 0 && parsed.success ? { spec: parsed.data, problems } : { problems };
}

const START_HINT =
  "A cluster spec is a mapping that starts like `name: my-cluster`, then `kubernetes:`, `controlPlaneEndpoint:` " +
  "and `nodes:`; copy cluster.example.yaml and edit it.";

// ---- YAML syntax -------------------------------------------------------------------------------

const YAML_HINTS: Record<string, string> = {
  DUPLICATE_KEY: "Remove or rename one of the two keys.",
  TAB_AS_INDENT: "Indent with spaces; YAML does not allow tabs.",
  BAD_INDENT: "Line the key up with its siblings (same number of spaces).",
  MULTIPLE_DOCS: "Keep one document: remove the extra `---` and what follows, or merge it into the first.",
  MISSING_CHAR: "Add the missing closing character (quote, ] or }).",
  BLOCK_AS_IMPLICIT_KEY:
    "Check the indentation of this line and the next (a line indented deeper than its siblings is read as part of the value above), or quote the value.",
};

function yamlProblem(e: YAMLError, at: (offset: number) => { line: number | null; column: number | null }): Problem {
  const message = e.message.split("\n")[0]?.replace(/ at line \d+, column \d+:?$/, "") ?? e.message;
  const hint = YAML_HINTS[e.code] ?? "Check the indentation and quoting on that line.";
  return { path: "", ...at(e.pos[0]), message: `malformed YAML: ${message.replace(/\.$/, "")}. ${hint}` };
}

// ---- schema issues -----------------------------------------------------------------------------

type Issue = z.core.$ZodIssue;
type RawIssue = z.core.$ZodRawIssue;

const KIND: Record<string, string> = {
  object: "a mapping (indented key: value lines)",
  array: "a list (lines starting with -)",
  string: "text",
  number: "a number",
  boolean: "true or false",
};
function kindOf(value: unknown): string {
  if (value === undefined) return "missing";
  if (value === null) return "empty";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  if (typeof value === "string") return "text";
  return `a ${typeof value}`;
}
const orList = (values: readonly unknown[]): string => {
  const words = values.map((v) => String(v));
  return words.length <= 1 ? (words[0] ?? "") : `${words.slice(0, -1).join(", ")} or ${words[words.length - 1]}`;
};

/** Messages for zod's built-in checks; fields with their own message in schema.ts keep theirs. */
function defaultMessage(issue: RawIssue): string | undefined {
  switch (issue.code) {
    case "invalid_type":
      return `must be ${KIND[issue.expected] ?? issue.expected}, not ${kindOf(issue.input)}`;
    case "too_small":
      if (issue.origin === "string" && Number(issue.minimum) === 1) return "must not be empty";
      if (issue.origin === "array") return `must list at least ${issue.minimum}`;
      return `must be at least ${issue.minimum}${issue.inclusive === false ? " (exclusive)" : ""}`;
    case "too_big":
      if (issue.origin === "array") return `must list at most ${issue.maximum}`;
      return `must be at most ${issue.maximum}`;
    case "invalid_value":
      return `must be ${orList(issue.values)}`;
    case "invalid_union": {
      const values = issue.errors.flat().flatMap((e) => (e.code === "invalid_value" ? e.values : []));
      return values.length > 0 ? `must be ${orList(values)}` : undefined;
    }
    case "invalid_format":
      return `must match the ${issue.format} format`;
    case "not_multiple_of":
      return `must be a multiple of ${issue.divisor}`;
    default:
      return undefined;
  }
}

/** Examples shown for a missing required field, keyed by path with list indexes as []. */
const REQUIRED_EXAMPLES: Record<string, string> = {
  name: "name: my-cluster",
  kubernetes: 'kubernetes:\n  version: "1.31.4"',
  "kubernetes.version": 'version: "1.31.4"',
  nodes: "nodes:\n  - { name: cp-1, address: 10.0.0.11, role: control-plane }",
  "nodes[].name": "name: cp-1",
  "nodes[].address": "address: 10.0.0.11",
  "nodes[].role": "role: control-plane (or worker)",
  controlPlaneEndpoint: "controlPlaneEndpoint: { vip: 10.0.0.10, interface: eth0 }",
  "controlPlaneEndpoint.vip": "vip: 10.0.0.10 (a free address in the control planes' subnet)",
  "controlPlaneEndpoint.interface": "interface: eth0 (the interface that carries the node addresses)",
  "ssh.bastion.host": "host: bastion.example.com",
  "terraform.cloud.organization": "organization: my-org (your Terraform Cloud organization)",
  "terraform.cloud.workspace": "workspace: my-cluster (the Terraform Cloud workspace for this cluster)",
};

function issueProblems(
  issue: Issue,
  raw: unknown,
  doc: Document,
  text: string,
  locate: (path: SpecPath, key?: boolean) => { line: number | null; column: number | null },
): Problem[] {
  const path = issue.path as SpecPath;
  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((key) => {
      const full = [...path, key];
      return {
        path: machinePath(full),
        ...locate(full, true),
        message: `${humanPath(full, raw)}: ${unknownKeyMessage(path, key)}`,
      };
    });
  }
  const where = { path: machinePath(path), ...locate(path) };
  const human = humanPath(path, raw) || "(top level)";
  const input = valueAt(raw, path);
  if (issue.code === "invalid_type" && input === undefined) {
    if (misspeltAs(raw, path)) return []; // the unknown-key problem already says "did you mean ..."
    const example = REQUIRED_EXAMPLES[templatePath(path)];
    const fix = example ? `add ${example}` : `add it (it ${issue.message.replace(/, not missing$/, "")})`;
    return [{ ...where, message: `${human}: missing; ${fix}.` }];
  }
  const shown = showValue(input, doc, path, text);
  const specific = specificAdvice(issue, path, input, shown);
  const message = specific ?? `${shown ? `${shown} ` : ""}${issue.message}${suggestValue(issue, input)}`;
  return [{ ...where, message: `${human}: ${message.replace(/\.?$/, ".")}` }];
}

/** True when the parent of missing field `path` holds an unknown key that is a typo of it. */
function misspeltAs(raw: unknown, path: SpecPath): boolean {
  const parent = path.slice(0, -1);
  const missing = path[path.length - 1];
  const present = valueAt(raw, parent);
  if (typeof missing !== "string" || present === null || typeof present !== "object") return false;
  const allowed = keysAt(parent);
  return Object.keys(present).some((k) => !allowed.includes(k) && closest(k, allowed) === missing);
}

/** A DNS label close to `value` (lowercased, other characters turned into '-'), if one exists. */
function asDnsLabel(value: string): string | undefined {
  const label = value
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 63)
    .replace(/-+$/, "");
  return label === "" ? undefined : label;
}

/** Advice for mistakes that have a better fix than the schema's generic message. */
function specificAdvice(issue: Issue, path: SpecPath, input: unknown, shown: string): string | undefined {
  if (machinePath(path) === "kubernetes.version" && typeof input === "number") {
    const full = /^\d+\.\d+$/.test(shown) ? `"${shown}.0"` : '"1.31.4"';
    return (
      `${shown} is read by YAML as a number, not a version (1.30 would even become 1.3). ` +
      `Write the full MAJOR.MINOR.PATCH version in quotes, e.g. version: ${full}`
    );
  }
  const template = templatePath(path);
  if ((template === "name" || template === "nodes[].name") && typeof input === "string" && asDnsLabel(input)) {
    return `${shown} ${issue.message}; write "${asDnsLabel(input)}"`;
  }
  if (issue.code === "too_small" && issue.origin === "string" && REQUIRED_EXAMPLES[template])
    return `${shown} ${issue.message}; write e.g. ${REQUIRED_EXAMPLES[template]}`;
  if (issue.code === "invalid_type" && input === null)
    return `is empty, but must be ${KIND[issue.expected] ?? issue.expected}. Fill it in or remove the key to use the default`;
  return undefined;
}

/** " (did you mean `worker`?)" for a misspelt choice. */
function suggestValue(issue: Issue, input: unknown): string {
  if (issue.code !== "invalid_value" || typeof input !== "string") return "";
  const guess = closest(input, issue.values.map(String));
  return guess ? ` (did you mean \`${guess}\`?)` : "";
}

function unknownKeyMessage(parent: SpecPath, key: string): string {
  const allowed = keysAt(parent);
  const typo = closest(key, allowed);
  if (typo) return `unknown key \`${key}\`; did you mean \`${typo}\`? Rename it.`;
  const elsewhere = keyHomes()
    .get(key)
    ?.filter((home) => home !== templatePath(parent));
  const list = `Keys allowed here: ${allowed.join(", ")}.`;
  if (elsewhere && elsewhere.length > 0) {
    const homes = elsewhere.map((h) => (h === "" ? "the top level" : `\`${h}\``)).join(" or ");
    return `unknown key \`${key}\` here; it belongs under ${homes}. Move it there. ${list}`;
  }
  return `unknown key \`${key}\`; remove it. ${list}`;
}

// ---- walking the schema ------------------------------------------------------------------------

// biome-ignore lint/suspicious/noExplicitAny: zod's internal definitions differ per schema kind.
type AnySchema = any;
const WRAPPERS = new Set(["optional", "default", "prefault", "nullable", "readonly", "catch"]);

function unwrap(schema: AnySchema): AnySchema {
  let s = schema;
  while (s?.def && WRAPPERS.has(s.def.type)) s = s.def.innerType;
  return s;
}

function schemaAt(path: SpecPath): AnySchema {
  let s = unwrap(ClusterSpecSchema);
  for (const seg of path) {
    if (s?.def?.type === "array") s = unwrap(s.def.element);
    else if (s?.def?.type === "object") s = unwrap(s.def.shape[seg]);
    else return undefined;
  }
  return s;
}

function keysAt(path: SpecPath): string[] {
  const s = schemaAt(path);
  return s?.def?.type === "object" ? Object.keys(s.def.shape) : [];
}

let homes: Map<string, string[]> | undefined;
/** Every key the schema knows and the places (template paths) where it may appear. */
function keyHomes(): Map<string, string[]> {
  if (homes) return homes;
  const found = new Map<string, string[]>();
  const walk = (schema: AnySchema, at: string) => {
    const s = unwrap(schema);
    if (s?.def?.type === "array") return walk(s.def.element, `${at}[]`);
    if (s?.def?.type !== "object") return;
    for (const [key, child] of Object.entries(s.def.shape)) {
      found.set(key, [...(found.get(key) ?? []), at]);
      walk(child, at ? `${at}.${key}` : key);
    }
  };
  walk(ClusterSpecSchema, "");
  homes = found;
  return found;
}

/**
 * Each top-level section parsed on its own, so cross-field rules can still run on the
 * sections that are valid while another section has schema errors.
 */
function parseSections(raw: Record<string, unknown>): { spec: ClusterSpec; usable: Set<keyof ClusterSpec> } {
  const spec: Record<string, unknown> = {};
  const usable = new Set<keyof ClusterSpec>();
  for (const [key, schema] of Object.entries(ClusterSpecSchema.shape)) {
    const result = (schema as z.ZodType).safeParse(raw[key]);
    if (!result.success) continue;
    spec[key] = result.data;
    usable.add(key as keyof ClusterSpec);
  }
  return { spec: spec as ClusterSpec, usable };
}

// ---- paths, values and positions ---------------------------------------------------------------

function valueAt(raw: unknown, path: SpecPath): unknown {
  let cursor = raw;
  for (const seg of path) {
    if (cursor === null || typeof cursor !== "object") return undefined;
    cursor = (cursor as Record<string | number, unknown>)[seg];
  }
  return cursor;
}

/** `nodes[2].address` */
export function machinePath(path: SpecPath): string {
  return path.map((seg, i) => (typeof seg === "number" ? `[${seg}]` : i === 0 ? seg : `.${seg}`)).join("");
}

/** `nodes[2] (cp-3).address`: list entries with a name are named, so the user finds the node. */
export function humanPath(path: SpecPath, raw: unknown): string {
  let out = "";
  path.forEach((seg, i) => {
    if (typeof seg !== "number") {
      out += out ? `.${seg}` : seg;
      return;
    }
    out += `[${seg}]`;
    const name = (valueAt(raw, path.slice(0, i + 1)) as { name?: unknown } | undefined)?.name;
    if (typeof name === "string" && name !== "") out += ` (${name})`;
  });
  return out;
}

const templatePath = (path: SpecPath): string => machinePath(path).replace(/\[\d+\]/g, "[]");

function sourceText(text: string, node: Node): string {
  const [start = 0, end = 0] = node.range ?? [];
  const src = text.slice(start, end).trim();
  return src.length > 60 ? `${src.slice(0, 57)}...` : src;
}

/** The bad value as the user wrote it: strings quoted, numbers as in the file (1.30 stays 1.30). */
function showValue(input: unknown, doc: Document, path: SpecPath, text: string): string {
  if (typeof input === "string") return JSON.stringify(input.length > 60 ? `${input.slice(0, 57)}...` : input);
  if (typeof input === "number" || typeof input === "boolean") {
    const node = doc.getIn(path, true);
    return isScalar(node) ? sourceText(text, node) : String(input);
  }
  return "";
}

/** Offset of the YAML node at `path` (its key when `key`), or of the nearest enclosing key that exists. */
function offsetOf(doc: Document, path: SpecPath, key: boolean): number | undefined {
  let node: unknown = doc.contents;
  let offset = (node as Node | null)?.range?.[0];
  for (const [i, seg] of path.entries()) {
    if (isMap(node)) {
      const pair = node.items.find((p) => (isScalar(p.key) ? String(p.key.value) : String(p.key)) === String(seg));
      if (!pair) return offset;
      const keyOffset = (pair.key as Node | null)?.range?.[0];
      if (key && i === path.length - 1) return keyOffset;
      node = pair.value;
      offset = (pair.value as Node | null)?.range?.[0] ?? keyOffset;
      // Point at the key line for whole blocks, at the value for scalars.
      if (!isScalar(pair.value)) offset = keyOffset ?? offset;
    } else if (isSeq(node) && typeof seg === "number") {
      const item = node.items[seg] as Node | undefined;
      if (!item) return offset;
      node = item;
      offset = item.range?.[0] ?? offset;
    } else {
      return offset;
    }
  }
  return offset;
}
