// keepalived.conf for one control plane: keepalived moves the VIP to a healthy node;
// haproxy on that node (haproxy.ts) spreads the connections over every apiserver.

import type { ClusterSpec, NodeSpec } from "../spec/schema.ts";
import { controlPlanes, vrrpPriority, vrrpWeights } from "../spec/topology.ts";
import { HAPROXY_STATE_FILE } from "./haproxy.ts";
import { LB_DRAIN_FILE } from "./lb-drain.ts";

export const KEEPALIVED_CONF = "/etc/keepalived/keepalived.conf";
export const CHECK_APISERVER_SCRIPT = "/etc/keepalived/check_apiserver.sh";
export const CHECK_VIP_HELD_SCRIPT = "/etc/keepalived/check_vip_held.sh";
/** Written 0600 by the phase script from `secret vrrp-password`; the only file holding the VRRP password. */
export const KEEPALIVED_SECRET_CONF = "/etc/keepalived/kubeadm-ha-secret.conf";

/** Where the rendered file points keepalived; tests point these at temporary files. */
export interface KeepalivedPaths {
  secretInclude: string;
  checkApiserver: string;
  checkVipHeld: string;
  haproxyState: string;
  drain: string;
}
export const DEFAULT_KEEPALIVED_PATHS: KeepalivedPaths = {
  secretInclude: KEEPALIVED_SECRET_CONF,
  checkApiserver: CHECK_APISERVER_SCRIPT,
  checkVipHeld: CHECK_VIP_HELD_SCRIPT,
  haproxyState: HAPROXY_STATE_FILE,
  drain: LB_DRAIN_FILE,
};

/** keepalived reads `#` and `!` anywhere on a line as the start of a comment. */
function noCommentChars(field: string, value: string): string {
  if (/[#!\s"]/.test(value)) throw new Error(`${field} "${value}" would be misread by keepalived (comment or space)`);
  return value;
}

export function renderKeepalivedConf(
  spec: ClusterSpec,
  node: NodeSpec,
  paths: KeepalivedPaths = DEFAULT_KEEPALIVED_PATHS,
): string {
  const cps = controlPlanes(spec);
  if (!cps.some((n) => n.name === node.name)) throw new Error(`${node.name} is not a control plane`);
  const { vip, interface: iface, prefix, virtualRouterId } = spec.controlPlaneEndpoint;
  const vrrp = spec.loadBalancer.vrrp;
  const { checkWeight, holderBonus } = vrrpWeights(spec);
  const priority = vrrpPriority(spec, node);
  for (const [field, value] of Object.entries(paths)) noCommentChars(field, value);
  noCommentChars("interface", iface);

  const peers = cps.filter((n) => n.name !== node.name).map((n) => n.address);
  const transport = vrrp.unicast
    ? `  # Unicast: multicast VRRP is dropped on most clouds and by some CNIs.
  unicast_src_ip ${node.address}
  unicast_peer {
${peers.map((p) => `    ${p}`).join("\n")}
  }`
    : "  # Multicast adverts to 224.0.0.18 (loadBalancer.vrrp.unicast: false).";
  // VRRPv3 has no authentication (keepalived ignores the block with a warning).
  const auth =
    vrrp.version === 2
      ? `  # The password lives only in ${paths.secretInclude} (0600, written from the secret store).
  authentication {
    auth_type PASS
    include ${paths.secretInclude}
  }`
      : "  # VRRPv3 has no authentication.";
  const sticky =
    holderBonus > 0
      ? `
# Succeeds while this node holds the VIP: the holder gains ${holderBonus}, so a node that comes back
# healthy does not take the VIP away again (each move cuts every open API stream).
# init_fail: no bonus until the VIP is really here; rise 2: a node that held the VIP for a
# split second during an election does not keep it.
vrrp_script chk_vip_held {
  script "${paths.checkVipHeld}"
  interval 1
  timeout 1
  rise 2
  fall 1
  init_fail
  weight ${holderBonus}
}
`
      : "";
  const trackSticky = holderBonus > 0 ? "\n    chk_vip_held" : "";

  return `# kubeadm-ha: keepalived for ${node.name}. Generated: edit the spec, not this file.
# Every node starts as BACKUP and the election picks the highest effective priority.
# No nopreempt: with it a backup never takes over from a master that still sends
# adverts, so a failing check could never move the VIP. Instead the holder gets a
# bonus (chk_vip_held), which keeps the VIP where it is when a node comes back.
# Priorities: distinct, descending, below 255 (255 = address owner, which ignores
# the tracked check: the runbook's VIP never left a node with a dead haproxy).

global_defs {
  router_id ${node.name}
  vrrp_version ${vrrp.version}
  # Check scripts run as root, and keepalived refuses scripts writable by others.
  enable_script_security
  script_user root
  # Two masters at once (a partition, a firewall that dropped VRRP but not the link) end when they
  # hear each other: the loser sends one more advert as it steps down, so the winner hears a
  # lower priority and re-sends its gratuitous ARPs (garp_lower_prio_* below). Without it the
  # loser went quiet at once, the winner sent nothing, and clients kept the loser's MAC for the VIP
  # until their ARP entry aged out: measured in the lab, every request through the VIP failed for
  # 5-53 s after such a partition healed.
  vrrp_higher_prio_send_advert true
}

# Fails when the local haproxy is dead or has no healthy apiserver behind it.
# interval 1 / fall 2: measured with these files on lab hosts, the VIP left a node whose
# check began failing after 1.4-1.6 s with VRRPv3 0.1 s adverts, 4.0-4.9 s with VRRPv2 1 s
# adverts (test/fixtures/render/vrrp-election-lab.sh). A failing node loses ${-checkWeight}, more than the priority spread plus
# the holder bonus, so it drops below every healthy peer; when every check fails all
# lose the same and the VIP stays put (a missing VIP would be worse than a sick one).
vrrp_script chk_apiserver {
  script "${paths.checkApiserver}"
  interval 1
  timeout 2
  fall 2
  rise 2
  weight ${checkWeight}
}
${sticky}
# ${paths.haproxyState} holds 0 while haproxy runs and 1 once its process ended (written by
# systemd, see the haproxy drop-in): a dead haproxy costs the check weight at once, without
# waiting for the check script's interval x fall (measured: last failed request 1.8 s -> 0.56 s).
# init_file 0: until systemd first writes it, the check script alone speaks for haproxy.
# Its directory must exist when keepalived starts, or keepalived drops the file for good:
# a tmpfiles.d entry creates it at every boot. (track_file: the vrrp_-prefixed name is deprecated.)
track_file haproxy_state {
  file "${paths.haproxyState}"
  weight ${checkWeight}
  init_file 0
}

# A planned stop drains first (kubeadm-ha-lb-drain, run by the units' ExecStop): 1 in
# ${paths.drain} costs the check weight, so a healthy peer takes the VIP while this node still
# holds it and serves; keepalived's own stop would send priority 0 and drop the VIP at once,
# failing the requests in flight. (keepalived clamps an effective priority to 1-254.)
track_file lb_drain {
  file "${paths.drain}"
  weight ${checkWeight}
  init_file 0
}

vrrp_instance kube_apiserver {
  state BACKUP
  interface ${iface}
  virtual_router_id ${virtualRouterId}
  priority ${priority}
  advert_int ${vrrp.advertIntervalSeconds}
${transport}
${auth}
  virtual_ipaddress {
    ${vip}/${prefix ?? 32} dev ${iface}
  }
  track_script {
    chk_apiserver${trackSticky}
  }
  track_file {
    haproxy_state
    lb_drain
  }
  # Gratuitous ARP: 5 at once on takeover, again 1 s later (default 5 s) so switches and
  # neighbours that missed the first burst learn the move quickly, and every 60 s after.
  garp_master_delay 1
  garp_master_repeat 5
  garp_master_refresh 60
  # The same when a master hears a lower priority (another node that thought it was master).
  garp_lower_prio_delay 1
  garp_lower_prio_repeat 5
}
`;
}
