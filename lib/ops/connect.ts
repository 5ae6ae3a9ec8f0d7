// SSH sessions to many nodes at once, where an unreachable node becomes a failed
// check row instead of ending the whole command.
import { progress } from "../cli.ts";
import { UserError } from "../errors.ts";
import { type ConnectOptions, connectNode, type Remote } from "../remote/ssh.ts";
import type { ClusterSpec, NodeSpec } from "../spec/schema.ts";
import type { CheckRow } from "./report.ts";

export interface Session {
  node: NodeSpec;
  remote?: Remote;
  /** Why SSH failed (one paragraph), when it did. */
  error?: string;
}

export async function connectAll(
  spec: ClusterSpec,
  nodes: NodeSpec[],
  opts: ConnectOptions & { phase?: string; quiet?: boolean } = {},
): Promise<Session[]> {
  return Promise.all(
    nodes.map(async (node): Promise<Session> => {
      try {
        const remote = await connectNode(spec, node, { readyTimeoutMs: 10_000, ...opts });
        if (!opts.quiet) progress(node.name, opts.phase ?? "ssh", "connected");
        return { node, remote };
      } catch (e) {
        // A missing known_hosts file or key is the same for every node: that is bad input, not a host problem.
        if (
          e instanceof UserError &&
          /knownHostsPath|private key file|SSH_AUTH_SOCK|no SSH credentials/.test(e.message)
        )
          throw e;
        const error = e instanceof Error ? e.message : String(e);
        if (!opts.quiet) progress(node.name, opts.phase ?? "ssh", "NOT reachable");
        return { node, error };
      }
    }),
  );
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
