// The load-balancer phase on one control plane: keepalived holds the VIP, haproxy
// behind it spreads connections over the apiservers (seed sections 3-5).
import type { ClusterSpec, NodeSpec } from "../spec/schema.ts";
import { renderCheckApiserverScript, renderCheckVipHeldScript } from "./check-apiserver.ts";
import {
  ETCD_LEADER_AWAY_SCRIPT,
  ETCD_LEADER_AWAY_SERVICE,
  ETCD_LEADER_AWAY_UNIT,
  keepsEtcdLeaderAway,
  renderEtcdLeaderAwayScript,
  renderEtcdLeaderAwayUnit,
} from "./etcd-leader-away.ts";
import {
  emptyServerStateCommand,
  HAPROXY_CFG,
  HAPROXY_DROPIN,
  HAPROXY_ENV_FILE,
  HAPROXY_SERVER_STATE_FILE,
  RUN_DIR_TMPFILES,
  renderHaproxyCfg,
  renderHaproxyDropin,
  renderRunDirTmpfiles,
  STATS_PASSWORD_ENV,
  saveServerStateCommand,
} from "./haproxy.ts";
import {
  CHECK_APISERVER_SCRIPT,
  CHECK_VIP_HELD_SCRIPT,
  KEEPALIVED_CONF,
  KEEPALIVED_SECRET_CONF,
  renderKeepalivedConf,
} from "./keepalived.ts";
import { KUBE_VIP_MANIFEST, renderKubeVipManifest } from "./kube-vip.ts";
import {
  KEEPALIVED_DROPIN,
  LB_DRAIN_FILE,
  LB_DRAIN_SCRIPT,
  renderKeepalivedDropin,
  renderLbDrainScript,
} from "./lb-drain.ts";
import { phaseScript, shq } from "./phase-script.ts";
import {
  HAPROXY_MANIFEST,
  HAPROXY_RUN_SCRIPT,
  KEEPALIVED_MANIFEST,
  MANIFESTS_DIR,
  renderHaproxyManifest,
  renderHaproxyRunScript,
  renderKeepalivedManifest,
} from "./static-pods.ts";
import type { RenderedFile, Step } from "./types.ts";

export function loadBalancerFiles(spec: ClusterSpec, node: NodeSpec): RenderedFile[] {
  const staticPod = spec.loadBalancer.mode === "static-pod";
  const files: RenderedFile[] = [
    { path: KEEPALIVED_CONF, content: renderKeepalivedConf(spec, node), mode: "0644" },
    { path: CHECK_APISERVER_SCRIPT, content: renderCheckApiserverScript(spec, node), mode: "0755" },
    { path: HAPROXY_CFG, content: renderHaproxyCfg(spec, node), mode: "0644" },
    { path: LB_DRAIN_SCRIPT, content: renderLbDrainScript(spec), mode: "0755" },
    // systemd starts the daemons, or the kubelet does (the state directory is the pods' DirectoryOrCreate volume).
    ...(staticPod
      ? [
          { path: HAPROXY_RUN_SCRIPT, content: renderHaproxyRunScript(), mode: "0755" },
          // 0600 as kubeadm writes its own manifests.
          { path: KEEPALIVED_MANIFEST, content: renderKeepalivedManifest(spec), mode: "0600" },
          { path: HAPROXY_MANIFEST, content: renderHaproxyManifest(spec), mode: "0600" },
        ]
      : [
          { path: HAPROXY_DROPIN, content: renderHaproxyDropin(), mode: "0644" },
          { path: KEEPALIVED_DROPIN, content: renderKeepalivedDropin(), mode: "0644" },
          { path: RUN_DIR_TMPFILES, content: renderRunDirTmpfiles(), mode: "0644" },
        ]),
  ];
  if (spec.loadBalancer.vrrp.stickyVip) {
    files.splice(2, 0, { path: CHECK_VIP_HELD_SCRIPT, content: renderCheckVipHeldScript(spec, node), mode: "0755" });
  }
  if (keepsEtcdLeaderAway(spec))
    files.push(
      { path: ETCD_LEADER_AWAY_SCRIPT, content: renderEtcdLeaderAwayScript(spec), mode: "0755" },
      { path: ETCD_LEADER_AWAY_UNIT, content: renderEtcdLeaderAwayUnit(), mode: "0644" },
    );
  return files;
}

function body(spec: ClusterSpec, files: RenderedFile[]): string {
  const staticPod = spec.loadBalancer.mode === "static-pod";
  const { vip, port, interface: iface } = spec.controlPlaneEndpoint;
  const vrrp2 = spec.loadBalancer.vrrp.version === 2;
  const keepalivedInputs = [KEEPALIVED_CONF, ...(vrrp2 ? [KEEPALIVED_SECRET_CONF] : [])]
    .concat(files.filter((f) => f.path.startsWith("/etc/keepalived/") && f.path !== KEEPALIVED_CONF).map((f) => f.path))
    .map(shq)
    .join(" ");
  const vrrpSecret = vrrp2
    ? `vrrp_password="$(secret vrrp-password)"
# keepalived reads '#' and '!' as comments and VRRPv2 keeps 8 characters: refuse rather than truncate.
case "$vrrp_password" in
  "" | *[!A-Za-z0-9._+=:@%^-]*) die "the vrrp-password secret is empty or has characters keepalived would misread; rotate it with: bun run secrets --rotate vrrp-password" ;;
esac
[ "\${#vrrp_password}" -le 8 ] || die "the vrrp-password secret is longer than 8 characters (VRRPv2 would truncate it); rotate it with: bun run secrets --rotate vrrp-password"
write_secret_file ${shq(KEEPALIVED_SECRET_CONF)} < <(printf 'auth_pass %s\\n' "$vrrp_password")
unset vrrp_password`
    : ": # VRRPv3 has no authentication: no password file";

  return `LB_PORT=${port}
VIP=${shq(vip)}
IFACE=${shq(iface)}

# Write stdin to a 0600 file only when it differs, so a re-run changes (and restarts) nothing.
# Feed it by redirection, never a pipe: a function at the end of a pipeline runs in a subshell,
# and its CHANGED_FILES entry (what makes a rotated password restart haproxy) would be lost.
write_secret_file() {
  local dest="$1" tmp
  install -d -m 0755 "$(dirname "$dest")"
  tmp="$(mktemp "$dest.XXXXXX")"
  cat >"$tmp"
  if [ -f "$dest" ] && cmp -s "$tmp" "$dest" && [ "$(stat -c %a "$dest")" = 600 ]; then
    rm -f -- "$tmp"
    return 0
  fi
  chmod 0600 "$tmp"
  keep_previous "$dest"
  mv -f -- "$tmp" "$dest"
  CHANGED_FILES="$CHANGED_FILES $dest"
  printf '[kubeadm-ha] %s %s: installed %s (0600)\\n' "$NODE" "$PHASE" "$dest"
}
# The running haproxy's view of its servers, for the process a reload or restart starts (haproxy.ts).
save_server_state() {
  ${saveServerStateCommand()}
}
empty_server_state() {
  ${emptyServerStateCommand()}
}
any_changed() {
  local f
  for f in "$@"; do changed "$f" && return 0; done
  return 1
}

${
  staticPod
    ? `step "install curl if missing (keepalived and haproxy come from their images)"
missing=()
wanted=(curl)
for pkg in "\${wanted[@]}"; do`
    : `step "install keepalived, haproxy and curl if missing"
missing=()
for pkg in keepalived haproxy curl; do`
}
  [ "$(dpkg-query -W -f='\${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ] || missing+=("$pkg")
done
if [ "\${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # confold: keep the haproxy.cfg this phase already installed instead of the package's.
  apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef "\${missing[@]}"
fi

step "write secret-derived files"
${vrrpSecret}
stats_password="$(secret stats-password)"
# The env file is single-quoted for systemd: refuse what would break the quoting.
case "$stats_password" in
  "" | *"'"* | *[[:space:]]*) die "the stats-password secret is empty or contains a quote or whitespace; rotate it with: bun run secrets --rotate stats-password" ;;
esac
write_secret_file ${shq(HAPROXY_ENV_FILE)} < <(printf "${STATS_PASSWORD_ENV}='%s'\\n" "$stats_password")

${
  staticPod
    ? ""
    : `step "create the runtime directory keepalived tracks (and at every boot, by tmpfiles.d)"
systemd-tmpfiles --create ${shq(RUN_DIR_TMPFILES)}
`
}
step "make sure haproxy finds a server state file (an empty one until a reload saves the running one's)"
[ -s ${shq(HAPROXY_SERVER_STATE_FILE)} ] || empty_server_state

${validate(staticPod)}

${staticPod ? staticPodServices(keepalivedInputs) : systemdServices(keepalivedInputs)}
${keepsEtcdLeaderAway(spec) ? ETCD_LEADER_AWAY_START : ""}
# 0 also undoes a drain an interrupted run or an operator left behind: after a deploy the node serves.
step "take part in VRRP elections with the full priority (${LB_DRAIN_FILE} = 0)"
${LB_DRAIN_SCRIPT} undrain
if ip -o -4 addr show dev "$IFACE" | grep -F " inet $VIP/" >/dev/null; then
  step "this node holds the VIP $VIP on $IFACE"
else
  step "this node does not hold the VIP $VIP (another control plane does, or the election is still running)"
fi`;
}

/** The configs checked by the real tools before anything reloads; a rejected config is rolled back. */
function validate(staticPod: boolean): string {
  const checks = `step "validate haproxy.cfg"
if ! out=$(${STATS_PASSWORD_ENV}="$stats_password" haproxy -c -f ${shq(HAPROXY_CFG)} 2>&1); then
  rollback_files
  die "haproxy rejected ${HAPROXY_CFG}; every file this step changed was put back and haproxy was NOT reloaded: $out"
fi
unset stats_password

step "validate keepalived.conf"
if ! out=$(keepalived -t -l -D -f ${shq(KEEPALIVED_CONF)} 2>&1); then
  rollback_files
  die "keepalived rejected ${KEEPALIVED_CONF}; every file this step changed was put back and keepalived was NOT reloaded: $out"
fi`;
  if (!staticPod) return checks;
  // The images carry the daemons; a host that has them too checks the configs before the pods see them.
  return `if command -v haproxy >/dev/null && command -v keepalived >/dev/null && id haproxy >/dev/null 2>&1; then
${checks}
else
  unset stats_password
  printf '[kubeadm-ha] %s %s: haproxy or keepalived is not installed on this host: the pods check the configs when they start (crictl logs)\\n' "$NODE" "$PHASE"
fi`;
}

function systemdServices(keepalivedInputs: string): string {
  return `step "enable and (re)load haproxy and keepalived"
if any_changed ${shq(HAPROXY_DROPIN)} ${shq(KEEPALIVED_DROPIN)} ${shq(HAPROXY_ENV_FILE)}; then
  systemctl daemon-reload
fi
systemctl enable --quiet haproxy keepalived
if ! systemctl is-active --quiet haproxy; then
  # No process to ask: an older saved state would be stale.
  empty_server_state
  systemctl restart haproxy
elif any_changed ${shq(HAPROXY_DROPIN)} ${shq(HAPROXY_ENV_FILE)}; then
  # A reload keeps the old process environment, so a new stats password needs a restart.
  # The unit's ExecStop (${LB_DRAIN_SCRIPT} drain) first moves the VIP to a healthy peer
  # when this node holds it, so the restart fails no request.
  save_server_state
  systemctl restart haproxy
elif changed ${shq(HAPROXY_CFG)}; then
  # Seamless: the new process takes over the listening socket, open streams finish on the old one,
  # and it starts from the old one's server states (a dead apiserver stays DOWN, gets no client).
  save_server_state
  systemctl reload haproxy
fi
if ! systemctl is-active --quiet keepalived; then
  systemctl restart keepalived
elif any_changed ${keepalivedInputs}; then
  # SIGHUP re-reads the config and keeps the VRRP state; a restart would make the holder
  # give up the VIP and cut every open stream.
  systemctl reload keepalived
fi

step "verify haproxy listens on :$LB_PORT and keepalived runs"
for _ in $(seq 1 20); do
  [ -n "$(ss -Hltn "sport = :$LB_PORT")" ] && break
  sleep 0.5
done
[ -n "$(ss -Hltn "sport = :$LB_PORT")" ] ||
  die "haproxy does not listen on port $LB_PORT after 10 s; see: journalctl -u haproxy -n 50"
systemctl is-active --quiet haproxy || die "haproxy is not active; see: journalctl -u haproxy -n 50"
systemctl is-active --quiet keepalived || die "keepalived is not active; see: journalctl -u keepalived -n 50"`;
}

/** The host service that keeps etcd's leader off the VIP holder (etcd-leader-away.ts), in both keepalived modes. */
const ETCD_LEADER_AWAY_START = `
step "keep the etcd leader off the VIP holder (${ETCD_LEADER_AWAY_SERVICE})"
if changed ${shq(ETCD_LEADER_AWAY_UNIT)}; then systemctl daemon-reload; fi
systemctl enable --quiet ${ETCD_LEADER_AWAY_SERVICE}
if any_changed ${shq(ETCD_LEADER_AWAY_SCRIPT)} ${shq(ETCD_LEADER_AWAY_UNIT)} || ! systemctl is-active --quiet ${ETCD_LEADER_AWAY_SERVICE}; then
  systemctl restart ${ETCD_LEADER_AWAY_SERVICE}
fi
`;

const STOP_SYSTEMD_UNITS = `step "the kubelet runs the load balancer: stop the systemd keepalived and haproxy if an earlier mode started them"
for unit in keepalived haproxy; do
  if systemctl is-enabled --quiet "$unit" 2>/dev/null || systemctl is-active --quiet "$unit" 2>/dev/null; then
    systemctl disable --now --quiet "$unit"
    printf '[kubeadm-ha] %s %s: stopped and disabled %s.service (a static pod replaces it)\\n' "$NODE" "$PHASE" "$unit"
  fi
done`;

/**
 * The kubelet starts a static pod when its manifest appears and restarts it only when the
 * manifest changes, so a changed config is signalled to the running processes, as systemd's
 * reload does in the other mode.
 */
function staticPodServices(keepalivedInputs: string): string {
  return `${STOP_SYSTEMD_UNITS}

step "signal a changed config to the running pods (none running yet: nothing to do)"
if ! changed ${shq(KEEPALIVED_MANIFEST)} && any_changed ${keepalivedInputs}; then
  # SIGHUP to the parent re-reads the config and keeps the VRRP state, as in the systemd mode.
  pkill -HUP -o -x keepalived || true
fi
if ! changed ${shq(HAPROXY_MANIFEST)}; then
  if any_changed ${shq(HAPROXY_ENV_FILE)} ${shq(HAPROXY_RUN_SCRIPT)}; then
    # A new stats password needs a new process: the kubelet restarts the container.
    save_server_state
    lb_drain_for_restart
    pkill -TERM -f ${shq(`^/bin/sh ${HAPROXY_RUN_SCRIPT}`)} || true
  elif changed ${shq(HAPROXY_CFG)}; then
    # The entrypoint turns SIGHUP into haproxy's seamless master-worker reload (SIGUSR2).
    save_server_state
    pkill -HUP -f ${shq(`^/bin/sh ${HAPROXY_RUN_SCRIPT}`)} || true
  fi
fi

step "wait for haproxy on :$LB_PORT and keepalived (the kubelet starts them; before kubeadm init/join it is not configured yet)"
if [ -f /var/lib/kubelet/config.yaml ]; then limit=120; else limit=10; fi
for _ in $(seq 1 $((limit * 2))); do
  [ -n "$(ss -Hltn "sport = :$LB_PORT")" ] && pgrep -x keepalived >/dev/null && break
  sleep 0.5
done
if [ -n "$(ss -Hltn "sport = :$LB_PORT")" ] && pgrep -x keepalived >/dev/null; then
  step "haproxy listens on :$LB_PORT and keepalived runs"
elif [ "$limit" -gt 10 ]; then
  die "the kubelet has not started haproxy (listening on :$LB_PORT) and keepalived within \${limit}s; see: crictl ps -a --name 'haproxy|keepalived', crictl logs, journalctl -u kubelet"
else
  step "not running yet: kubeadm init/join starts the kubelet, which starts them from ${MANIFESTS_DIR}"
fi
${STATIC_POD_UNDRAIN}`;
}

/**
 * static-pod mode: the kubelet restarts a pod whose manifest changed, and the entrypoint is
 * restarted for a new stats password, which on the holder would drop the VIP with keepalived
 * or refuse connections with haproxy. So before such a file changes the VIP is moved away
 * (staged drain script: this run may be the one that installs it), and the priority comes back
 * once the replaced processes are gone and the new ones serve.
 */
const STATIC_POD_DRAIN_BEFORE = `LB_DRAINED=""
LB_OLD_PIDS=""
# Files whose change restarts a pod (the kubelet) or haproxy's entrypoint (this phase).
differs() { [ -f "$1" ] && ! cmp -s "$STAGE/root$1" "$1"; }
lb_drain_for_restart() {
  [ -z "$LB_DRAINED" ] || return 0
  step "move the VIP off this node before its load-balancer pods restart"
  LB_OLD_PIDS="$(pgrep -x keepalived || true) $(pgrep -f ${shq(`^/bin/sh ${HAPROXY_RUN_SCRIPT}`)} || true)"
  bash "$STAGE/root${LB_DRAIN_SCRIPT}" drain
  LB_DRAINED=1
}
if differs ${shq(KEEPALIVED_MANIFEST)} || differs ${shq(HAPROXY_MANIFEST)} || differs ${shq(HAPROXY_RUN_SCRIPT)}; then
  lb_drain_for_restart
fi`;

const STATIC_POD_UNDRAIN = `if [ -n "$LB_DRAINED" ]; then
  step "wait until the replaced pods are gone and the new ones serve, then give this node its VRRP priority back"
  for _ in $(seq 1 120); do
    alive=""
    for pid in $LB_OLD_PIDS; do
      # Only the processes that were to be replaced: a pod whose files did not change keeps its pid.
      if kill -0 "$pid" 2>/dev/null && { [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != keepalived ] || changed ${shq(KEEPALIVED_MANIFEST)}; }; then alive=1; fi
    done
    [ -z "$alive" ] && [ -n "$(ss -Hltn "sport = :$LB_PORT")" ] && pgrep -x keepalived >/dev/null && break
    sleep 0.5
  done
fi`;

/** mode kube-vip: one manifest; kube-vip holds the VIP (and balances, with loadBalancing) by itself. */
function kubeVipStep(spec: ClusterSpec, node: NodeSpec): Step {
  const files: RenderedFile[] = [{ path: KUBE_VIP_MANIFEST, content: renderKubeVipManifest(spec, node), mode: "0600" }];
  const body = `${STOP_SYSTEMD_UNITS}
if systemctl is-enabled --quiet ${ETCD_LEADER_AWAY_SERVICE} 2>/dev/null; then
  # It follows keepalived's VIP; kube-vip's leader election is its own.
  systemctl disable --now --quiet ${ETCD_LEADER_AWAY_SERVICE}
fi

step "wait for kube-vip (the kubelet starts it; before kubeadm init/join it is not configured yet)"
if [ -f /var/lib/kubelet/config.yaml ]; then
  for _ in $(seq 1 240); do
    pgrep -x kube-vip >/dev/null && break
    sleep 0.5
  done
  pgrep -x kube-vip >/dev/null ||
    die "the kubelet has not started kube-vip within 120 s; see: crictl ps -a --name kube-vip, crictl logs, journalctl -u kubelet"
  step "kube-vip runs"
else
  step "not running yet: kubeadm init/join starts the kubelet, which starts it from ${MANIFESTS_DIR}"
fi`;
  return {
    phase: "loadbalancer",
    node,
    files,
    secrets: [],
    script: phaseScript({ phase: "loadbalancer", node: node.name, files, secrets: [], body }),
  };
}

export function loadBalancerStep(spec: ClusterSpec, node: NodeSpec): Step {
  if (spec.loadBalancer.mode === "kube-vip") return kubeVipStep(spec, node);
  const files = loadBalancerFiles(spec, node);
  const secrets: Step["secrets"] = ["vrrp-password", "stats-password"];
  return {
    phase: "loadbalancer",
    node,
    files,
    secrets,
    script: phaseScript({
      phase: "loadbalancer",
      node: node.name,
      files,
      secrets,
      body: body(spec, files),
      ...(spec.loadBalancer.mode === "static-pod" ? { beforeInstall: STATIC_POD_DRAIN_BEFORE } : {}),
    }),
  };
}
