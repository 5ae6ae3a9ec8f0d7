// Planned moves of the VIP: before keepalived or haproxy stops on the node that holds the VIP,
// the VIP moves to a healthy peer while both still run, so no client sees the stop. Used by the
// systemd units' ExecStop (a plain `systemctl restart haproxy` drains), by the load-balancer
// phase before the kubelet restarts a changed static pod, and by an operator by hand.
import type { ClusterSpec } from "../spec/schema.ts";
import { controlPlanes, vrrpWeights } from "../spec/topology.ts";
import { shq } from "./phase-script.ts";

export const LB_DRAIN_SCRIPT = "/usr/local/sbin/kubeadm-ha-lb-drain";
/** Next to haproxy's state file (the same runtime directory). keepalived tracks it (track_file lb_drain): 1 lowers this node below every healthy peer, 0 gives the priority back. */
export const LB_DRAIN_FILE = "/run/kubeadm-ha/drain";
/** Shell function for the host scripts that wait on a condition: polls every 0.1 s. */
export const WAIT_FOR_FN = `# wait_for SECONDS COMMAND...: true once COMMAND succeeds, false after SECONDS.
wait_for() {
  local end=$((SECONDS + $1))
  shift
  until "$@"; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.1
  done
}`;
/** Shell function for the host scripts that act only on the VIP holder ($VIP and $IFACE set). */
export const HOLDS_VIP_FN = `holds_vip() { ip -o -4 addr show dev "$IFACE" 2>/dev/null | grep -qF " inet $VIP/"; }`;

/** The systemd mode's keepalived drop-in: drain before keepalived stops, priority back once it runs. */
export const KEEPALIVED_DROPIN = "/etc/systemd/system/keepalived.service.d/kubeadm-ha.conf";

/** ExecStop/ExecStartPost lines for a unit's drop-in ("-": a failed drain never fails the unit). */
export const DRAIN_UNIT_LINES = `# A planned stop or restart first moves the VIP to a healthy peer (${LB_DRAIN_SCRIPT};
# nothing to do on a node without the VIP), and the node gets its priority back once it runs.
ExecStop=-${LB_DRAIN_SCRIPT} drain
ExecStartPost=-${LB_DRAIN_SCRIPT} undrain
`;

export function renderKeepalivedDropin(): string {
  return `# kubeadm-ha: keepalived stops only after the VIP has left this node.
[Service]
${DRAIN_UNIT_LINES}`;
}

export function renderLbDrainScript(spec: ClusterSpec): string {
  const { vip, interface: iface, port } = spec.controlPlaneEndpoint;
  const alone = controlPlanes(spec).length < 2;
  // chk_vip_held (keepalived.ts): interval 1, fall 1 here, rise 2 on the new holder. Until both
  // have counted, this node would still outrank the new holder once its priority is back, and
  // "undrain" would pull the VIP back (seen in the lab: a second move). 2 s + 1 s of margin.
  const settle = vrrpWeights(spec).holderBonus > 0 ? 3 : 0;
  return `#!/usr/bin/env bash
# kubeadm-ha: move the VIP off this control plane before a planned stop. Generated: edit the spec, not this file.
#
#   kubeadm-ha-lb-drain drain          move the VIP to a healthy peer and wait until it answers there
#                                      (nothing to do when this node does not hold the VIP)
#   kubeadm-ha-lb-drain undrain        give this node its VRRP priority back; the VIP stays where it is
#                                      (the holder bonus), so this costs no second move
#   kubeadm-ha-lb-drain run -- CMD...  drain, run CMD (e.g. a restart), wait until haproxy here answers, undrain
#
# Why: keepalived stopping on the holder sends priority 0 and drops the VIP at once; the requests
# in flight and those sent before the backup's gratuitous ARP fail. Lowering the priority instead
# (keepalived tracks ${LB_DRAIN_FILE}, a value of 1 costs the check weight) makes a peer take
# over while this node still holds the VIP and still serves, which is an ordinary election.
# systemd's ExecStop runs "drain" before keepalived or haproxy stop, so a plain
# "systemctl restart haproxy" is a planned move.
set -euo pipefail
VIP=${shq(vip)}
IFACE=${shq(iface)}
PORT=${port}
FLAG=${shq(LB_DRAIN_FILE)}
TIMEOUT="\${KUBEADM_HA_DRAIN_TIMEOUT:-15}"

say() { printf 'kubeadm-ha-lb-drain: %s\\n' "$*" >&2; }
${HOLDS_VIP_FN}
lost_vip() { ! holds_vip; }
vip_answers() { curl -fsk --noproxy '*' --max-time 1 -o /dev/null "https://$VIP:$PORT/healthz"; }
local_answers() { curl -fsk --noproxy '*' --max-time 1 -o /dev/null "https://127.0.0.1:$PORT/readyz"; }
set_flag() {
  mkdir -p "\${FLAG%/*}"
  echo "$1" >"$FLAG"
}
${WAIT_FOR_FN}

drain() {
  if ! holds_vip; then
    say "this node does not hold $VIP: nothing to move"
    return 0
  fi
${
  alone
    ? `  say "one control plane: there is no peer to move $VIP to"
  return 0`
    : `  if ! pgrep -x keepalived >/dev/null; then
    say "keepalived is not running here: nothing can move $VIP"
    return 0
  fi
  set_flag 1
  say "lowered this node's VRRP priority; waiting for a peer to take $VIP"
  if ! wait_for "$TIMEOUT" lost_vip; then
    say "WARNING: $VIP is still here after \${TIMEOUT}s (no healthy peer?); going on"
    return 0
  fi
  if wait_for "$TIMEOUT" vip_answers; then
    say "$VIP moved to a peer and answers there"
    # Until the holder bonus has left this node and reached the new holder, giving the priority
    # back would move the VIP back: the drain ends only after that.
    sleep ${settle}
  else
    say "WARNING: $VIP moved but does not answer https://$VIP:$PORT/healthz after \${TIMEOUT}s; going on"
  fi`
}
}

undrain() {
  set_flag 0
}

case "\${1:-}" in
  drain) drain ;;
  undrain) undrain ;;
  run)
    shift
    [ "\${1:-}" != "--" ] || shift
    [ "$#" -gt 0 ] || { say "usage: kubeadm-ha-lb-drain run -- COMMAND..."; exit 2; }
    drain
    status=0
    "$@" || status=$?
    wait_for 60 local_answers || say "WARNING: haproxy on this node does not answer https://127.0.0.1:$PORT/readyz after 60 s"
    undrain
    exit "$status"
    ;;
  *)
    say "usage: kubeadm-ha-lb-drain drain | undrain | run -- COMMAND..."
    exit 2
    ;;
esac
`;
}
