// The scripts keepalived runs as its health checks (vrrp_script). Both are tiny on
// purpose: keepalived runs them every second on every control plane.
import type { ClusterSpec, NodeSpec } from "../spec/schema.ts";
import { shq } from "./phase-script.ts";

/**
 * Asks the local haproxy (not the local apiserver) for /readyz, so the check fails
 * when haproxy is dead OR when haproxy has no healthy backend left: in both cases
 * the VIP is useless on this node. `-f` plus the 2xx test make a 403/500 count as a
 * failure (the runbook's `curl --silent https://localhost:8443/` passed on any answer).
 */
export function renderCheckApiserverScript(spec: ClusterSpec, node: NodeSpec): string {
  const url = `https://127.0.0.1:${spec.controlPlaneEndpoint.port}/readyz`;
  return `#!/usr/bin/env bash
# kubeadm-ha: keepalived health check for ${node.name}. Generated: edit the spec, not this file.
# Exit 0 only when GET ${url} through the local haproxy answers 2xx within 1 s;
# otherwise print one line saying why and exit 1 (keepalived then lowers this node's priority).
set -u
url=${shq(url)}
# -k: the apiserver certificate is not for 127.0.0.1 and /readyz carries no secret.
# --noproxy: a proxy set in the environment must never see the check.
if out=$(curl -fsS --max-time 1 -k --noproxy '*' -o /dev/null -w 'HTTP %{http_code}\\n' "$url" 2>&1); then
  case "$out" in
    "HTTP 2"??) exit 0 ;;
  esac
fi
reason=$(printf '%s\\n' "$out" | grep -m1 '^curl:' || printf '%s' "$out")
printf 'check_apiserver: GET %s failed: %s\\n' "$url" "$(printf '%s' "$reason" | tr '\\n' ' ')" >&2
exit 1
`;
}

/**
 * Succeeds while this node holds the VIP. keepalived adds a bonus to the holder's
 * priority while it succeeds (see keepalived.ts: vrrpWeights), so a node that comes
 * back healthy does not take the VIP from a healthy holder.
 */
export function renderCheckVipHeldScript(spec: ClusterSpec, node: NodeSpec): string {
  const { vip, interface: iface } = spec.controlPlaneEndpoint;
  return `#!/usr/bin/env bash
# kubeadm-ha: keepalived "holds the VIP" check for ${node.name}. Generated: edit the spec, not this file.
set -u
ip -o -4 addr show dev ${shq(iface)} | grep -qF ${shq(` inet ${vip}/`)}
`;
}
