// The host reset of a node leaving the cluster, one script for node:remove/node:replace and for
// resetOnDestroy's destroy step.
import { shq } from "../shell.ts";
import { ETCD_LEADER_AWAY_SERVICE } from "./etcd-leader-away.ts";
import { STATE_DIR } from "./paths.ts";

/**
 * What `kubeadm reset -f` leaves of a node kubeadm-ha built, removed too: keepalived and haproxy
 * when systemd runs them (kubeadm reset stops only what the kubelet runs; a removed control plane's
 * keepalived, no longer an advert peer of the others, would take the VIP), keepalived first so a
 * holder hands the VIP over at once; and kubeadm-ha's state (its secrets, installed configs'
 * records), and the service that keeps etcd's leader off the VIP holder.
 */
export const RESET_HOST_SH = `for unit in keepalived haproxy ${ETCD_LEADER_AWAY_SERVICE}; do
  if systemctl is-active --quiet "$unit" 2>/dev/null || systemctl is-enabled --quiet "$unit" 2>/dev/null; then
    systemctl disable --now --quiet "$unit"
  fi
done
if command -v kubeadm >/dev/null 2>&1; then kubeadm reset -f; fi
rm -rf ${shq(STATE_DIR)}`;
