// etcd on a control plane, over the remote layer: find etcdctl/etcdutl (on the
// host, or copied out of the running etcd static-pod container via crictl so
// they stay usable once etcd is stopped), and run them with the kubeadm certs.
import { EXIT, UserError } from "../errors.ts";
import { type Remote, sq } from "../remote/ssh.ts";
import type { NodeSpec } from "../spec/schema.ts";
import { ETCD_MANIFEST, type EtcdManifestFacts, readEtcdManifest } from "./manifest.ts";
import { type MemberInfo, parseMemberList } from "./member-list.ts";
import { parseStatusJson, type SnapshotStatus } from "./snapshot.ts";
import { ETCD_TOOLS_SH, type EtcdAccess, etcdctlFlags } from "./tools-sh.ts";

// The snippets and access constants live in the leaf module tools-sh.ts (the backup-timer
// renderer uses them too and must not load the remote layer); re-exported for the commands.
export {
  ETCD_TOOLS_SH,
  type EtcdAccess,
  etcdctlFlags,
  KUBEADM_ETCD_ACCESS,
  TOOLS_DIR,
} from "./tools-sh.ts";

export interface NodeEtcd {
  node: NodeSpec;
  remote: Remote;
  manifest?: EtcdManifestFacts;
  manifestText?: string;
  endpoint: string;
  version: string;
  hasEtcdutl: boolean;
  toolsSource: string;
  /** Whether `snapshot restore` knows --bump-revision/--mark-compacted. */
  supportsBumpRevision: boolean;
}

/** Run a bash script (the tools prelude plus `body`) as root on the node. */
export function etcdScript(
  remote: Remote,
  body: string,
  opts: { timeoutMs?: number; onStdoutBytes?: (chunk: Buffer) => void } = {},
) {
  const script = `set -euo pipefail\numask 077\n${ETCD_TOOLS_SH}\n${body}\n`;
  const o = { sudo: true, stdin: script, timeoutMs: opts.timeoutMs ?? 120_000 };
  return opts.onStdoutBytes
    ? remote.execStream("bash -s", { ...o, onStdoutBytes: opts.onStdoutBytes })
    : remote.exec("bash -s", o);
}

export async function etcdScriptOk(
  remote: Remote,
  body: string,
  what: string,
  opts: { timeoutMs?: number } = {},
): Promise<string> {
  const r = await etcdScript(remote, body, opts);
  if (r.code !== 0) {
    const detail = (r.stderr.trim() || r.stdout.trim())
      .split("\n")
      .filter((l) => !/^\s*(goroutine|runtime\.|\s)/.test(l))
      .slice(-4)
      .join(" | ");
    // The host ran the step and it failed: a failed operation (exit 1), not bad input.
    throw new UserError(`${remote.name}: ${what} failed (exit ${r.code}): ${detail.slice(0, 600)}`, EXIT.failed);
  }
  return r.stdout;
}

const PROBE_SH = `etcd_tools
printf 'VERSION=%s\\nETCDUTL=%s\\nSOURCE=%s\\n' "$ETCD_VERSION" "$ETCDUTL" "$TOOLS_SOURCE"
if snaptool snapshot restore --help 2>&1 | grep -q -- '--bump-revision'; then echo BUMP=yes; else echo BUMP=no; fi`;
const MANIFEST_SH = `if [ -f ${sq(ETCD_MANIFEST)} ]; then echo '---MANIFEST---'; cat ${sq(ETCD_MANIFEST)}; fi`;

/** Read the manifest and find the tools on a node. */
export async function probeNode(remote: Remote, node: NodeSpec): Promise<NodeEtcd> {
  const out = await etcdScriptOk(
    remote,
    `${PROBE_SH}\n${MANIFEST_SH}`,
    "finding etcdctl/etcdutl and reading etcd.yaml",
  );
  return parseProbe(out, remote, node);
}

/**
 * probeNode and endpointHealth in one round trip: the script takes the client URL from the
 * manifest the same way readEtcdManifest does (first --advertise-client-urls); when the two
 * disagree (an unusual manifest) the health check is repeated against the parsed endpoint.
 */
export async function probeAndHealth(
  remote: Remote,
  node: NodeSpec,
  access: EtcdAccess,
): Promise<{ n: NodeEtcd; health: EndpointHealth }> {
  const fallback = `https://${node.address}:2379`;
  const out = await etcdScriptOk(
    remote,
    `${PROBE_SH}
EP="$(sed -n 's/^[[:space:]]*-[[:space:]]*"\\{0,1\\}--advertise-client-urls=//p' ${sq(ETCD_MANIFEST)} 2>/dev/null | head -n 1 | cut -d, -f1 | tr -d "\\"' " || true)"
[ -n "$EP" ] || EP=${sq(fallback)}
echo "HEALTH_EP=$EP"
if H="$("$ETCDCTL" --endpoints="$EP" --cacert=${sq(access.cacert)} --cert=${sq(access.cert)} --key=${sq(access.key)} --command-timeout=5s endpoint health 2>&1)"; then echo HEALTH_RC=0; else echo HEALTH_RC=1; fi
printf 'HEALTH_OUT=%s\\n' "$(printf '%s' "$H" | tail -n 1)"
${MANIFEST_SH}`,
    "finding etcdctl/etcdutl, reading etcd.yaml and checking endpoint health",
    { timeoutMs: 60_000 },
  );
  const n = parseProbe(out, remote, node);
  const head = out.split("---MANIFEST---\n")[0] ?? "";
  const ep = /^HEALTH_EP=(.*)$/m.exec(head)?.[1]?.trim();
  if (ep !== n.endpoint) return { n, health: await endpointHealth(n, access) };
  const detail = /^HEALTH_OUT=(.*)$/m.exec(head)?.[1]?.trim() ?? "";
  return { n, health: { healthy: /^HEALTH_RC=0$/m.test(head) && /is healthy/.test(detail), detail } };
}

function parseProbe(out: string, remote: Remote, node: NodeSpec): NodeEtcd {
  const [head, manifestText] = out.split("---MANIFEST---\n");
  const kv = Object.fromEntries(
    (head ?? "")
      .split("\n")
      .filter((l) => l.includes("="))
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
  const manifest = manifestText ? readEtcdManifest(manifestText, `${node.name}:${ETCD_MANIFEST}`) : undefined;
  return {
    node,
    remote,
    manifest,
    manifestText,
    endpoint: manifest?.clientUrl ?? `https://${node.address}:2379`,
    version: kv.VERSION || manifest?.imageVersion || "unknown",
    hasEtcdutl: Boolean(kv.ETCDUTL),
    toolsSource: kv.SOURCE ?? "unknown",
    supportsBumpRevision: kv.BUMP === "yes",
  };
}

export interface EndpointHealth {
  healthy: boolean;
  detail: string;
}

export async function endpointHealth(n: NodeEtcd, access: EtcdAccess): Promise<EndpointHealth> {
  const r = await etcdScript(
    n.remote,
    `etcd_tools\n"$ETCDCTL" ${etcdctlFlags(access, n.endpoint)} --command-timeout=5s endpoint health 2>&1`,
    {
      timeoutMs: 30_000,
    },
  ).catch((e: Error) => ({ code: -1, stdout: "", stderr: e.message }));
  const text = `${r.stdout}${r.stderr}`.trim();
  return { healthy: r.code === 0 && /is healthy/.test(text), detail: text.split("\n").slice(-1)[0] ?? "" };
}

export { type MemberInfo, parseMemberList } from "./member-list.ts";

/** Member list and cluster ID (hex) as this node's etcd sees them, every member (member-list.ts). */
export async function memberList(
  n: NodeEtcd,
  access: EtcdAccess,
): Promise<{ clusterId: string; members: MemberInfo[] }> {
  const out = await etcdScriptOk(
    n.remote,
    `etcd_tools\n"$ETCDCTL" ${etcdctlFlags(access, n.endpoint)} --command-timeout=5s member list -w json`,
    "etcdctl member list",
    { timeoutMs: 30_000 },
  );
  return parseMemberList(out);
}

/** `snapshot status` of a file on the node. */
export async function remoteSnapshotStatus(n: NodeEtcd, path: string): Promise<SnapshotStatus> {
  const out = await etcdScriptOk(
    n.remote,
    `etcd_tools\nsnaptool snapshot status ${sq(path)} -w json`,
    `snapshot status of ${path}`,
  );
  return parseStatusJson(out);
}

/** This member's ID and the leader's ID (decimal strings) from `endpoint status`; undefined when etcd does not answer. */
export async function endpointLeader(
  n: NodeEtcd,
  access: EtcdAccess,
): Promise<{ memberId: string; leader: string } | undefined> {
  const r = await etcdScript(
    n.remote,
    `etcd_tools\n"$ETCDCTL" ${etcdctlFlags(access, n.endpoint)} --command-timeout=3s endpoint status -w json`,
    { timeoutMs: 20_000 },
  ).catch(() => undefined);
  const memberId = r?.code === 0 ? /"member_id":(\d+)/.exec(r.stdout)?.[1] : undefined;
  const leader = r?.code === 0 ? /"leader":(\d+)/.exec(r.stdout)?.[1] : undefined;
  return memberId && leader ? { memberId, leader } : undefined;
}
