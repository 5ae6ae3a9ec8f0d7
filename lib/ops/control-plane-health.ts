// Before a planned restart of one control plane's etcd and apiserver (certs:renew, node:reboot):
// is every control plane healthy? A restart with another etcd member down can cost the quorum,
// and with another apiserver down the VIP its last backend. Also the plumbing both commands
// share to run their per-node script (progress lines from its stderr, RESULT lines on stdout) and
// to take the node's apiserver out of every haproxy first.
import { type Progress, progress } from "../progress.ts";
import { type Remote, sq } from "../remote/ssh.ts";
import { serversStateCommand } from "../render/haproxy.ts";
import { COMPONENT_PROBES } from "../render/static-pod-restart.ts";
import type { Session } from "./connect.ts";

// etcd healthy with its cluster and the local apiserver ready, by the node scripts' own probes
// (3 s each here, where a node script waits on them in a loop).
const HEALTH_SH = `PROBE_TIMEOUT=3
${COMPONENT_PROBES}
e=0 a=0
healthy etcd || e=1
healthy kube-apiserver || a=1
echo "etcd=$e apiserver=$a"`;

/** What is wrong with one control plane ("its etcd member is not healthy", ...); [] when nothing. */
export async function controlPlaneProblems(remote: Remote): Promise<string[]> {
  const r = await remote
    .exec("bash -s", { sudo: true, stdin: HEALTH_SH, timeoutMs: 30_000 })
    .catch((e: Error) => ({ code: -1, stdout: "", stderr: e.message }));
  const bad: string[] = [];
  if (!/etcd=0/.test(r.stdout)) bad.push("its etcd member is not healthy");
  if (!/apiserver=0/.test(r.stdout)) bad.push("its apiserver is not ready");
  return bad;
}

/** "cp-2: its etcd member is not healthy; cp-3 is not reachable ...", or undefined when all are healthy. */
export async function unhealthyControlPlanes(sessions: Session[]): Promise<string | undefined> {
  const rows = await Promise.all(
    sessions.map(async (s) => {
      if (!s.remote) return `${s.node.name} is not reachable over SSH (${s.error ?? "no session"})`;
      const bad = await controlPlaneProblems(s.remote);
      return bad.length ? `${s.node.name}: ${bad.join(" and ")}` : undefined;
    }),
  );
  const problems = rows.filter((r): r is string => !!r);
  return problems.length ? problems.join("; ") : undefined;
}

/** The "RESULT key=value" lines of a node script's stdout. */
export function parseResultLines(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of stdout.split("\n")) {
    const m = /^RESULT ([a-z_]+)=(.*)$/.exec(line);
    if (m) out[m[1] as string] = (m[2] as string).trim();
  }
  return out;
}

/**
 * Run a rendered node script as root (on stdin, nothing left on the host), its "PHASE message"
 * stderr lines shown as progress for `node` as they come.
 */
export async function runNodeScript(
  remote: Remote,
  node: string,
  script: string,
  opts: { timeoutMs: number; log?: Progress },
): Promise<{ code: number; stdout: string; stderr: string; result: Record<string, string>; why: string }> {
  const log = opts.log ?? progress;
  let pending = "";
  const show = (line: string) => {
    const m = /^(\S+) (.*)$/.exec(line);
    if (m) log(node, m[1] as string, m[2] as string);
    else if (line.trim()) log(node, "run", line.trim());
  };
  const r = await remote.execStream("bash -s", {
    sudo: true,
    stdin: script,
    timeoutMs: opts.timeoutMs,
    onStderr: (chunk) => {
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) show(line);
    },
  });
  show(pending);
  const why =
    /^error (.*)$/m.exec(r.stderr)?.[1] ?? (r.stderr.trim().split("\n").slice(-2).join(" ") || `exit ${r.code}`);
  return { ...r, result: parseResultLines(r.stdout), why };
}

/**
 * Every haproxy stops sending new connections to `node`'s apiserver ("drain"), or sends them again
 * ("ready"); a drain returns a second later. Drained first, a planned stop cuts nothing: the requests in flight finish before the
 * apiserver fails /readyz, and the check's mark-down (on-marked-down shutdown-sessions) finds no
 * short request left to cut (measured: 1 in flight cut in one of ten stops without it). Nothing
 * where no haproxy runs (kube-vip). A host that fails is said, not fatal: its check still counts.
 */
export async function setApiserverTraffic(
  remotes: Remote[],
  node: string,
  state: "drain" | "ready",
  log: Progress = progress,
): Promise<void> {
  const cmd = serversStateCommand([node], state);
  await Promise.all(
    remotes.map((r) =>
      r
        .run(`bash -c ${sq(cmd)} 2>&1`, { sudo: true, what: `haproxy: ${node} to ${state}`, timeoutMs: 30_000 })
        .catch((e: Error) => log(r.name, "lb", `WARNING: could not set ${node} to ${state}: ${e.message}`)),
    ),
  );
  log(node, "lb", state === "drain" ? "no new connection from any haproxy (drain)" : "back in every haproxy (ready)");
  // The requests already in flight to it finish before anything stops it.
  if (state === "drain") await Bun.sleep(DRAIN_SETTLE_MS);
}

/** After a drain, before the apiserver may fail /readyz: time for the requests in flight to it. */
const DRAIN_SETTLE_MS = 1000;
