// etcd on a control plane, over the remote layer: find etcdctl/etcdutl (on the
// host, or copied out of the running etcd static-pod container via crictl so
// they stay usable once etcd is stopped), and run them with the kubeadm certs.
import { UserError } from "../errors.ts";
import { type Remote, sq } from "../remote/ssh.ts";
import type { NodeSpec } from "../spec/schema.ts";
import { ETCD_MANIFEST, type EtcdManifestFacts, readEtcdManifest } from "./manifest.ts";
import { parseStatusJson, type SnapshotStatus } from "./snapshot.ts";

/** Client certificate etcdctl uses; kubeadm's healthcheck client by default. */
export interface EtcdAccess {
  cacert: string;
  cert: string;
  key: string;
}

export const KUBEADM_ETCD_ACCESS: EtcdAccess = {
  cacert: "/etc/kubernetes/pki/etcd/ca.crt",
  cert: "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
  key: "/etc/kubernetes/pki/etcd/healthcheck-client.key",
};

/** Where kubeadm-ha keeps etcd binaries copied out of the etcd container. */
export const TOOLS_DIR = "/var/lib/kubeadm-ha/bin";

/**
 * Bash that defines `etcd_tools`: sets ETCDCTL, ETCDUTL (may be empty on 3.4),
 * ETCD_VERSION and TOOLS_SOURCE. Shared by the commands and the backup timer, so
 * it must stay shellcheck-clean.
 */
export const ETCD_TOOLS_SH = `KHA_TOOLS=${sq(TOOLS_DIR)}
etcd_tools() {
  ETCDCTL=""
  ETCDUTL=""
  TOOLS_SOURCE=""
  local id pid d b
  # kubeadm nodes usually have etcdctl only inside the etcd image: copy it (and
  # etcdutl) out of the running container so the same version works when etcd is stopped.
  if command -v crictl >/dev/null 2>&1; then
    id="$(crictl ps -q --state running --name '^etcd$' 2>/dev/null | head -n 1 || true)"
    if [ -n "$id" ]; then
      pid="$(crictl inspect --output go-template --template '{{.info.pid}}' "$id" 2>/dev/null || true)"
      if [ -n "$pid" ] && [ -d "/proc/$pid/root" ]; then
        install -d -m 0700 "$KHA_TOOLS"
        for b in etcdctl etcdutl; do
          for d in /usr/local/bin /usr/bin /bin; do
            if [ -x "/proc/$pid/root$d/$b" ]; then
              install -m 0700 "/proc/$pid/root$d/$b" "$KHA_TOOLS/$b"
              break
            fi
          done
        done
        TOOLS_SOURCE="etcd container"
      fi
    fi
  fi
  if [ -x "$KHA_TOOLS/etcdctl" ]; then
    ETCDCTL="$KHA_TOOLS/etcdctl"
    [ -x "$KHA_TOOLS/etcdutl" ] && ETCDUTL="$KHA_TOOLS/etcdutl"
    [ -n "$TOOLS_SOURCE" ] || TOOLS_SOURCE="copied from the etcd container"
  else
    ETCDCTL="$(command -v etcdctl || true)"
    ETCDUTL="$(command -v etcdutl || true)"
    TOOLS_SOURCE="host"
  fi
  if [ -z "$ETCDCTL" ]; then
    echo "no etcdctl on this host and no running etcd container to copy it from" >&2
    return 1
  fi
  export ETCDCTL_API=3
  ETCD_VERSION="$("$ETCDCTL" version 2>/dev/null | sed -n 's/^etcdctl version: *//p')"
}
# snapshot status/restore: etcdutl when there is one (3.5+; etcdctl 3.6 lost them), else etcdctl (3.4).
snaptool() {
  if [ -n "$ETCDUTL" ]; then "$ETCDUTL" "$@"; else "$ETCDCTL" "$@"; fi
}
`;

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
export function etcdScript(remote: Remote, body: string, opts: { timeoutMs?: number } = {}) {
  const script = `set -euo pipefail\numask 077\n${ETCD_TOOLS_SH}\n${body}\n`;
  return remote.exec("bash -s", { sudo: true, stdin: script, timeoutMs: opts.timeoutMs ?? 120_000 });
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
    throw new UserError(`${remote.name}: ${what} failed (exit ${r.code}): ${detail.slice(0, 600)}`);
  }
  return r.stdout;
}

export function etcdctlFlags(access: EtcdAccess, endpoint: string): string {
  return `--endpoints=${sq(endpoint)} --cacert=${sq(access.cacert)} --cert=${sq(access.cert)} --key=${sq(access.key)}`;
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

export interface MemberInfo {
  id: string;
  name: string;
  peerUrls: string[];
  clientUrls: string[];
}

/** Member list and cluster ID (hex) as this node's etcd sees them. IDs are uint64: parsed from the text, not as JS numbers. */
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

export function parseMemberList(out: string): { clusterId: string; members: MemberInfo[] } {
  const cid = /"cluster_id":(\d+)/.exec(out)?.[1];
  const members: MemberInfo[] = [];
  const re = /\{"ID":(\d+),"name":"([^"]*)","peerURLs":\[([^\]]*)\](?:,"clientURLs":\[([^\]]*)\])?/g;
  for (let m = re.exec(out); m; m = re.exec(out)) {
    const urls = (s?: string) => (s ? (JSON.parse(`[${s}]`) as string[]) : []);
    members.push({ id: BigInt(m[1]!).toString(16), name: m[2]!, peerUrls: urls(m[3]), clientUrls: urls(m[4]) });
  }
  return { clusterId: cid ? BigInt(cid).toString(16) : "", members };
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

/** Bash: `sha256_of FILE` prints the hex sha256, with openssl when there is one (it uses the CPU's SHA extensions; ~6x sha256sum on the lab). */
export const SHA256_OF_SH = `sha256_of() {
  if command -v openssl >/dev/null 2>&1; then
    openssl dgst -sha256 -r "$1" | cut -d' ' -f1
  else
    sha256sum -- "$1" | cut -d' ' -f1
  fi
}`;

export interface SnapshotFacts {
  sha256: string;
  status: SnapshotStatus;
  clusterId: string;
  members: MemberInfo[];
}

/** sha256, `snapshot status` and the member list of a snapshot on the node, in one round trip. */
export async function remoteSnapshotFacts(n: NodeEtcd, path: string, access: EtcdAccess): Promise<SnapshotFacts> {
  const out = await etcdScriptOk(
    n.remote,
    `etcd_tools
${SHA256_OF_SH}
echo "SHA=$(sha256_of ${sq(path)})"
echo '---STATUS---'
snaptool snapshot status ${sq(path)} -w json
echo '---MEMBERS---'
"$ETCDCTL" ${etcdctlFlags(access, n.endpoint)} --command-timeout=5s member list -w json 2>/dev/null || echo '{}'`,
    `sha256 and snapshot status of ${path}`,
    { timeoutMs: 30 * 60_000 },
  );
  const sha = /SHA=([0-9a-f]{64})/.exec(out)?.[1];
  if (!sha) throw new UserError(`${n.node.name}: no sha256 of ${path}: ${out.trim().slice(0, 200)}`);
  const [, rest = ""] = out.split("---STATUS---\n");
  const [statusText = "", membersText = ""] = rest.split("---MEMBERS---\n");
  return { sha256: sha, status: parseStatusJson(statusText), ...parseMemberList(membersText) };
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
