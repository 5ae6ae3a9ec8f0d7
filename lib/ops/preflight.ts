// preflight: is every host ready for the phases, before anything is changed?
// Ports free on their host and reachable from the peers that need them, swap,
// kernel modules, cgroup driver, time sync and sudo. Read-only on the hosts: the
// only thing started is a short-lived TCP listener, killed before we return.
//
// Reachability needs something listening on the target port. Hosts have no common
// listener tool, so the listener is python3 when present, else perl (perl-base is
// Essential on Debian/Ubuntu and ships IO::Socket::INET), each wrapped in `timeout`
// so it dies on its own even if this command is killed. A host with neither gets a
// "cannot test reachability" warning. Peers connect with bash's /dev/tcp under
// `timeout 2`, so no nc/telnet is needed anywhere.
import { type Progress, progress } from "../progress.ts";
import { type Remote, sq } from "../remote/ssh.ts";
import type { ClusterSpec, NodeSpec } from "../spec/schema.ts";
import { type Session, sshRow } from "./connect.ts";
import type { CheckRow } from "./report.ts";

// ---- what the topology needs -------------------------------------------------------------------

export interface PortNeed {
  port: number;
  /** The daemon that will listen there, for the report. */
  what: string;
  /** Processes (comm + command line) that may already hold it on an already-built cluster. */
  owner: RegExp;
  /** Nodes that must be able to connect to it; empty = only the host itself. */
  from: string[];
}

const APISERVER = /kube-apiserver|apiserver/;

/** Per node, the TCP ports kubeadm and the load balancer need, and who must reach each. */
export function portPlan(spec: ClusterSpec): Map<string, PortNeed[]> {
  const cps = spec.nodes.filter((n) => n.role === "control-plane").map((n) => n.name);
  const all = spec.nodes.map((n) => n.name);
  const others = (list: string[], self: string) => list.filter((n) => n !== self);
  const plan = new Map<string, PortNeed[]>();
  const { port: lbPort } = spec.controlPlaneEndpoint;
  const stats = spec.loadBalancer.haproxy.stats;
  for (const n of spec.nodes) {
    const needs: PortNeed[] = [];
    if (n.role === "control-plane") {
      needs.push(
        // haproxy on every control plane balances onto every apiserver; kubeadm joins reach it too.
        { port: 6443, what: "kube-apiserver", owner: APISERVER, from: others(all, n.name) },
        { port: 2379, what: "etcd client", owner: /(^|[\s/])etcd(\s|$)/, from: others(cps, n.name) },
        { port: 2380, what: "etcd peer", owner: /(^|[\s/])etcd(\s|$)/, from: others(cps, n.name) },
        { port: 10250, what: "kubelet", owner: /kubelet/, from: others(cps, n.name) },
        // kubeadm binds these to 127.0.0.1: they must be free, nobody else connects.
        { port: 10257, what: "kube-controller-manager", owner: /kube-controller/, from: [] },
        { port: 10259, what: "kube-scheduler", owner: /kube-scheduler/, from: [] },
        // The VIP can land on any control plane: every node must reach the LB port on each.
        { port: lbPort, what: "haproxy (load balancer)", owner: /haproxy/, from: others(all, n.name) },
      );
      if (stats.enabled) needs.push({ port: stats.port, what: "haproxy stats", owner: /haproxy/, from: [] });
    } else {
      needs.push({ port: 10250, what: "kubelet", owner: /kubelet/, from: cps });
    }
    plan.set(n.name, needs);
  }
  return plan;
}

// ---- facts gathered on each host ---------------------------------------------------------------

export interface Listener {
  address: string;
  port: number;
  procs: { name: string; pid: number }[];
}

export interface HostFacts {
  user: string;
  sudo: "root" | "ok" | "fail";
  ssMissing: boolean;
  listeners: Listener[];
  cmdlines: Map<number, string>;
  swaps: string[];
  modules: Map<string, "loaded" | "builtin" | "loadable" | "missing">;
  cgroupFs: string;
  systemd: boolean;
  container: string;
  ntp: string;
  tools: Set<string>;
}

export const KERNEL_MODULES = ["overlay", "br_netfilter"];

/** Read-only: runs as the SSH user; sudo -n only for `ss -p` (process names) when it works. */
export const FACTS_SCRIPT = `set -u
PATH="$PATH:/usr/sbin:/sbin"
if [ "$(id -u)" = 0 ]; then SUDO=""; echo "sudo root"
elif sudo -n true >/dev/null 2>&1; then SUDO="sudo -n"; echo "sudo ok"
else SUDO=""; echo "sudo fail"; fi
echo "user $(id -un)"
if command -v ss >/dev/null 2>&1; then
  listening="$($SUDO ss -Hltnp 2>/dev/null || true)"
  printf '%s\\n' "$listening" | sed -n 's/^/listen /p'
  for pid in $(printf '%s\\n' "$listening" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
    printf 'proc %s %s\\n' "$pid" "$($SUDO cat "/proc/$pid/cmdline" 2>/dev/null | tr '\\0' ' ' | head -c 300)"
  done
else
  echo "ss missing"
fi
tail -n +2 /proc/swaps 2>/dev/null | sed 's/^/swap /'
for m in ${KERNEL_MODULES.join(" ")}; do
  if [ -d "/sys/module/$m" ]; then s=loaded
  elif grep -qs "/$m.ko" "/lib/modules/$(uname -r)/modules.builtin"; then s=builtin
  elif modinfo "$m" >/dev/null 2>&1; then s=loadable
  else s=missing; fi
  echo "module $m $s"
done
echo "cgroupfs $(stat -fc %T /sys/fs/cgroup 2>/dev/null || echo unknown)"
if [ -d /run/systemd/system ]; then echo "systemd yes"; else echo "systemd no"; fi
c="$(systemd-detect-virt -c 2>/dev/null)" || true
echo "container \${c:-none}"
ntp="$(timedatectl show -p NTPSynchronized --value 2>/dev/null)" || true
echo "ntp \${ntp:-unknown}"
command -v python3 >/dev/null 2>&1 && echo "tool python3"
perl -MIO::Socket::INET -MIO::Select -e1 >/dev/null 2>&1 && echo "tool perl"
command -v timeout >/dev/null 2>&1 && echo "tool timeout"
exit 0
`;

/** One `ss -Hltnp` line: State Recv-Q Send-Q Local:Port Peer:Port [users:(("name",pid=1,fd=3),...)]. */
export function parseSsLine(line: string): Listener | undefined {
  const f = line.trim().split(/\s+/);
  if (f.length < 5 || f[0] !== "LISTEN") return undefined;
  const local = f[3]!;
  const idx = local.lastIndexOf(":");
  const port = Number(local.slice(idx + 1));
  if (idx < 0 || !Number.isInteger(port)) return undefined;
  const address = local
    .slice(0, idx)
    .replace(/^\[|\]$/g, "")
    .replace(/%.*$/, "");
  const procs = [...line.matchAll(/\("([^"]*)",pid=(\d+)/g)].map((m) => ({ name: m[1]!, pid: Number(m[2]) }));
  return { address, port, procs };
}

export function parseFacts(out: string): HostFacts {
  const facts: HostFacts = {
    user: "",
    sudo: "fail",
    ssMissing: false,
    listeners: [],
    cmdlines: new Map(),
    swaps: [],
    modules: new Map(),
    cgroupFs: "unknown",
    systemd: false,
    container: "none",
    ntp: "unknown",
    tools: new Set(),
  };
  for (const line of out.split("\n")) {
    const sp = line.indexOf(" ");
    if (sp < 0) continue;
    const key = line.slice(0, sp);
    const rest = line.slice(sp + 1);
    switch (key) {
      case "sudo":
        facts.sudo = rest === "root" || rest === "ok" ? rest : "fail";
        break;
      case "user":
        facts.user = rest;
        break;
      case "listen": {
        const l = parseSsLine(rest);
        if (l) facts.listeners.push(l);
        break;
      }
      case "proc": {
        const [pid, ...cmd] = rest.split(" ");
        facts.cmdlines.set(Number(pid), cmd.join(" ").trim());
        break;
      }
      case "ss":
        facts.ssMissing = rest === "missing";
        break;
      case "swap":
        if (rest.trim()) facts.swaps.push(rest.trim());
        break;
      case "module": {
        const [name, state] = rest.split(" ");
        if (name) facts.modules.set(name, (state as "loaded") ?? "missing");
        break;
      }
      case "cgroupfs":
        facts.cgroupFs = rest.trim();
        break;
      case "systemd":
        facts.systemd = rest.trim() === "yes";
        break;
      case "container":
        facts.container = rest.trim() || "none";
        break;
      case "ntp":
        facts.ntp = rest.trim() || "unknown";
        break;
      case "tool":
        facts.tools.add(rest.trim());
        break;
    }
  }
  return facts;
}

// ---- listeners and probes ----------------------------------------------------------------------

const PY_LISTENER = `import os,select,socket,sys,time
socks=[];bad=[]
for p in sys.argv[1:]:
    s=socket.socket(socket.AF_INET,socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
    try:
        s.bind(("0.0.0.0",int(p)));s.listen(64);socks.append(s)
    except OSError as e:
        bad.append("%s:%s"%(p,e.strerror.replace(" ","_")))
print("READY python3 %d %s"%(os.getpid()," ".join(bad)),flush=True)
end=time.time()+float(os.environ.get("KHA_T","20"))
while socks and time.time()<end:
    r,_,_=select.select(socks,[],[],0.5)
    for s in r:
        try:
            c,_=s.accept();c.close()
        except OSError:
            pass
`;

const PL_LISTENER = `use IO::Socket::INET; use IO::Select; $|=1;
my $sel=IO::Select->new; my @bad;
for my $p (@ARGV) { my $s=IO::Socket::INET->new(LocalAddr=>"0.0.0.0",LocalPort=>$p,Listen=>64,ReuseAddr=>1,Proto=>"tcp");
  if ($s) { $sel->add($s) } else { my $e="$!"; $e =~ s/ /_/g; push @bad, "$p:$e" } }
print "READY perl $$ @bad\\n";
my $end=time+($ENV{KHA_T}||20);
while ($sel->count && time<$end) { for my $s ($sel->can_read(0.5)) { my $c=$s->accept; close $c if $c } }
`;

/** `tool` forces one listener (tests); by default python3, else perl. */
export function listenerCommand(ports: number[], seconds: number, tool?: "python3" | "perl"): string {
  const args = ports.join(" ");
  const py = tool === "perl" ? "false" : "command -v python3 >/dev/null 2>&1";
  return `export KHA_T=${seconds}
if ${py}; then exec timeout ${seconds + 5} python3 -c ${sq(PY_LISTENER)} ${args}
elif perl -MIO::Socket::INET -MIO::Select -e1 >/dev/null 2>&1; then exec timeout ${seconds + 5} perl -e ${sq(PL_LISTENER)} ${args}
else echo "NOTOOL"; fi`;
}

export interface TestListener {
  tool?: string;
  /** Ports it could not bind, with the reason. */
  failed: Map<number, string>;
  /** Set when no listener runs at all. */
  error?: string;
  stop(): Promise<void>;
}

export function parseReady(out: string): { tool: string; pid: number; failed: Map<number, string> } | undefined {
  const line = out.split("\n").find((l) => l.startsWith("READY "));
  if (!line) return undefined;
  const [, tool, pid, ...bad] = line.trim().split(/\s+/);
  const failed = new Map<number, string>();
  for (const b of bad) {
    const [p, why] = b.split(":");
    failed.set(Number(p), (why ?? "").replace(/_/g, " "));
  }
  return { tool: tool!, pid: Number(pid), failed };
}

/** Start a listener on `ports` on the host; resolves once it is listening (or could not start). */
export async function startTestListener(
  remote: Remote,
  ports: number[],
  seconds = 20,
  tool?: "python3" | "perl",
): Promise<TestListener> {
  let out = "";
  let errOut = "";
  let onReady: () => void = () => {};
  const readyP = new Promise<void>((res) => {
    onReady = res;
  });
  const done = remote
    .execStream(listenerCommand(ports, seconds, tool), {
      timeoutMs: (seconds + 10) * 1000,
      onStdout: (c) => {
        out += c;
        if (out.includes("\n")) onReady();
      },
      onStderr: (c) => {
        errOut += c;
      },
    })
    .catch(() => undefined)
    .finally(() => onReady());
  await Promise.race([readyP, Bun.sleep(8000)]);
  const ready = parseReady(out);
  if (!ready) {
    const error = out.includes("NOTOOL")
      ? "no listener tool (python3 or perl)"
      : `the test listener did not start: ${(errOut.trim() || out.trim() || "no output").slice(0, 200)}`;
    return { failed: new Map(), error, stop: async () => void (await done) };
  }
  return {
    tool: ready.tool,
    failed: ready.failed,
    async stop() {
      await remote.exec(`kill ${ready.pid} 2>/dev/null; true`, { timeoutMs: 10_000 }).catch(() => undefined);
      await Promise.race([done, Bun.sleep(5000)]);
    },
  };
}

export type ProbeResult = "ok" | "timeout" | "refused" | "unreachable" | "error";

export function probeScript(targets: { address: string; port: number }[]): string {
  const calls = targets.map((t) => `probe ${sq(t.address)} ${t.port} &`).join("\n");
  return `probe() {
  local out rc r
  out=$(timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>&1); rc=$?
  if [ "$rc" = 0 ]; then r=ok
  elif [ "$rc" = 124 ]; then r=timeout
  else case "$out" in *refused*) r=refused ;; *"No route"* | *unreachable*) r=unreachable ;; *) r=error ;; esac
  fi
  echo "probe $1 $2 $r"
}
${calls}
wait
`;
}

export function parseProbes(out: string): Map<string, ProbeResult> {
  const m = new Map<string, ProbeResult>();
  for (const line of out.split("\n")) {
    const [tag, addr, port, r] = line.trim().split(/\s+/);
    if (tag === "probe" && addr && port && r) m.set(`${addr}:${port}`, r as ProbeResult);
  }
  return m;
}

// ---- clocks ------------------------------------------------------------------------------------

export interface ClockSample {
  /** Remote clock minus this machine's clock at the midpoint of the round trip, seconds. */
  offset: number;
  /** Round trip, seconds (the offset is known to +/- half of it). */
  rtt: number;
}

export async function sampleClock(remote: Remote, samples = 3): Promise<ClockSample | undefined> {
  let best: ClockSample | undefined;
  for (let i = 0; i < samples; i++) {
    const t0 = Date.now();
    const r = await remote.exec("date +%s.%N", { timeoutMs: 5000 }).catch(() => undefined);
    const t1 = Date.now();
    const remoteT = Number(r?.stdout.trim());
    if (r?.code !== 0 || !Number.isFinite(remoteT)) continue;
    const s = { offset: remoteT - (t0 + t1) / 2000, rtt: (t1 - t0) / 1000 };
    if (!best || s.rtt < best.rtt) best = s;
  }
  return best;
}

export const MAX_SKEW_SECONDS = 2;

/** Rows for clock skew between hosts: fail the hosts farthest from the median when the spread is over 2 s. */
export function skewRows(offsets: Map<string, ClockSample>): CheckRow[] {
  const entries = [...offsets.entries()];
  if (entries.length === 0) return [];
  const sorted = entries.map(([, s]) => s.offset).sort((a, b) => a - b);
  const median = sorted[Math.floor((sorted.length - 1) / 2)]!;
  const spread = sorted[sorted.length - 1]! - sorted[0]!;
  return entries.map(([host, s]) => {
    const dev = s.offset - median;
    const detail = `clock ${dev >= 0 ? "+" : ""}${dev.toFixed(3)} s from the hosts' median (+/-${(s.rtt / 2).toFixed(3)} s); spread across hosts ${spread.toFixed(3)} s`;
    const bad = spread > MAX_SKEW_SECONDS && Math.abs(dev) > MAX_SKEW_SECONDS / 2;
    return bad
      ? {
          host,
          check: "clock skew",
          status: "fail",
          detail,
          fix: `Synchronize the clock (enable NTP: timedatectl set-ntp true, or chrony); hosts must agree within ${MAX_SKEW_SECONDS} s for etcd and certificates.`,
        }
      : { host, check: "clock skew", status: "pass", detail };
  });
}

// ---- turning facts into rows -------------------------------------------------------------------

/** Rows for the host-level checks (sudo, swap, modules, cgroup driver, NTP). */
export function hostRows(node: NodeSpec, f: HostFacts): CheckRow[] {
  const rows: CheckRow[] = [];
  const host = node.name;
  const container = f.container !== "none";
  if (f.sudo === "root") rows.push({ host, check: "sudo", status: "pass", detail: "connected as root" });
  else if (f.sudo === "ok") rows.push({ host, check: "sudo", status: "pass", detail: `${f.user}: sudo -n works` });
  else
    rows.push({
      host,
      check: "sudo",
      status: "fail",
      detail: `${f.user}: sudo -n asks for a password or is not allowed`,
      fix: `Allow passwordless sudo: echo '${f.user} ALL=(ALL) NOPASSWD: ALL' | sudo tee /etc/sudoers.d/${f.user} (check with visudo -cf), or connect as root.`,
    });

  if (f.swaps.length === 0) rows.push({ host, check: "swap", status: "pass", detail: "off" });
  else
    rows.push({
      host,
      check: "swap",
      status: "warn",
      detail: `on: ${f.swaps.map((s) => s.split(/\s+/)[0]).join(", ")}`,
      fix: "The prepare phase runs swapoff -a and comments swap out of /etc/fstab; to do it now: sudo swapoff -a and remove the swap line from /etc/fstab.",
    });

  for (const m of KERNEL_MODULES) {
    const state = f.modules.get(m) ?? "missing";
    if (state === "loaded" || state === "builtin")
      rows.push({ host, check: `module ${m}`, status: "pass", detail: state });
    else if (state === "loadable")
      rows.push({
        host,
        check: `module ${m}`,
        status: "pass",
        detail: "not loaded, loadable (the prepare phase loads it)",
      });
    else
      rows.push({
        host,
        check: `module ${m}`,
        status: container ? "warn" : "fail",
        detail: container
          ? `not loaded and not found; this host is a container (${f.container}), so the machine's kernel decides`
          : "not loaded and not found in this kernel's modules",
        fix: container
          ? `Load it on the machine that runs the container: modprobe ${m}.`
          : `Install the kernel's extra modules (e.g. linux-modules-extra-$(uname -r)) or use a kernel with ${m}; check with modinfo ${m}.`,
      });
  }

  const v2 = f.cgroupFs === "cgroup2fs";
  if (!f.systemd)
    rows.push({
      host,
      check: "cgroup driver",
      status: "fail",
      detail: `systemd is not init (cgroup fs ${f.cgroupFs}); the systemd cgroup driver needs it`,
      fix: "Boot the host with systemd as PID 1 (kubeadm's default cgroup driver is systemd).",
    });
  else if (v2) rows.push({ host, check: "cgroup driver", status: "pass", detail: "systemd, cgroup v2" });
  else
    rows.push({
      host,
      check: "cgroup driver",
      status: "warn",
      detail: `systemd, cgroup v1 (${f.cgroupFs})`,
      fix: "Kubernetes deprecated cgroup v1 in 1.31: boot with systemd.unified_cgroup_hierarchy=1 (or a distribution release that defaults to v2).",
    });

  if (f.ntp === "yes") rows.push({ host, check: "time sync", status: "pass", detail: "NTPSynchronized=yes" });
  else
    rows.push({
      host,
      check: "time sync",
      status: "warn",
      detail: `NTPSynchronized=${f.ntp}`,
      fix: "Enable time synchronization: sudo timedatectl set-ntp true (systemd-timesyncd) or install chrony.",
    });
  return rows;
}

export type PortState =
  | { kind: "free" }
  | { kind: "ours"; by: string }
  | { kind: "taken"; by: string }
  | { kind: "unknown"; why: string };

const describeProcs = (l: Listener[]) => {
  const procs = l.flatMap((x) => x.procs);
  if (procs.length === 0) return "an unknown process";
  return [...new Set(procs.map((p) => `${p.name} (pid ${p.pid})`))].join(", ");
};

/** Whether `need.port` is free on the host, held by the daemon meant to hold it, or by something else. */
export function portState(f: HostFacts, need: PortNeed): PortState {
  if (f.ssMissing) return { kind: "unknown", why: "ss is not installed (iproute2)" };
  const holders = f.listeners.filter((l) => l.port === need.port);
  if (holders.length === 0) return { kind: "free" };
  const procs = holders.flatMap((l) => l.procs);
  const ours = procs.length > 0 && procs.every((p) => need.owner.test(`${p.name} ${f.cmdlines.get(p.pid) ?? ""}`));
  return ours ? { kind: "ours", by: describeProcs(holders) } : { kind: "taken", by: describeProcs(holders) };
}

export function portRow(node: NodeSpec, need: PortNeed, state: PortState): CheckRow {
  const base = { host: node.name, check: `port ${need.port} free` };
  switch (state.kind) {
    case "free":
      return { ...base, status: "pass", detail: `free (for ${need.what})` };
    case "ours":
      return { ...base, status: "info", detail: `in use by ${state.by}: this cluster's ${need.what}, already running` };
    case "taken":
      return {
        ...base,
        status: "fail",
        detail: `in use by ${state.by}; ${need.what} needs it`,
        fix: `Stop or move that service off port ${need.port} on ${node.name} (see: sudo ss -ltnp 'sport = :${need.port}').`,
      };
    case "unknown":
      return {
        ...base,
        status: "fail",
        detail: `cannot tell: ${state.why}`,
        fix: "Install iproute2 (ss) on the host.",
      };
  }
}

const PROBE_WORDS: Record<ProbeResult, string> = {
  ok: "ok",
  timeout: "timed out (a firewall drops the packets)",
  refused: "refused (a firewall rejects it, or nothing listens)",
  unreachable: "no route to host",
  error: "connection error",
};

/** One row per (target, port): which peers reached it, which did not and why. */
export function reachRow(
  target: NodeSpec,
  need: PortNeed,
  results: { peer: NodeSpec; result: ProbeResult | undefined }[],
): CheckRow {
  const check = `port ${need.port} reachable`;
  const good = results.filter((r) => r.result === "ok").map((r) => r.peer.name);
  const bad = results.filter((r) => r.result !== "ok");
  if (bad.length === 0) return { host: target.name, check, status: "pass", detail: `from ${good.join(", ")}` };
  const detail = bad.map(
    (b) => `from ${b.peer.name}: ${b.result ? PROBE_WORDS[b.result] : "not tested (peer not connected)"}`,
  );
  // Only untested peers (their SSH failed, reported on their own row): not a finding about this port.
  const untestedOnly = bad.every((b) => b.result === undefined);
  return {
    host: target.name,
    check,
    status: untestedOnly ? "warn" : "fail",
    detail: `${detail.join("; ")}${good.length ? `; ok from ${good.join(", ")}` : ""}`,
    fix: `Allow TCP ${need.port} (${need.what}) into ${target.name} (${target.address}) from ${bad.map((b) => b.peer.address).join(", ")}: host firewall (nftables/iptables/ufw/firewalld) or the cloud security group.`,
  };
}

// ---- the whole run -----------------------------------------------------------------------------

export interface PreflightResult {
  rows: CheckRow[];
  /** Listeners started (and stopped), for tests: host -> ports. */
  listened: Map<string, number[]>;
}

export async function runPreflight(
  spec: ClusterSpec,
  sessions: Session[],
  opts: { log?: Progress } = {},
): Promise<PreflightResult> {
  const log = opts.log ?? progress;
  const rows: CheckRow[] = [];
  const plan = portPlan(spec);
  const byName = new Map(spec.nodes.map((n) => [n.name, n]));
  const live = sessions.filter((s): s is Session & { remote: Remote } => !!s.remote);
  for (const s of sessions) if (!s.remote) rows.push(sshRow(s));

  // 1. Facts and clocks, every host in parallel.
  const facts = new Map<string, HostFacts>();
  const clocks = new Map<string, ClockSample>();
  await Promise.all(
    live.map(async (s) => {
      log(s.node.name, "preflight", "reading ports, swap, modules, cgroups, time");
      const r = await s.remote.exec("bash -s", { stdin: FACTS_SCRIPT, timeoutMs: 30_000 });
      facts.set(s.node.name, parseFacts(r.stdout));
      const c = await sampleClock(s.remote);
      if (c) clocks.set(s.node.name, c);
    }),
  );

  // 2. Port state; which ports need a test listener (free and needed by peers).
  const states = new Map<string, PortState>();
  const toListen = new Map<string, number[]>();
  for (const s of live) {
    const f = facts.get(s.node.name)!;
    rows.push(...hostRows(s.node, f));
    for (const need of plan.get(s.node.name) ?? []) {
      const st = portState(f, need);
      states.set(`${s.node.name}:${need.port}`, st);
      rows.push(portRow(s.node, need, st));
      if (st.kind === "free" && need.from.length > 0)
        toListen.set(s.node.name, [...(toListen.get(s.node.name) ?? []), need.port]);
    }
  }

  // 3. Listeners up, probes from every peer, listeners down (also when a probe throws).
  const listeners = new Map<string, TestListener>();
  try {
    await Promise.all(
      [...toListen.entries()].map(async ([name, ports]) => {
        const s = live.find((x) => x.node.name === name)!;
        log(name, "preflight", `test listener on ${ports.join(", ")}`);
        listeners.set(name, await startTestListener(s.remote, ports));
      }),
    );
    const probeTargets = new Map<string, { address: string; port: number }[]>();
    const reachable = (target: string, port: number): boolean => {
      const st = states.get(`${target}:${port}`);
      if (!st || st.kind === "taken" || st.kind === "unknown") return false;
      if (st.kind === "ours") return true;
      const l = listeners.get(target);
      return !!l && !l.error && !l.failed.has(port);
    };
    for (const [target, needs] of plan) {
      for (const need of needs) {
        if (!reachable(target, need.port)) continue;
        for (const peer of need.from) {
          const list = probeTargets.get(peer) ?? [];
          list.push({ address: byName.get(target)!.address, port: need.port });
          probeTargets.set(peer, list);
        }
      }
    }
    const probes = new Map<string, Map<string, ProbeResult>>();
    await Promise.all(
      live.map(async (s) => {
        const targets = probeTargets.get(s.node.name);
        if (!targets?.length) return;
        log(s.node.name, "preflight", `connecting to ${targets.length} peer ports`);
        const r = await s.remote.exec("bash -s", { stdin: probeScript(targets), timeoutMs: 30_000 });
        probes.set(s.node.name, parseProbes(r.stdout));
      }),
    );
    for (const [target, needs] of plan) {
      const t = byName.get(target)!;
      if (!facts.has(target)) continue;
      const l = listeners.get(target);
      for (const need of needs) {
        if (need.from.length === 0) continue;
        const st = states.get(`${target}:${need.port}`);
        if (st?.kind === "taken" || st?.kind === "unknown") continue; // the "free" row already fails
        if (st?.kind === "free" && (!l || l.error || l.failed.has(need.port))) {
          const why =
            l?.error ?? (l?.failed.get(need.port) ? `could not listen: ${l.failed.get(need.port)}` : "no listener");
          rows.push({
            host: target,
            check: `port ${need.port} reachable`,
            status: "warn",
            detail: `cannot test reachability on ${target}: ${why}`,
            fix: `Install python3 (or perl) on ${target}, or check by hand that ${need.from.join(", ")} can connect to ${t.address}:${need.port}.`,
          });
          continue;
        }
        const results = need.from.map((peer) => ({
          peer: byName.get(peer)!,
          result: probes.get(peer)?.get(`${t.address}:${need.port}`),
        }));
        rows.push(reachRow(t, need, results));
      }
    }
  } finally {
    await Promise.all([...listeners.values()].map((l) => l.stop()));
  }

  rows.push(...skewRows(clocks));
  return { rows, listened: toListen };
}
