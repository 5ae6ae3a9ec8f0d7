// The faults `bun run chaos` injects, as shell scripts run over the SSH session that drives
// the node. Each is reversible twice over: the command restores it explicitly, and a timer
// on the host (systemd-run, or a detached sleep without systemd) restores it on its own if
// the driving connection is lost or the command is killed.
import { sq } from "../remote/ssh.ts";

/** nft table name (in the inet and arp families) that holds the isolation rules. */
export const CHAOS_TABLE = "kubeadm_ha_chaos";
/** Transient systemd unit (timer + service) that undoes a fault after the safety timeout. */
export const ROLLBACK_UNIT = "kubeadm-ha-chaos-rollback";
/** Fallback rollback process's PID file and the list of units stop mode stopped. */
const STATE_DIR = "/run/kubeadm-ha-chaos";

/** The SSH connection as the node sees it ($SSH_CONNECTION: client ip, client port, server ip, server port). */
export interface SshPeer {
  clientIp: string;
  clientPort: number;
  serverIp: string;
  serverPort: number;
}

export function parseSshConnection(text: string): SshPeer | undefined {
  const f = text.trim().split(/\s+/);
  if (f.length !== 4) return undefined;
  const [clientIp, cp, serverIp, sp] = f as [string, string, string, string];
  const clientPort = Number(cp);
  const serverPort = Number(sp);
  if (!/^[0-9a-fA-F.:]+$/.test(clientIp) || !/^[0-9a-fA-F.:]+$/.test(serverIp)) return undefined;
  if (!Number.isInteger(clientPort) || !Number.isInteger(serverPort)) return undefined;
  return { clientIp, clientPort, serverIp, serverPort };
}

/** Shell that arms the rollback timer: after `seconds`, run `undo` (a shell command) as root. */
function armRollback(undo: string, seconds: number): string {
  return `mkdir -p ${STATE_DIR}
systemctl stop ${ROLLBACK_UNIT}.timer >/dev/null 2>&1 || true
systemctl reset-failed ${ROLLBACK_UNIT}.service ${ROLLBACK_UNIT}.timer >/dev/null 2>&1 || true
if command -v systemd-run >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  # shellcheck disable=SC2016 # expands on the timer's shell, later
  systemd-run --quiet --unit=${ROLLBACK_UNIT} --on-active=${seconds}s --timer-property=AccuracySec=100ms /bin/sh -c ${sq(undo)}
  echo "rollback: systemd timer ${ROLLBACK_UNIT}.timer in ${seconds} s"
else
  # shellcheck disable=SC2016 # expands in the background shell, later
  setsid nohup /bin/sh -c ${sq(`sleep ${seconds}; ${undo}`)} >/dev/null 2>&1 &
  echo $! > ${STATE_DIR}/rollback.pid
  echo "rollback: background process $! in ${seconds} s"
fi`;
}

/** Shell that disarms the rollback timer (the explicit restore ran). */
const disarmRollback = `systemctl stop ${ROLLBACK_UNIT}.timer >/dev/null 2>&1 || true
systemctl reset-failed ${ROLLBACK_UNIT}.service ${ROLLBACK_UNIT}.timer >/dev/null 2>&1 || true
if [ -f ${STATE_DIR}/rollback.pid ]; then kill "$(cat ${STATE_DIR}/rollback.pid)" 2>/dev/null || true; rm -f ${STATE_DIR}/rollback.pid; fi`;

const undoIsolation = `nft delete table inet ${CHAOS_TABLE} 2>/dev/null || true; nft delete table arp ${CHAOS_TABLE} 2>/dev/null || true; nft delete table netdev ${CHAOS_TABLE} 2>/dev/null || true`;

/** Preflight for isolate mode: nft present and usable. Prints "ok" or a reason. */
export const ISOLATE_PREFLIGHT = `if ! command -v nft >/dev/null 2>&1; then echo "nft is not installed (apt-get install nftables)"; exit 0; fi
if ! nft list tables >/dev/null 2>&1; then echo "nft cannot list tables (not root, or no nf_tables in the kernel)"; exit 0; fi
echo ok`;

/**
 * Cut the node off the network except the one SSH connection `peer` (and loopback): every
 * other IPv4/IPv6 packet in and out is dropped, and ARP too, except between this node and the
 * next hop toward the driver — otherwise the node would keep answering ARP for the VIP it may
 * still carry and clients would be sent into the void. Rules sit before conntrack (priority
 * -400) so nothing established slips through.
 */
export function isolateScript(peer: SshPeer, rollbackSeconds: number, vipInterface?: string): string {
  const v6 = peer.clientIp.includes(":");
  const fam = v6 ? "ip6" : "ip";
  const inRule = `${fam} saddr ${peer.clientIp} tcp sport ${peer.clientPort} ${fam} daddr ${peer.serverIp} tcp dport ${peer.serverPort} accept`;
  const outRule = `${fam} saddr ${peer.serverIp} tcp sport ${peer.serverPort} ${fam} daddr ${peer.clientIp} tcp dport ${peer.clientPort} accept`;
  const arp = v6
    ? "" // IPv6 neighbour discovery is ICMPv6: the inet table above already drops all but the session
    : `
table arp ${CHAOS_TABLE} {
  chain input {
    type filter hook input priority 0; policy drop;
    arp saddr ip $nexthop arp daddr ip ${peer.serverIp} accept
  }
  chain output {
    type filter hook output priority 0; policy drop;
    arp saddr ip ${peer.serverIp} arp daddr ip $nexthop accept
  }
}`;
  return `set -eu
${
  v6
    ? ""
    : `nexthop=$(ip -4 route get ${peer.clientIp} | sed -n 's/.* via \\([0-9.]*\\).*/\\1/p' | head -n 1)
[ -n "$nexthop" ] || nexthop=${peer.clientIp}`
}
${undoIsolation}
${armRollback(undoIsolation, rollbackSeconds)}
nft -f - <<EOF
table inet ${CHAOS_TABLE} {
  chain input {
    type filter hook input priority -400; policy drop;
    iif "lo" accept
    ${inRule}
  }
  chain output {
    type filter hook output priority -400; policy drop;
    oif "lo" accept
    ${outRule}
  }
}${arp}
EOF
${
  v6
    ? ""
    : `# keepalived sends its gratuitous ARP for the VIP through a packet socket, which skips the
# arp table above: without this an isolated node that still thinks it is MASTER keeps pulling
# the VIP's traffic to itself. The netdev egress hook (Linux 5.16+) sees those frames too.
devs=$( { ip -o -4 route get ${peer.clientIp} | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p'; ${vipInterface ? `echo ${sq(vipInterface)}` : "true"}; } | sort -u)
{
  echo "table netdev ${CHAOS_TABLE} {"
  i=0
  for d in $devs; do
    i=$((i + 1))
    echo "  chain egress$i { type filter hook egress device \\"$d\\" priority 0; policy accept;"
    echo "    meta protocol arp arp saddr ip != ${peer.serverIp} drop"
    echo "    meta protocol arp arp daddr ip != $nexthop drop"
    echo "  }"
  done
  echo "}"
} > /run/kubeadm-ha-chaos/netdev.nft
if ! nft -f /run/kubeadm-ha-chaos/netdev.nft 2>/run/kubeadm-ha-chaos/netdev.err; then
  echo "warning: no netdev egress hook here ($(head -n 1 /run/kubeadm-ha-chaos/netdev.err)): keepalived's gratuitous ARP can still leave this node" >&2
fi`
}
echo "isolated: only ${peer.clientIp}:${peer.clientPort} <-> :${peer.serverPort} passes"
`;
}

export const RESTORE_ISOLATION = `${disarmRollback}
${undoIsolation}
if nft list tables 2>/dev/null | grep -q ${CHAOS_TABLE}; then echo "chaos table still present" >&2; exit 1; fi
echo restored`;

/** Default units stop mode stops, in this order (kubelet first, so it does not restart what follows). */
export const DEFAULT_STOP_UNITS = ["kubelet", "containerd", "etcd"];

/**
 * Stop the node's Kubernetes services: the listed units that exist and run (their list is
 * saved for the restore), and — when crictl exists — every running container first, since
 * containers outlive a stopped containerd (its shims keep them running).
 */
export function stopScript(units: string[], rollbackSeconds: number): string {
  const list = units.map(sq).join(" ");
  const undo = `tac ${STATE_DIR}/stopped 2>/dev/null | while read -r u; do systemctl start "$u"; done; rm -f ${STATE_DIR}/stopped`;
  return `set -eu
mkdir -p ${STATE_DIR}
: > ${STATE_DIR}/stopped.new
for u in ${list}; do
  if systemctl is-active --quiet "$u" 2>/dev/null; then echo "$u" >> ${STATE_DIR}/stopped.new; fi
done
mv ${STATE_DIR}/stopped.new ${STATE_DIR}/stopped
${armRollback(undo, rollbackSeconds)}
while read -r u; do
  if [ "$u" = containerd ] && command -v crictl >/dev/null 2>&1; then
    crictl ps -q 2>/dev/null | xargs -r crictl stop --timeout 10 >/dev/null 2>&1 || true
  fi
  systemctl stop "$u"
done < ${STATE_DIR}/stopped
echo "stopped: $(tr '\\n' ' ' < ${STATE_DIR}/stopped)"
`;
}

export const RESTORE_STOPPED = `${disarmRollback}
set -eu
if [ -f ${STATE_DIR}/stopped ]; then
  tac ${STATE_DIR}/stopped | while read -r u; do systemctl start "$u"; done
  rm -f ${STATE_DIR}/stopped
fi
echo restored`;
