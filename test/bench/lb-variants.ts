// The spec variants the load-balancer benchmarks (failover.ts, soak.ts) compare, and the
// bench-made keepalived edits some of them add on the lab hosts.
// Since these measurements the schema defaults ARE "candidate+track_file" (VRRPv3 0.1 s,
// connect 200ms, and the haproxy state file rendered by lib/render); "defaults" measures them.
import type { ClusterSpec } from "../../lib/spec/schema.ts";

const tuned = (s: ClusterSpec) => {
  s.loadBalancer.vrrp.version = 3;
  s.loadBalancer.vrrp.advertIntervalSeconds = 0.1;
};
// tuned + a short connect timeout: with 1 s, a connection the new holder's haproxy sends to a
// blackholed backend waits 1 s before its retry goes elsewhere (the client has given up by
// then); with 200 ms the retry lands well inside the client's patience.
const tunedConnect200ms = (s: ClusterSpec) => {
  tuned(s);
  s.loadBalancer.haproxy.timeouts.connect = "200ms";
};

export const MUTATE: Record<string, (s: ClusterSpec) => void> = {
  defaults: () => {},
  tuned,
  "tuned+connect200ms": tunedConnect200ms,
  // "candidate" = tuned+connect200ms plus TRACK_PROCESS_EDIT of the deployed keepalived.conf:
  // keepalived also tracks the haproxy process itself (vrrp_track_process: the kernel's process
  // events tell it the moment haproxy exits) with the check script's weight.
  candidate: tunedConnect200ms,
  // tuned+connect200ms plus TRACK_FILE_EDIT: systemd writes haproxy's state to a file when haproxy
  // starts (0) and whenever its process ends, crash or SIGKILL included (1), and keepalived watches
  // that file (vrrp_track_file, inotify). Needs no kernel process events, which containers lack.
  "candidate+track_file": tunedConnect200ms,
};

export const TRACK_PROCESS_EDIT = `set -e
f=/etc/keepalived/keepalived.conf
grep -q track_haproxy "$f" && exit 0
w=$(awk '/^vrrp_script chk_apiserver/{f=1} f && $1 == "weight" {print $2; exit}' "$f")
sed -i "/^vrrp_instance/i vrrp_track_process track_haproxy {\\n  process haproxy\\n  weight $w\\n}\\n" "$f"
sed -i "/^  track_script {/i \\  track_process {\\n    track_haproxy\\n  }" "$f"
keepalived -t -f "$f"
systemctl reload keepalived`;

// Bench-made edit for "candidate+track_file" (see MUTATE). Heredoc-free on purpose.
export const TRACK_FILE_EDIT = `set -e
mkdir -p /etc/systemd/system/haproxy.service.d /run/kubeadm-ha
printf '%s\\n' '[Service]' "ExecStartPost=/bin/sh -c 'echo 0 > /run/kubeadm-ha/haproxy.state'" "ExecStopPost=/bin/sh -c 'echo 1 > /run/kubeadm-ha/haproxy.state'" > /etc/systemd/system/haproxy.service.d/kha-bench-state.conf
systemctl daemon-reload
if systemctl is-active --quiet haproxy; then echo 0 > /run/kubeadm-ha/haproxy.state; else echo 1 > /run/kubeadm-ha/haproxy.state; fi
f=/etc/keepalived/keepalived.conf
grep -q haproxy_state "$f" && exit 0
w=$(awk '/^vrrp_script chk_apiserver/{f=1} f && $1 == "weight" {print $2; exit}' "$f")
sed -i "/^vrrp_instance/i vrrp_track_file haproxy_state {\\n  file /run/kubeadm-ha/haproxy.state\\n  weight $w\\n}\\n" "$f"
sed -i "/^  track_script {/i \\  track_file {\\n    haproxy_state\\n  }" "$f"
keepalived -t -f "$f"
systemctl reload keepalived`;
