// drift: what the hosts hold vs what the current spec renders. Every file of every
// step (renderCluster's Steps; secrets are never in them) is hashed on its host and
// compared with the rendered content and mode. Steps whose files drifted map to
// their Terraform resource addresses, so `terraform apply -replace=ADDRESS` (what
// --fix runs) puts the hosts back through Terraform's own plan/apply cycle.
//
// Local drift (the spec or rendered files changed since the last apply) is
// Terraform's job: `terraform plan -detailed-exitcode` in the stack directory exits
// 0 when nothing changed, 2 when steps would be replaced (their triggers are the
// sha256 of what they upload), 1 on error.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { type Progress, progress } from "../progress.ts";
import { type Remote, sq } from "../remote/ssh.ts";
import type { RenderedFile, Step } from "../render/types.ts";
import type { ClusterSpec } from "../spec/schema.ts";
import { type Session, sshRow } from "./connect.ts";
import type { CheckRow } from "./report.ts";

export type DriftKind = "changed" | "missing" | "mode" | "unwanted";

export interface DriftItem {
  host: string;
  path: string;
  phase: Step["phase"];
  kind: DriftKind;
  /** Expected vs found: sha256 prefixes for changed, octal modes for mode, absent/present for unwanted. */
  expected: string;
  actual: string;
  /** Terraform address of the step that installs (or, for unwanted, removes) the file. */
  address: string;
}

export interface RemoteFile {
  path: string;
  /** Octal mode as stat prints it, e.g. "644"; undefined when missing. */
  mode?: string;
  sha256?: string;
}

export const sha256Hex = (s: string): string => createHash("sha256").update(s).digest("hex");

/** Terraform-safe id, as constructs/connection.ts makes it (checked against the synthesized stack in tests). */
const tfId = (name: string): string => name.replace(/[^A-Za-z0-9_]/g, "_");

/** `null_resource.loadbalancer_cp_1` / `terraform_data.loadbalancer_cp_1`. */
export function stepAddress(spec: ClusterSpec, step: Pick<Step, "phase" | "node">): string {
  const type = spec.terraform.resources === "builtin" ? "terraform_data" : "null_resource";
  return `${type}.${tfId(`${step.phase}_${step.node.name}`)}`;
}

/** Bash that prints one line per path: `F<TAB>path<TAB>mode<TAB>sha256` or `M<TAB>path`. `root` prefixes paths (tests). */
export function statScript(paths: string[], root = ""): string {
  return `set -u
root=${sq(root)}
for p in ${paths.map(sq).join(" ")}; do
  f="$root$p"
  if [ -f "$f" ]; then
    printf 'F\\t%s\\t%s\\t%s\\n' "$p" "$(stat -c %a -- "$f")" "$(sha256sum <"$f" | cut -d' ' -f1)"
  else
    printf 'M\\t%s\\n' "$p"
  fi
done
`;
}

export function parseStat(out: string): Map<string, RemoteFile> {
  const m = new Map<string, RemoteFile>();
  for (const line of out.split("\n")) {
    const [tag, path, mode, sha] = line.split("\t");
    if (tag === "F" && path) m.set(path, { path, mode, sha256: sha });
    else if (tag === "M" && path) m.set(path, { path });
  }
  return m;
}

const modeNum = (m: string): number => Number.parseInt(m, 8);

/** Drift of one file: missing, changed content (first), or changed mode. */
export function compareFile(
  file: RenderedFile,
  found: RemoteFile | undefined,
): { kind: DriftKind; expected: string; actual: string } | undefined {
  if (!found || found.sha256 === undefined) return { kind: "missing", expected: "present", actual: "missing" };
  const want = sha256Hex(file.content);
  if (found.sha256 !== want)
    return { kind: "changed", expected: `sha256 ${want.slice(0, 12)}`, actual: `sha256 ${found.sha256.slice(0, 12)}` };
  if (modeNum(found.mode ?? "") !== modeNum(file.mode))
    return { kind: "mode", expected: file.mode, actual: `0${found.mode}` };
  return undefined;
}

export interface NodeDrift {
  host: string;
  checked: number;
  items: DriftItem[];
  error?: string;
}

/** Hash every file the steps put on this node and compare; report files the steps remove that are still there. */
export async function nodeDrift(
  spec: ClusterSpec,
  remote: Remote,
  nodeSteps: Step[],
  opts: { root?: string } = {},
): Promise<NodeDrift> {
  const host = nodeSteps[0]?.node.name ?? remote.name;
  const files = nodeSteps.flatMap((step) => step.files.map((file) => ({ step, file })));
  const absent = nodeSteps.flatMap((step) => (step.absent ?? []).map((path) => ({ step, path })));
  const checked = files.length + absent.length;
  if (checked === 0) return { host, checked: 0, items: [] };
  const paths = [...new Set([...files.map((f) => f.file.path), ...absent.map((a) => a.path)])];
  const r = await remote.exec("bash -s", { sudo: true, stdin: statScript(paths, opts.root), timeoutMs: 60_000 });
  if (r.code !== 0) return { host, checked: 0, items: [], error: r.stderr.trim() || `exit ${r.code}` };
  const found = parseStat(r.stdout);
  const items: DriftItem[] = [];
  for (const { step, file } of files) {
    const d = compareFile(file, found.get(file.path));
    if (d) items.push({ host, path: file.path, phase: step.phase, ...d, address: stepAddress(spec, step) });
  }
  for (const { step, path } of absent) {
    if (found.get(path)?.sha256 === undefined) continue;
    items.push({
      host,
      path,
      phase: step.phase,
      kind: "unwanted",
      expected: "absent",
      actual: "present",
      address: stepAddress(spec, step),
    });
  }
  return { host, checked, items };
}

export async function runDrift(
  spec: ClusterSpec,
  steps: Step[],
  sessions: Session[],
  opts: { log?: Progress } = {},
): Promise<NodeDrift[]> {
  const log = opts.log ?? progress;
  return Promise.all(
    sessions.map(async (s): Promise<NodeDrift> => {
      if (!s.remote) return { host: s.node.name, checked: 0, items: [], error: s.error ?? "not connected" };
      const mine = steps.filter((st) => st.node.name === s.node.name);
      log(
        s.node.name,
        "drift",
        `hashing ${mine.reduce((n, st) => n + st.files.length + (st.absent?.length ?? 0), 0)} files`,
      );
      return nodeDrift(spec, s.remote, mine);
    }),
  );
}

/** Unique -replace addresses in step order. */
export function replaceAddresses(spec: ClusterSpec, steps: Step[], items: DriftItem[]): string[] {
  const drifted = new Set(items.map((i) => i.address));
  return steps.map((s) => stepAddress(spec, s)).filter((a, i, all) => drifted.has(a) && all.indexOf(a) === i);
}

const WORDS: Record<DriftKind, string> = {
  changed: "content differs from the rendered file",
  missing: "missing on the host",
  mode: "mode differs",
  unwanted: "still on the host, but the spec no longer asks for it",
};

export function driftRows(results: NodeDrift[], sessions: Session[]): CheckRow[] {
  const rows: CheckRow[] = [];
  for (const r of results) {
    const s = sessions.find((x) => x.node.name === r.host);
    if (s && !s.remote) {
      rows.push(sshRow(s));
      continue;
    }
    if (r.error) {
      rows.push({
        host: r.host,
        check: "files",
        status: "fail",
        detail: `could not hash the files: ${r.error}`,
        fix: "Check sudo works for the SSH user on this host.",
      });
      continue;
    }
    if (r.items.length === 0) {
      rows.push({ host: r.host, check: "files", status: "pass", detail: `${r.checked} files as rendered` });
      continue;
    }
    for (const i of r.items) {
      rows.push({
        host: i.host,
        check: i.path,
        status: "fail",
        detail: `${i.kind}: ${WORDS[i.kind]} (expected ${i.expected}, found ${i.actual}); step ${i.phase}`,
        fix: `terraform apply -replace=${i.address} (or bun run drift --fix)`,
      });
    }
  }
  return rows;
}

// ---- the fix: terraform apply -replace ---------------------------------------------------------

export interface FixPlan {
  cwd: string;
  argv: string[];
  /** Names (never values) of the TF_VAR_* variables set from the secrets file. */
  variables: string[];
  needsInit: boolean;
}

export function stackDir(spec: ClusterSpec): string {
  return resolve(process.env.CDKTF_OUTDIR ?? "cdktf.out", "stacks", spec.name);
}

export function fixPlan(spec: ClusterSpec, addresses: string[], opts: { yes?: boolean; variables: string[] }): FixPlan {
  const cwd = stackDir(spec);
  return {
    cwd,
    // Without --yes terraform shows the plan and asks (which -input=false would refuse outright).
    argv: [
      "terraform",
      "apply",
      ...(opts.yes ? ["-input=false", "-auto-approve"] : []),
      ...addresses.map((a) => `-replace=${a}`),
    ],
    variables: opts.variables,
    needsInit: !existsSync(join(cwd, ".terraform")),
  };
}

/** The command as a shell line (for --dry-run and the log). */
export function fixCommandLine(p: FixPlan): string {
  const init = p.needsInit ? "terraform init -input=false && " : "";
  return `cd ${sq(p.cwd)} && ${init}${p.argv.map((a) => (/^[\w./=-]+$/.test(a) ? a : sq(a))).join(" ")}`;
}
