// What a restore leaves on each control plane, and the node-local rollback that
// puts the old manifests back. The rollback runs either from the tool (on any
// failure) or by itself from a watchdog armed when the node is stopped, so a
// node the tool loses contact with still returns to its old data dir.
import { sq } from "../remote/ssh.ts";
import { APISERVER_MANIFEST, ETCD_MANIFEST } from "./manifest.ts";

export const RESTORE_STATE_ROOT = "/var/lib/kubeadm-ha";
export const restoreStateDir = (stamp: string): string => `${RESTORE_STATE_ROOT}/etcd-restore-${stamp}`;

export interface NodePorts {
  etcdClient: number;
  etcdPeer: number;
  apiserver: number;
}

/** Bash: wait until nothing listens on any of the ports (or give up after N seconds). */
export const waitPortsClosedSh = `ports_open() {
  local p
  for p in "$@"; do
    if ss -Hltn "( sport = :$p )" 2>/dev/null | grep -q .; then return 0; fi
  done
  return 1
}
wait_ports_closed() {
  local limit="$1"
  shift
  local end=$((SECONDS + limit))
  while ports_open "$@"; do
    if [ "$SECONDS" -ge "$end" ]; then return 1; fi
    sleep 0.2
  done
}
`;

/** The node's rollback script (idempotent; serialised with flock between watchdog and tool). */
export function rollbackScript(stateDir: string, ports: NodePorts): string {
  return `#!/usr/bin/env bash
# Written by kubeadm-ha etcd:restore. Puts the etcd and kube-apiserver static-pod
# manifests saved in ${stateDir}/orig back, so etcd runs on its old data dir again.
# "--after N" waits N seconds first and does nothing if the restore was committed.
set -u
S=${sq(stateDir)}
if [ "\${1:-}" = "--after" ]; then sleep "$2"; fi
exec 9>"$S/lock"
flock 9
if [ -e "$S/committed" ] || [ -e "$S/rolled-back" ]; then exit 0; fi
if [ ! -f "$S/orig/etcd.yaml" ]; then exit 0; fi
${waitPortsClosedSh}
rm -f ${sq(ETCD_MANIFEST)} ${sq(APISERVER_MANIFEST)}
wait_ports_closed 90 ${ports.etcdClient} ${ports.etcdPeer} ${ports.apiserver} || echo "etcd still listening after 90 s; restoring the manifests anyway" >&2
cp -p "$S/orig/etcd.yaml" ${sq(ETCD_MANIFEST)}
if [ -f "$S/orig/kube-apiserver.yaml" ]; then cp -p "$S/orig/kube-apiserver.yaml" ${sq(APISERVER_MANIFEST)}; fi
date -u +%FT%TZ >"$S/rolled-back"
echo "rolled back: old manifests in place"
`;
}
