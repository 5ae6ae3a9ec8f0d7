// Keeps etcd's leader off the control plane that holds the VIP. When the holder fails, the VIP
// moves in ~0.3 s, but if that node also led etcd, every apiserver's /healthz (a linearizable read)
// fails until the survivors elect a leader, 1-2 s by etcd's default election timeout: measured in
// the lab, every link-down failover over 1 s had the holder as etcd leader. Two failures at once
// become one: the holder's loss is a VIP move only. A host service (both keepalived modes: the
// kubelet runs on systemd, and the etcd client certificate stays on the host, out of the pods).
import type { ClusterSpec } from "../spec/schema.ts";
import { controlPlanes } from "../spec/topology.ts";
import { HOLDS_VIP_FN } from "./lb-drain.ts";
import { shq } from "./phase-script.ts";

export const ETCD_LEADER_AWAY_SCRIPT = "/usr/local/sbin/kubeadm-ha-etcd-leader-away";
export const ETCD_LEADER_AWAY_UNIT = "/etc/systemd/system/kubeadm-ha-etcd-leader-away.service";
export const ETCD_LEADER_AWAY_SERVICE = "kubeadm-ha-etcd-leader-away.service";

/** Only where there is another member to lead: three control planes or more. */
export const keepsEtcdLeaderAway = (spec: ClusterSpec): boolean =>
  spec.loadBalancer.mode !== "kube-vip" && controlPlanes(spec).length >= 3;

export function renderEtcdLeaderAwayScript(spec: ClusterSpec): string {
  const { vip, interface: iface } = spec.controlPlaneEndpoint;
  return `#!/usr/bin/env bash
# kubeadm-ha: keep the etcd leader off the control plane that holds the VIP. Generated: edit the spec, not this file.
#
#   kubeadm-ha-etcd-leader-away watch   check every second (the systemd service)
#   kubeadm-ha-etcd-leader-away once    one check; moves the leadership when this node holds the
#                                        VIP and leads etcd (exit 0 also when there is nothing to do)
#
# Why: a failed VIP holder that also led etcd costs a VIP move AND an etcd election (1-2 s in which
# no apiserver answers /healthz); with the leader elsewhere it costs the VIP move alone. The move is
# etcd's own leadership transfer (etcdctl move-leader) to the most up-to-date healthy member, over
# etcd's HTTP gateway on the local client port with kubeadm's healthcheck client certificate; a
# leader is moved only when seen on the holder twice in a row, at most once per 10 s.
set -uo pipefail
VIP=${shq(vip)}
IFACE=${shq(iface)}
ETCD="\${KUBEADM_HA_ETCD_ENDPOINT:-https://127.0.0.1:2379}"
PKI="\${KUBEADM_HA_ETCD_PKI:-/etc/kubernetes/pki/etcd}"

say() { printf 'kubeadm-ha-etcd-leader-away: %s\\n' "$*"; }
${HOLDS_VIP_FN}
# etcd_post BASE-URL PATH JSON [SECONDS]: a gateway call; the body on stdout, false when it fails.
etcd_post() {
  curl -fsS --noproxy '*' --max-time "\${4:-1}" --cacert "$PKI/ca.crt" --cert "$PKI/healthcheck-client.crt" \\
    --key "$PKI/healthcheck-client.key" -X POST -d "$3" "$1$2" 2>/dev/null
}
# num JSON FIELD: the first "FIELD":"digits" (the gateway writes 64-bit numbers as strings).
num() { grep -o "\\"$2\\":\\"[0-9]*\\"" <<<"$1" | head -n1 | grep -o '[0-9][0-9]*' || true; }

# move_away MY-ID MY-INDEX: leadership to the started voting member with the highest raft index.
move_away() {
  local members m id url st idx best="" best_name="" best_idx=-1
  members="$(etcd_post "$ETCD" /v3/cluster/member/list '{}')" || return 1
  # One object per member; a learner cannot lead, and a member never started has no client URL.
  while read -r m; do
    id="$(num "$m" ID)"
    url="$(grep -o '"clientURLs":\\["[^"]*' <<<"$m" | head -n1 | sed 's/.*\\["//')"
    if [ -z "$id" ] || [ -z "$url" ] || [ "$id" = "$1" ] || grep -q '"isLearner":true' <<<"$m"; then continue; fi
    st="$(etcd_post "$url" /v3/maintenance/status '{}')" || continue
    idx="$(num "$st" raftIndex)"
    if [ -n "$idx" ] && [ "$idx" -gt "$best_idx" ]; then
      best="$id"
      best_idx="$idx"
      best_name="$(grep -o '"name":"[^"]*' <<<"$m" | head -n1 | sed 's/.*:"//')"
    fi
  done < <(grep -o '{"ID":"[0-9]*"[^}]*}' <<<"$members")
  if [ -z "$best" ]; then
    say "this node holds $VIP and leads etcd; no other member answers, so the leadership stays"
    return 1
  fi
  if etcd_post "$ETCD" /v3/maintenance/transfer-leadership "{\\"targetID\\":\\"$best\\"}" 5 >/dev/null; then
    say "this node holds $VIP: moved the etcd leadership to $best_name (raft index $best_idx, here $2)"
  else
    say "this node holds $VIP: moving the etcd leadership to $best_name failed; trying again later"
    return 1
  fi
}

SEEN=0
LAST_MOVE=-10
check() {
  local st me
  if ! holds_vip || [ ! -r "$PKI/healthcheck-client.key" ]; then
    SEEN=0
    return 0
  fi
  st="$(etcd_post "$ETCD" /v3/maintenance/status '{}')" || { SEEN=0; return 0; }
  me="$(num "$st" member_id)"
  if [ -z "$me" ] || [ "$me" != "$(num "$st" leader)" ]; then
    SEEN=0
    return 0
  fi
  SEEN=$((SEEN + 1))
  # Twice in a row (a leader seen once may be mid-election), and never more often than every 10 s.
  if [ "$SEEN" -ge "$1" ] && [ $((SECONDS - LAST_MOVE)) -ge 10 ]; then
    LAST_MOVE=$SECONDS
    SEEN=0
    move_away "$me" "$(num "$st" raftIndex)" || true
  fi
}

case "\${1:-}" in
  watch)
    say "watching: the etcd leader is moved off the node that holds $VIP"
    while :; do
      check 2
      sleep 1
    done
    ;;
  once) check 1 ;;
  *)
    echo "usage: $0 watch|once" >&2
    exit 2
    ;;
esac
`;
}

export function renderEtcdLeaderAwayUnit(): string {
  return `# kubeadm-ha: keep the etcd leader off the VIP holder (${ETCD_LEADER_AWAY_SCRIPT}). Generated: edit the spec, not this file.
[Unit]
Description=kubeadm-ha: keep the etcd leader off the control plane that holds the VIP
After=network-online.target

[Service]
ExecStart=${ETCD_LEADER_AWAY_SCRIPT} watch
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
`;
}
