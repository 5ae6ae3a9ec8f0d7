// Stopping and starting a control plane's static pods in a chosen order, for the node scripts of
// certs:renew and node:reboot: a pod stops when its manifest leaves the kubelet's directory and
// starts when it is back, and each step waits for what a client would see (the port closed, the
// component healthy). Bash text, included by those renderers.
import type { ClusterSpec } from "../spec/schema.ts";
import { APISERVER_BIND_PORT, apiServerArgs, durationMs } from "./kubeadm.ts";
import { WAIT_FOR_FN } from "./lb-drain.ts";

export const MANIFESTS_DIR = "/etc/kubernetes/manifests";

/**
 * Bash: port_of, healthy and listening for kube-apiserver, etcd, kube-controller-manager and
 * kube-scheduler, each probe bounded by $PROBE_TIMEOUT seconds (2 unless set). The one definition
 * of "healthy" for the node scripts and for the commands' check of every control plane.
 */
export const COMPONENT_PROBES = `PROBE_TIMEOUT=\${PROBE_TIMEOUT:-2}
port_of() {
  case "$1" in
    kube-apiserver) echo ${APISERVER_BIND_PORT} ;;
    etcd) echo 2379 ;;
    kube-controller-manager) echo 10257 ;;
    kube-scheduler) echo 10259 ;;
  esac
}
# Healthy: the apiserver ready, etcd healthy with its cluster (kubeadm's metrics listener), the
# others' /healthz. These paths need no credentials.
healthy() {
  case "$1" in
    kube-apiserver) curl -fsk --noproxy '*' --max-time "$PROBE_TIMEOUT" -o /dev/null "https://127.0.0.1:$(port_of "$1")/readyz" ;;
    etcd) curl -fsS --noproxy '*' --max-time "$PROBE_TIMEOUT" http://127.0.0.1:2381/health 2>/dev/null | grep -q '"health":"true"' ;;
    *) curl -fsk --noproxy '*' --max-time "$PROBE_TIMEOUT" -o /dev/null "https://127.0.0.1:$(port_of "$1")/healthz" ;;
  esac
}
# Something still accepts connections on the component's port (curl's 7: nothing listens).
listening() {
  local rc=0
  curl -sk --noproxy '*' --max-time "$PROBE_TIMEOUT" -o /dev/null "https://127.0.0.1:$(port_of "$1")/" || rc=$?
  [ "$rc" -ne 7 ]
}`;

const seconds = (d: string): number => durationMs(d) / 1000;

/**
 * After /readyz answers on a node, every haproxy needs rise x inter to count that apiserver UP
 * again; the next node's apiserver may leave only after that (plus a second of margin).
 */
export function settleSeconds(spec: ClusterSpec): number {
  const hc = spec.loadBalancer.haproxy.healthCheck;
  return Math.ceil(hc.rise * seconds(hc.interval)) + 1;
}

/**
 * The shared functions: say/die (stderr lines "PHASE message", read as progress), a HOLD
 * directory put back on any exit, healthy/listening per component, require_serving, stop_pod,
 * start_pod and restart_pod (which appends to the "restarted" array).
 */
export function staticPodFunctions(spec: ClusterSpec): string {
  const shutdownDelay = seconds(apiServerArgs(spec)["shutdown-delay-duration"] ?? "0s");
  return `MANIFESTS=${MANIFESTS_DIR}
STOP_TIMEOUT=${Math.ceil(shutdownDelay) + 60}
START_TIMEOUT=180

say() { printf '%s %s\\n' "$1" "$2" >&2; }
die() { say error "$*"; exit 1; }

# Where a component's manifest waits while its pod is stopped: off the kubelet's directory, on the
# same file system (one rename each way), and put back whatever happens to this script.
HOLD=$(mktemp -d /etc/kubernetes/kubeadm-ha-hold.XXXXXXXXXX)
put_back() {
  local f
  for f in "$HOLD"/*.yaml; do
    [ -e "$f" ] || continue
    mv -f "$f" "$MANIFESTS/" && say restore "put \${f##*/} back into $MANIFESTS"
  done
  rmdir "$HOLD" 2>/dev/null || true
}
trap put_back EXIT
trap 'exit 1' HUP INT TERM PIPE

${COMPONENT_PROBES}
${WAIT_FOR_FN}
not_listening() { ! listening "$1"; }

stop_pod() {
  local c=$1 t0=$SECONDS
  mv "$MANIFESTS/$c.yaml" "$HOLD/"
  wait_for "$STOP_TIMEOUT" not_listening "$c" || die "$c still listens on port $(port_of "$c") \${STOP_TIMEOUT}s after its manifest left $MANIFESTS (is the kubelet running?)"
  say "$c" "stopped ($((SECONDS - t0)) s)"
}
start_pod() {
  local c=$1 t0=$SECONDS
  mv "$HOLD/$c.yaml" "$MANIFESTS/"
  wait_for "$START_TIMEOUT" healthy "$c" || die "$c is not healthy \${START_TIMEOUT}s after its manifest came back (kubelet and container logs: journalctl -u kubelet; crictl ps -a --name $c)"
  say "$c" "healthy again ($((SECONDS - t0)) s)"
}
# Nothing is changed on a node whose apiserver or etcd is missing or not healthy.
require_serving() {
  local c
  for c in kube-apiserver etcd; do
    [ -f "$MANIFESTS/$c.yaml" ] || die "$MANIFESTS/$c.yaml is missing: this is not a working control plane (node:replace rebuilds one)"
    healthy "$c" || die "$c is not healthy here; nothing was changed (bun run verify says why)"
  done
}
restarted=()
restart_pod() {
  if [ ! -f "$MANIFESTS/$1.yaml" ]; then
    say "$1" "no $MANIFESTS/$1.yaml here: nothing to restart"
    return 0
  fi
  stop_pod "$1"
  start_pod "$1"
  restarted+=("$1")
}
`;
}
