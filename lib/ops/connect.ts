// SSH sessions to many nodes at once, where an unreachable node becomes a failed
// check row instead of ending the whole command; and per-host failures said once per problem.
import { UserError } from "../errors.ts";
import { type Progress, progress } from "../progress.ts";
import { hostProblems } from "../remote/host-problems.ts";
import { type ConnectOptions, connectNode, type Remote } from "../remote/ssh.ts";
import type { ClusterSpec, NodeSpec } from "../spec/schema.ts";
import type { CheckRow } from "./report.ts";

export { type HostFailure, hostProblems } from "../remote/host-problems.ts";

export interface Session {
  node: NodeSpec;
  remote?: Remote;
  /** Why SSH failed (one paragraph), when it did. */
  error?: string;
}

/** A connection problem that is the same for every node (a missing known_hosts file or key): bad input. */
export function isSetupError(e: unknown): boolean {
  return e instanceof UserError && /knownHostsPath|private key file|SSH_AUTH_SOCK|no SSH credentials/.test(e.message);
}

export async function connectAll(
  spec: ClusterSpec,
  nodes: NodeSpec[],
  opts: ConnectOptions & { phase?: string; quiet?: boolean; log?: Progress } = {},
): Promise<Session[]> {
  const log = opts.quiet ? () => {} : (opts.log ?? progress);
  const sessions = await Promise.all(
    nodes.map(async (node): Promise<Session & { setup?: unknown }> => {
      try {
        const remote = await connectNode(spec, node, { readyTimeoutMs: 10_000, ...opts });
        log(node.name, opts.phase ?? "ssh", "connected");
        return { node, remote };
      } catch (e) {
        const error = e instanceof Error ? e.message : String(e);
        if (isSetupError(e)) return { node, error, setup: e };
        log(node.name, opts.phase ?? "ssh", "NOT reachable");
        return { node, error };
      }
    }),
  );
  // The same for every node: that is bad input, not a host problem. Said once, naming the nodes.
  const setup = sessions.filter((s) => s.setup);
  if (setup.length) {
    closeAll(sessions);
    throw new UserError(hostProblems(setup.map((s) => ({ host: s.node.name, error: s.setup }))).text);
  }
  return sessions;
}

export function sshRow(s: Session): CheckRow {
  return s.remote
    ? { host: s.node.name, check: "ssh", status: "pass", detail: `${s.remote.user}@${s.remote.host}` }
    : {
        host: s.node.name,
        check: "ssh",
        status: "fail",
        detail: s.error ?? "not connected",
        fix: "Check the node's address/ssh settings in the spec, that sshd runs and that the key is authorized; other checks on this host were skipped.",
      };
}

export function closeAll(sessions: Session[]): void {
  for (const s of sessions) s.remote?.close();
}
