// verify: the post-install checks of the runbook (sections 5 and 7) as a table.
// VIP on exactly one control plane, haproxy answering on each, every backend UP,
// /healthz through the VIP, etcd members and their health, nodes Ready, and an
// opt-in workload test. Reads only, except --workload (its own namespace, removed).
import { type MemberInfo, parseMemberList } from "../etcd/member-list.ts";
import { ETCD_TOOLS_SH, etcdctlFlags, KUBEADM_ETCD_ACCESS } from "../etcd/remote.ts";
import { type Progress, progress } from "../progress.ts";
import { type Remote, sq } from "../remote/ssh.ts";
import { SECRETS_DIR } from "../render/paths.ts";
import type { ClusterSpec, NodeSpec } from "../spec/schema.ts";
import { type Session, sshRow } from "./connect.ts";
import type { CheckRow } from "./report.ts";

const ADMIN_CONF = "/etc/kubernetes/admin.conf";
type Live = Session & { remote: Remote };

// ---- parsers (pure) ----------------------------------------------------------------------------

/** Whether `ip -o -4 addr show` output lists `vip` as an address. */
export function holdsVip(ipOutput: string, vip: string): boolean {
  return ipOutput.split("\n").some((l) => l.includes(` inet ${vip}/`));
}

/** The control planes whose interfaces hold the VIP (`ip -o -4 addr show` on each); one that does not answer holds nothing. */
export async function holdersOf(spec: ClusterSpec, cps: { node: NodeSpec; remote: Remote }[]): Promise<string[]> {
  const r = await Promise.all(
    cps.map(async (s) => {
      const out = await s.remote.exec("ip -o -4 addr show", { timeoutMs: 10_000 }).catch(() => undefined);
      return out && out.code === 0 && holdsVip(out.stdout, spec.controlPlaneEndpoint.vip) ? s.node.name : undefined;
    }),
  );
  return r.filter((x): x is string => !!x);
}

export interface BackendStatus {
  server: string;
  status: string;
  /** Last health check result, e.g. "L7OK/200" or "L4CON". */
  check: string;
}

/** haproxy's stats CSV (`show stat` or `/;csv`): the servers of `backend` and their status. */
export function parseStatsCsv(csv: string, backend = "kube_apiserver"): BackendStatus[] {
  const lines = csv.split("\n").filter((l) => l.trim());
  const header = lines.find((l) => l.startsWith("# "));
  if (!header) return [];
  const cols = header.slice(2).split(",");
  const at = (name: string) => cols.indexOf(name);
  const out: BackendStatus[] = [];
  for (const l of lines) {
    if (l.startsWith("#")) continue;
    const f = l.split(",");
    if (f[at("pxname")] !== backend) continue;
    const sv = f[at("svname")] ?? "";
    if (sv === "FRONTEND" || sv === "BACKEND") continue;
    const code = f[at("check_code")];
    out.push({
      server: sv,
      status: f[at("status")] ?? "",
      check: `${f[at("check_status")] ?? ""}${code ? `/${code}` : ""}`,
    });
  }
  return out;
}

/** `etcdctl endpoint health` lines: url -> healthy + the rest of the line. */
export function parseEndpointHealth(text: string): Map<string, { healthy: boolean; detail: string }> {
  const m = new Map<string, { healthy: boolean; detail: string }>();
  for (const line of text.split("\n")) {
    const r = /^(\S+) is (healthy|unhealthy): (.*)$/.exec(line.trim());
    if (r) m.set(r[1]!, { healthy: r[2] === "healthy", detail: r[3]!.trim() });
  }
  return m;
}

/** `kubectl get nodes -o json`: name -> its Ready condition ("True", "False", "Unknown") and whether it is cordoned. */
export function parseNodes(json: string): Map<string, { ready: string; unschedulable: boolean }> {
  const doc = JSON.parse(json) as {
    items?: {
      metadata?: { name?: string };
      spec?: { unschedulable?: boolean };
      status?: { conditions?: { type: string; status: string }[] };
    }[];
  };
  const m = new Map<string, { ready: string; unschedulable: boolean }>();
  for (const item of doc.items ?? []) {
    const name = item.metadata?.name;
    if (!name) continue;
    m.set(name, {
      ready: item.status?.conditions?.find((c) => c.type === "Ready")?.status ?? "Unknown",
      unschedulable: item.spec?.unschedulable === true,
    });
  }
  return m;
}

// ---- remote scripts ----------------------------------------------------------------------------

/** Stats CSV of the local haproxy, as root: the stats page with the password from the host's secret file (fed to curl on stdin, never in argv or output), else the admin socket. */
export function statsScript(spec: ClusterSpec): string {
  const stats = spec.loadBalancer.haproxy.stats;
  const addr = stats.bindAddress === "0.0.0.0" ? "127.0.0.1" : stats.bindAddress;
  const viaPage = stats.enabled
    ? `if command -v curl >/dev/null 2>&1 && [ -r ${sq(`${SECRETS_DIR}/stats-password`)} ]; then
  # printf is a builtin: the password reaches curl's config on stdin, never a command line.
  if printf 'user = "%s:%s"\\n' ${sq(stats.user)} "$(cat ${sq(`${SECRETS_DIR}/stats-password`)})" |
    curl -fsS --max-time 3 --noproxy '*' -K - ${sq(`http://${addr}:${stats.port}/;csv`)}; then exit 0; fi
fi
`
    : "";
  return `set -u
${viaPage}sock=/run/haproxy/admin.sock
[ -S "$sock" ] || { echo "no stats page answer and no $sock" >&2; exit 3; }
if command -v socat >/dev/null 2>&1; then echo "show stat" | socat stdio "$sock"; exit $?; fi
if command -v python3 >/dev/null 2>&1; then
  python3 -c 'import socket,sys
s=socket.socket(socket.AF_UNIX);s.connect(sys.argv[1]);s.sendall(b"show stat\\n")
while True:
    d=s.recv(65536)
    if not d: break
    sys.stdout.write(d.decode())' "$sock"; exit $?
fi
echo "cannot read $sock: neither socat nor python3" >&2; exit 3
`;
}

/** etcd member list through the local member, then the health of every member's client URL. */
export function etcdCheckScript(): string {
  const flags = etcdctlFlags(KUBEADM_ETCD_ACCESS, "https://127.0.0.1:2379");
  return `set -uo pipefail
${ETCD_TOOLS_SH}
etcd_tools || exit 3
echo "etcdctl \${ETCD_VERSION:-unknown} ($TOOLS_SOURCE)"
echo "---MEMBERS---"
"$ETCDCTL" ${flags} --command-timeout=3s member list -w json || exit 4
urls="$("$ETCDCTL" ${flags} --command-timeout=3s member list -w json | grep -o '"clientURLs":\\[[^]]*\\]' | grep -o 'https\\?://[^"]*' | paste -sd, -)"
echo "---HEALTH---"
"$ETCDCTL" --endpoints="$urls" --cacert=${sq(KUBEADM_ETCD_ACCESS.cacert)} --cert=${sq(KUBEADM_ETCD_ACCESS.cert)} --key=${sq(KUBEADM_ETCD_ACCESS.key)} --command-timeout=3s endpoint health 2>&1
exit 0
`;
}

export const WORKLOAD_NAMESPACE = "kubeadm-ha-verify";

/** Seed section 7: deployment, scale to 4, NodePort, curl through the VIP and every node; always cleans up. */
export function workloadScript(spec: ClusterSpec, image: string): string {
  const targets = [
    { name: "vip", address: spec.controlPlaneEndpoint.vip },
    ...spec.nodes.map((n) => ({ name: n.name, address: n.address })),
  ];
  const curls = targets.map((t) => `try_curl ${sq(t.name)} ${sq(t.address)}`).join("\n");
  return `set -uo pipefail
K=(kubectl --kubeconfig ${sq(ADMIN_CONF)} --request-timeout=20s)
NS=${sq(WORKLOAD_NAMESPACE)}
report() { printf 'step %s %s %s\\n' "$1" "$2" "\${3:-}"; }
cleanup() {
  if "\${K[@]}" delete namespace "$NS" --wait=true --timeout=120s >/dev/null 2>&1; then report cleanup ok "namespace $NS deleted"
  else report cleanup fail "could not delete namespace $NS"; fi
}
trap cleanup EXIT
if ! out=$("\${K[@]}" create namespace "$NS" 2>&1); then report deploy fail "$out"; exit 1; fi
if ! out=$("\${K[@]}" -n "$NS" create deployment web --image=${sq(image)} --port=80 2>&1); then report deploy fail "$out"; exit 1; fi
report deploy ok ${sq(`deployment web (${image})`)}
if ! out=$("\${K[@]}" -n "$NS" scale deployment web --replicas=4 2>&1) ||
  ! out=$("\${K[@]}" -n "$NS" rollout status deployment web --timeout=180s 2>&1); then report scale fail "$out"; exit 1; fi
report scale ok "4 replicas available"
if ! out=$("\${K[@]}" -n "$NS" expose deployment web --type=NodePort --port=80 2>&1); then report nodeport fail "$out"; exit 1; fi
port=$("\${K[@]}" -n "$NS" get service web -o 'jsonpath={.spec.ports[0].nodePort}' 2>/dev/null || true)
case "$port" in "" | *[!0-9]*) report nodeport fail "no nodePort on service web"; exit 1 ;; esac
report nodeport ok "NodePort $port"
try_curl() {
  local code _
  for _ in 1 2 3 4 5; do
    code=$(curl -sS --noproxy '*' --max-time 5 -o /dev/null -w '%{http_code}' "http://$2:$port/" 2>/dev/null) || code=000
    [ "$code" = 200 ] && { report "curl:$1" ok "http://$2:$port/ -> 200"; return 0; }
    sleep 2
  done
  report "curl:$1" fail "http://$2:$port/ -> $code"
}
${curls}
`;
}

export function parseSteps(out: string): { step: string; ok: boolean; detail: string }[] {
  return out
    .split("\n")
    .map((l) => /^step (\S+) (ok|fail) ?(.*)$/.exec(l.trim()))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ step: m[1]!, ok: m[2] === "ok", detail: m[3] ?? "" }));
}

// ---- the checks --------------------------------------------------------------------------------

async function vipRows(spec: ClusterSpec, cps: Live[]): Promise<CheckRow[]> {
  const { vip, interface: iface } = spec.controlPlaneEndpoint;
  const held = await Promise.all(
    cps.map(async (s) => {
      const r = await s.remote.exec("ip -o -4 addr show", { timeoutMs: 10_000 });
      return { name: s.node.name, holds: r.code === 0 && holdsVip(r.stdout, vip) };
    }),
  );
  const holders = held.filter((h) => h.holds).map((h) => h.name);
  const check = "VIP on exactly one control plane";
  if (holders.length === 1) return [{ host: "vip", check, status: "pass", detail: `${vip} on ${holders[0]}` }];
  if (holders.length === 0)
    return [
      {
        host: "vip",
        check,
        status: "fail",
        detail: `${vip} is on no control plane (checked ${cps.map((s) => s.node.name).join(", ")})`,
        fix: `Start keepalived on the control planes (systemctl start keepalived) and read why it does not take the VIP: journalctl -u keepalived; check interface ${iface} exists and the check script passes (/etc/keepalived/check_apiserver.sh).`,
      },
    ];
  return [
    {
      host: "vip",
      check,
      status: "fail",
      detail: `${vip} is on ${holders.length} control planes at once: ${holders.join(", ")} (split brain)`,
      fix: "VRRP adverts do not reach the peers: allow IP protocol 112 (VRRP) between the control planes, check the virtual router id is unique on the network, then restart keepalived on all but one holder.",
    },
  ];
}

async function frontendRow(spec: ClusterSpec, s: Live): Promise<CheckRow> {
  const port = spec.controlPlaneEndpoint.port;
  const cmd = `if timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' ${sq(s.node.address)} ${port} 2>/dev/null; then echo open; else echo closed; fi; systemctl is-active haproxy 2>/dev/null || true`;
  const r = await s.remote.exec(cmd, { timeoutMs: 10_000 });
  const [state, active] = r.stdout.trim().split("\n");
  const check = `haproxy frontend :${port}`;
  if (state === "open")
    return { host: s.node.name, check, status: "pass", detail: `${s.node.address}:${port} accepts connections` };
  return {
    host: s.node.name,
    check,
    status: "fail",
    detail: `${s.node.address}:${port} does not accept connections (haproxy ${active || "unknown"})`,
    fix: `On ${s.node.name}: systemctl restart haproxy, then journalctl -u haproxy -n 50; haproxy -c -f /etc/haproxy/haproxy.cfg checks the config.`,
  };
}

async function backendRows(spec: ClusterSpec, s: Live): Promise<CheckRow[]> {
  const r = await s.remote.exec("bash -s", { sudo: true, stdin: statsScript(spec), timeoutMs: 15_000 });
  const check = "haproxy backends UP";
  if (r.code !== 0)
    return [
      {
        host: s.node.name,
        check,
        status: "fail",
        detail: `cannot read haproxy stats: ${(r.stderr.trim() || `exit ${r.code}`).split("\n").slice(-1)[0]}`,
        fix: `On ${s.node.name}: check haproxy runs (systemctl status haproxy) and its stats page/socket are configured (re-apply the load-balancer step).`,
      },
    ];
  const backends = parseStatsCsv(r.stdout);
  const expected = spec.nodes.filter((n) => n.role === "control-plane").map((n) => n.name);
  const down = backends.filter((b) => !/^UP/.test(b.status));
  const missing = expected.filter((n) => !backends.some((b) => b.server === n));
  const detail = backends.map((b) => `${b.server} ${b.status}${b.check ? ` (${b.check})` : ""}`).join(", ");
  if (down.length === 0 && missing.length === 0) return [{ host: s.node.name, check, status: "pass", detail }];
  return [
    {
      host: s.node.name,
      check,
      status: "fail",
      detail: `${detail || "no servers"}${missing.length ? `; not in the config: ${missing.join(", ")}` : ""}`,
      fix: down.length
        ? `The apiserver on ${down.map((b) => b.server).join(", ")} does not answer GET /healthz on :6443: check kube-apiserver there (crictl ps --name kube-apiserver; its logs), its etcd member, and that ${s.node.name} can reach it on 6443.`
        : "haproxy.cfg does not list every control plane: re-apply the load-balancer step (bun run drift shows it).",
    },
  ];
}

async function healthzRow(spec: ClusterSpec, cps: Live[]): Promise<CheckRow> {
  const { vip, port } = spec.controlPlaneEndpoint;
  const url = `https://${vip}:${port}/healthz`;
  const check = "/healthz through the VIP";
  for (const s of cps) {
    const r = await s.remote.exec(
      `curl -sS -k --noproxy '*' --connect-timeout 2 --max-time 5 -w '\\nHTTP %{http_code}' ${sq(url)} 2>&1 || true`,
      { timeoutMs: 15_000 },
    );
    const code = /HTTP (\d{3})\s*$/.exec(r.stdout)?.[1];
    const body =
      r.stdout
        .replace(/\nHTTP \d{3}\s*$/, "")
        .trim()
        .split("\n")[0] ?? "";
    if (code === "200")
      return { host: "vip", check, status: "pass", detail: `${url} -> 200 ${body} (from ${s.node.name})` };
    if (code === "000" || !code) continue; // no answer from here: try the next control plane
    return {
      host: "vip",
      check,
      status: "fail",
      detail: `${url} -> ${code} ${body.slice(0, 120)} (from ${s.node.name})`,
      fix: "The apiserver behind the VIP is not healthy: see the etcd and backend rows, and kubectl get --raw='/readyz?verbose' on a control plane.",
    };
  }
  return {
    host: "vip",
    check,
    status: "fail",
    detail: `${url} did not answer from ${cps.map((s) => s.node.name).join(", ") || "any control plane"}`,
    fix: "Nothing answers on the VIP: see the VIP and haproxy rows (keepalived holds the VIP, haproxy listens on the port).",
  };
}

async function etcdRows(spec: ClusterSpec, cps: Live[]): Promise<CheckRow[]> {
  const expected = spec.nodes.filter((n) => n.role === "control-plane");
  const errors: string[] = [];
  for (const s of cps) {
    const r = await s.remote.exec("bash -s", { sudo: true, stdin: etcdCheckScript(), timeoutMs: 45_000 });
    if (r.code !== 0 || !r.stdout.includes("---HEALTH---")) {
      errors.push(
        `${s.node.name}: ${(r.stderr.trim() || r.stdout.trim() || `exit ${r.code}`).split("\n").slice(-1)[0]}`,
      );
      continue;
    }
    const [, membersPart = "", healthPart = ""] = r.stdout.split(/---MEMBERS---\n|---HEALTH---\n/);
    let members: MemberInfo[];
    try {
      members = parseMemberList(membersPart).members;
    } catch (e) {
      errors.push(`${s.node.name}: ${(e as Error).message}`);
      continue;
    }
    const health = parseEndpointHealth(healthPart);
    const rows: CheckRow[] = [];
    // A member added but never started has no name yet; it still counts for quorum.
    const label = (m: MemberInfo) => m.name || `unstarted member ${m.id}`;
    const names = members.map(label);
    const missing = expected.filter((n) => !names.includes(n.name)).map((n) => n.name);
    const extra = names.filter((n) => !expected.some((e) => e.name === n));
    rows.push(
      missing.length || extra.length
        ? {
            host: "cluster",
            check: "etcd members",
            status: "fail",
            detail: `members (as ${s.node.name} sees them): ${names.join(", ") || "none"}${missing.length ? `; missing: ${missing.join(", ")}` : ""}${extra.length ? `; not in the spec: ${extra.join(", ")}` : ""}`,
            fix: missing.length
              ? `Join the missing control planes (re-apply their join steps); remove a stale member with etcdctl member remove <ID>.`
              : "Remove members that are no longer control planes, and members added but never started (they count for quorum): etcdctl member remove <ID> (on a control plane, with the kubeadm etcd certs).",
          }
        : {
            host: "cluster",
            check: "etcd members",
            status: "pass",
            detail: `${names.length} members: ${names.join(", ")} (from ${s.node.name})`,
          },
    );
    for (const m of members) {
      const url = m.clientUrls[0];
      const h = url ? health.get(url) : undefined;
      const host = expected.some((e) => e.name === m.name) ? m.name : `etcd:${label(m)}`;
      rows.push(
        h?.healthy
          ? { host, check: "etcd member healthy", status: "pass", detail: `${url}: ${h.detail}` }
          : {
              host,
              check: "etcd member healthy",
              status: "fail",
              detail: `${url ?? "(no client URL)"}: ${h?.detail ?? "no answer"}`,
              fix: `On ${label(m)}: check the etcd static pod runs (crictl ps --name etcd; kubelet logs), its data dir and certificates, and that port 2379/2380 is reachable from the other members.`,
            },
      );
    }
    return rows;
  }
  return [
    {
      host: "cluster",
      check: "etcd members",
      status: "fail",
      detail: `no control plane could list the etcd members: ${errors.join("; ")}`,
      fix: "Check etcd on the control planes (crictl ps --name etcd; journalctl -u kubelet) and the kubeadm etcd certificates in /etc/kubernetes/pki/etcd.",
    },
  ];
}

async function findKubectl(cps: Live[]): Promise<Live | undefined> {
  for (const s of cps) {
    const r = await s.remote.exec(`command -v kubectl >/dev/null 2>&1 && [ -r ${ADMIN_CONF} ] && echo yes`, {
      sudo: true,
      timeoutMs: 10_000,
    });
    if (r.stdout.trim() === "yes") return s;
  }
  return undefined;
}

async function nodeRows(spec: ClusterSpec, at: Live | undefined): Promise<CheckRow[]> {
  if (!at)
    return [
      {
        host: "cluster",
        check: "nodes Ready",
        status: "info",
        detail: `skipped: no control plane has kubectl and ${ADMIN_CONF} (the cluster is not initialized yet)`,
      },
    ];
  const r = await at.remote.exec(`kubectl --kubeconfig ${ADMIN_CONF} --request-timeout=10s get nodes -o json`, {
    sudo: true,
    timeoutMs: 30_000,
  });
  let nodes: ReturnType<typeof parseNodes>;
  try {
    if (r.code !== 0) throw new Error(r.stderr.trim() || `exit ${r.code}`);
    nodes = parseNodes(r.stdout);
  } catch (e) {
    return [
      {
        host: "cluster",
        check: "nodes Ready",
        status: "fail",
        detail: `kubectl get nodes on ${at.node.name} failed: ${(e as Error).message.split("\n").slice(-1)[0]}`,
        fix: "See the /healthz and etcd rows: the API is not answering.",
      },
    ];
  }
  return spec.nodes.map((n): CheckRow => {
    const node = nodes.get(n.name);
    const st = node?.ready;
    if (st === "True" && node?.unschedulable)
      return {
        host: n.name,
        check: "node Ready",
        status: "warn",
        detail: "Ready, SchedulingDisabled: cordoned, no new pod is scheduled here",
        fix: `kubectl uncordon ${n.name} once it is meant to take pods again (a stopped node:reboot leaves it cordoned).`,
      };
    if (st === "True") return { host: n.name, check: "node Ready", status: "pass", detail: "Ready" };
    return {
      host: n.name,
      check: "node Ready",
      status: "fail",
      detail: st === undefined ? "not registered in the cluster" : `Ready=${st}`,
      fix:
        st === undefined
          ? `Join ${n.name} (re-apply its join step) and check kubelet there: journalctl -u kubelet.`
          : `On ${n.name}: journalctl -u kubelet; a NotReady node is often the CNI (kubectl -n kube-system get pods -o wide).`,
    };
  });
}

async function workloadRows(
  spec: ClusterSpec,
  at: Live | undefined,
  image: string,
  log: Progress = progress,
): Promise<CheckRow[]> {
  if (!at)
    return [
      {
        host: "cluster",
        check: "workload test",
        status: "fail",
        detail: `no control plane has kubectl and ${ADMIN_CONF}`,
        fix: "Run --workload once the cluster is initialized.",
      },
    ];
  log(at.node.name, "verify", `workload test in namespace ${WORKLOAD_NAMESPACE} (deploy, scale to 4, NodePort, curl)`);
  const r = await at.remote.exec("bash -s", { sudo: true, stdin: workloadScript(spec, image), timeoutMs: 600_000 });
  const steps = parseSteps(r.stdout);
  if (steps.length === 0)
    return [
      {
        host: "cluster",
        check: "workload test",
        status: "fail",
        detail: `the test printed nothing (exit ${r.code}): ${r.stderr.trim().slice(0, 200)}`,
        fix: "Run it by hand on a control plane with kubectl to see the error.",
      },
    ];
  return steps.map((st): CheckRow => {
    const [what, target] = st.step.split(":");
    const check = what === "curl" ? `workload: NodePort via ${target}` : `workload: ${what}`;
    const host = what === "curl" ? (target === "vip" ? "vip" : target!) : "cluster";
    return st.ok
      ? { host, check, status: "pass", detail: st.detail }
      : {
          host,
          check,
          status: "fail",
          detail: st.detail,
          fix:
            what === "curl"
              ? "Check kube-proxy and the CNI on that node (kubectl -n kube-system get pods -o wide) and that NodePorts (30000-32767) are open in its firewall."
              : what === "cleanup"
                ? `Delete it by hand: kubectl delete namespace ${WORKLOAD_NAMESPACE}.`
                : `kubectl -n ${WORKLOAD_NAMESPACE} describe deployment web (image pull? scheduling?); the namespace is deleted after the test.`,
        };
  });
}

export interface VerifyOptions {
  workload?: boolean;
  /** Image for the workload test (the seed uses nginx). */
  image?: string;
  /** Progress lines (default: stderr). */
  log?: Progress;
}

export async function runVerify(spec: ClusterSpec, sessions: Session[], opts: VerifyOptions = {}): Promise<CheckRow[]> {
  const log = opts.log ?? progress;
  const rows: CheckRow[] = sessions.filter((s) => !s.remote).map(sshRow);
  const isLive = (s: Session): s is Live => !!s.remote;
  const cps = sessions.filter((s) => s.node.role === "control-plane").filter(isLive);
  if (cps.length === 0) {
    rows.push({
      host: "cluster",
      check: "control planes",
      status: "fail",
      detail: "no control plane reachable over SSH: nothing else can be checked",
      fix: "Fix SSH to the control planes first (see the ssh rows).",
    });
    return rows;
  }
  log("verify", "vip", "where is the VIP");
  rows.push(...(await vipRows(spec, cps)));
  log("verify", "haproxy", "frontends and backends");
  for (const r of await Promise.all(cps.map((s) => frontendRow(spec, s)))) rows.push(r);
  for (const r of await Promise.all(cps.map((s) => backendRows(spec, s)))) rows.push(...r);
  log("verify", "healthz", "GET /healthz through the VIP");
  rows.push(await healthzRow(spec, cps));
  log("verify", "etcd", "members and health");
  rows.push(...(await etcdRows(spec, cps)));
  const kubectlAt = await findKubectl(cps);
  log("verify", "nodes", kubectlAt ? `kubectl get nodes on ${kubectlAt.node.name}` : "no kubectl: skipped");
  rows.push(...(await nodeRows(spec, kubectlAt)));
  if (opts.workload) rows.push(...(await workloadRows(spec, kubectlAt, opts.image ?? "nginx", log)));
  return rows;
}

export const nodeNames = (nodes: NodeSpec[]) => nodes.map((n) => n.name);
