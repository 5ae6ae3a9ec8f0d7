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

/**
 * Bash: hold the node's restore lock for the rest of the script (or until `exec 9>&-`) and
 * stop when the node was rolled back meanwhile. Every step that changes the manifests takes
 * it, as the rollback does, so an interrupt can never be undone by a step still in flight.
 */
export function restoreLockSh(stateDir: string): string {
  return `exec 9>${sq(`${stateDir}/lock`)}
flock 9
if [ -e ${sq(`${stateDir}/rolled-back`)} ]; then echo "this node was rolled back meanwhile; not changing it" >&2; exit 75; fi`;
}

/**
 * The node's rollback script (idempotent; serialised with flock between watchdog, tool and
 * the restore's steps). Run by the tool it also stops the watchdog: nothing is left to undo.
 */
export function rollbackScript(stateDir: string, ports: NodePorts): string {
  return `#!/usr/bin/env bash
# Written by kubeadm-ha etcd:restore. Puts the etcd and kube-apiserver static-pod
# manifests saved in ${stateDir}/orig back, so etcd runs on its old data dir again.
# "--after N" waits N seconds first and does nothing if the restore was committed.
set -u
S=${sq(stateDir)}
watchdog=yes
if [ "\${1:-}" = "--after" ]; then sleep "$2"; else watchdog=no; fi
exec 9>"$S/lock"
flock 9
if [ -e "$S/committed" ]; then echo "committed: left on the restored data"; exit 0; fi
if [ -e "$S/rolled-back" ]; then echo "already rolled back"; exit 0; fi
stop_watchdog() {
  if [ "$watchdog" = no ] && [ -f "$S/watchdog.pid" ]; then kill "$(cat "$S/watchdog.pid")" 2>/dev/null || true; fi
}
if [ ! -f "$S/orig/etcd.yaml" ]; then
  # Not stopped yet: a stop still on its way finds the mark and changes nothing.
  date -u +%FT%TZ >"$S/rolled-back"
  echo "not stopped yet: nothing to undo"
  exit 0
fi
${waitPortsClosedSh}
if cmp -s "$S/orig/etcd.yaml" ${sq(ETCD_MANIFEST)}; then
  # etcd never left its old manifest (a leader stops last): it keeps running; only the apiserver comes back.
  rm -f ${sq(APISERVER_MANIFEST)}
  wait_ports_closed 90 ${ports.apiserver} || echo "kube-apiserver still listening after 90 s; restoring its manifest anyway" >&2
else
  rm -f ${sq(ETCD_MANIFEST)} ${sq(APISERVER_MANIFEST)}
  wait_ports_closed 90 ${ports.etcdClient} ${ports.etcdPeer} ${ports.apiserver} || echo "etcd still listening after 90 s; restoring the manifests anyway" >&2
  cp -p "$S/orig/etcd.yaml" ${sq(ETCD_MANIFEST)}
fi
if [ -f "$S/orig/kube-apiserver.yaml" ]; then cp -p "$S/orig/kube-apiserver.yaml" ${sq(APISERVER_MANIFEST)}; fi
date -u +%FT%TZ >"$S/rolled-back"
stop_watchdog
echo "rolled back: old manifests in place"
`;
}
