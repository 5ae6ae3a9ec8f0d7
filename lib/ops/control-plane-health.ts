// Before a planned restart of one control plane's etcd and apiserver (certs:renew, node:reboot):
// is every control plane healthy? A restart with another etcd member down can cost the quorum,
// and with another apiserver down the VIP its last backend. Also the plumbing both commands
// share to run their per-node script (progress lines from its stderr, RESULT lines on stdout) and
// to take the node's apiserver out of every haproxy first.
import { type Progress, progress } from "../progress.ts";
import { type Remote, sq } from "../remote/ssh.ts";
import { serversDrainCommand, serversReadyCommand } from "../render/haproxy.ts";
import { APISERVER_BIND_PORT } from "../render/kubeadm.ts";
import type { Session } from "./connect.ts";

// etcd healthy with its cluster (kubeadm's metrics listener answers /health with a quorum read)
// and the local apiserver ready.
const HEALTH_SH = `e=0 a=0
curl -fsS --noproxy '*' --max-time 3 http://127.0.0.1:2381/health 2>/dev/null | grep -q '"health":"true"' || e=1
curl -fsk --noproxy '*' --max-time 3 -o /dev/null https://127.0.0.1:${APISERVER_BIND_PORT}/readyz || a=1
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
 * ("ready"). Drained first, a planned stop cuts nothing: the requests in flight finish before the
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
  const cmd = state === "drain" ? serversDrainCommand([node]) : serversReadyCommand([node]);
  await Promise.all(
    remotes.map((r) =>
      r
        .run(`bash -c ${sq(cmd)} 2>&1`, { sudo: true, what: `haproxy: ${node} to ${state}`, timeoutMs: 30_000 })
        .catch((e: Error) => log(r.name, "lb", `WARNING: could not set ${node} to ${state}: ${e.message}`)),
    ),
  );
  log(node, "lb", state === "drain" ? "no new connection from any haproxy (drain)" : "back in every haproxy (ready)");
}
