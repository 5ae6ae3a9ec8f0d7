// kubeconfig: admin.conf from the first control plane that answers, pointed at the
// VIP, written 0600 next to the spec. The file holds the admin's client key: it is
// never printed, and an existing different file is never overwritten silently.
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { isMap, isSeq, parseDocument } from "yaml";
import { EXIT, UserError } from "../errors.ts";
import { type Progress, progress } from "../progress.ts";
import { type HostFailure, hostProblems } from "../remote/host-problems.ts";
import { type ConnectOptions, connectNode, type Remote, sq } from "../remote/ssh.ts";
import { specBaseDir } from "../spec/load.ts";
import type { ClusterSpec } from "../spec/schema.ts";
import { controlPlanes } from "../spec/topology.ts";

export const ADMIN_CONF = "/etc/kubernetes/admin.conf";

export function defaultKubeconfigPath(spec: ClusterSpec): string {
  return join(specBaseDir(spec), ".kubeadm-ha", `${spec.name}.kubeconfig`);
}

/** Every cluster's `server:` set to https://VIP:port; the rest of the file kept as it was. */
export function pointAtVip(text: string, spec: ClusterSpec, source = "admin.conf"): string {
  const doc = parseDocument(text);
  const clusters = doc.get("clusters");
  if (doc.errors.length > 0 || !isSeq(clusters) || clusters.items.length === 0)
    throw new UserError(
      `${source} is not a kubeconfig with clusters (${doc.errors[0]?.message ?? "no clusters list"}). Check the file on the control plane.`,
    );
  const server = `https://${spec.controlPlaneEndpoint.vip}:${spec.controlPlaneEndpoint.port}`;
  for (const item of clusters.items) {
    const cluster = isMap(item) ? item.get("cluster") : undefined;
    if (!isMap(cluster))
      throw new UserError(`${source}: a clusters entry has no cluster mapping. Check the file on the control plane.`);
    cluster.set("server", server);
  }
  return doc.toString();
}

export interface FetchResult {
  from: string;
  content: string;
}

/** admin.conf from the first control plane that answers (spec order). */
export async function fetchAdminConf(
  spec: ClusterSpec,
  opts: { connect?: ConnectOptions; path?: string; log?: Progress } = {},
): Promise<FetchResult> {
  const path = opts.path ?? ADMIN_CONF;
  const log = opts.log ?? progress;
  const tried: HostFailure[] = [];
  for (const node of controlPlanes(spec)) {
    let remote: Remote;
    try {
      remote = await connectNode(spec, node, { readyTimeoutMs: 10_000, ...opts.connect });
    } catch (e) {
      tried.push({ host: node.name, error: e, aliases: [node.ssh?.host ?? node.address] });
      continue;
    }
    try {
      const r = await remote.exec(`cat -- ${sq(path)}`, { sudo: true, timeoutMs: 15_000 });
      if (r.code === 0 && /^\s*clusters:/m.test(r.stdout)) {
        log(node.name, "kubeconfig", `read ${path}`);
        return { from: node.name, content: r.stdout };
      }
      const why = r.code === 0 ? `${path} is not a kubeconfig` : r.stderr.trim().split("\n")[0] || `exit ${r.code}`;
      tried.push({ host: node.name, error: new UserError(why, EXIT.failed) });
    } finally {
      remote.close();
    }
  }
  // One paragraph per distinct problem (a missing known_hosts is said once, naming every node).
  const problems = hostProblems(tried);
  throw new UserError(
    `no control plane gave ${path}:\n\n${problems.text}\n\nThe cluster may not be initialized yet (kubeadm init writes it), or SSH/sudo fails; check with bun run verify.`,
    problems.exitCode,
  );
}

export type WriteOutcome = "written" | "unchanged" | "replaced";

/** Write 0600 (dir 0700), atomically; refuse to replace a different file unless `force`. */
export function writeKubeconfig(path: string, content: string, force = false): WriteOutcome {
  let outcome: WriteOutcome = "written";
  if (existsSync(path)) {
    const old = readFileSync(path, "utf8");
    if (old === content) {
      chmodSync(path, 0o600);
      return "unchanged";
    }
    if (!force)
      throw new UserError(
        `${path} exists and differs from the admin kubeconfig just fetched (another cluster, or rotated credentials). Pass --force to replace it, or --out FILE to write elsewhere.`,
      );
    outcome = "replaced";
  }
  const dir = dirname(path);
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, content, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
  return outcome;
}
