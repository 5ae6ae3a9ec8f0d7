// Scheduled etcd snapshots on each control plane: a systemd timer + oneshot
// service running a script that snapshots the local member with kubeadm's
// healthcheck client cert, verifies the file, and keeps the newest N.
import { ETCD_TOOLS_SH, KUBEADM_ETCD_ACCESS } from "../etcd/tools-sh.ts";
import type { ClusterSpec, NodeSpec } from "../spec/schema.ts";
import { phaseScript, shq } from "./phase-script.ts";
import type { RenderedFile, Step } from "./types.ts";

export const BACKUP_UNIT = "kubeadm-ha-etcd-backup";
export const BACKUP_SCRIPT = "/usr/local/lib/kubeadm-ha/etcd-backup.sh";
export const NODE_BACKUP_DIR = "/var/backups/kubeadm-ha/etcd";

/**
 * How each snapshot's JSON sidecar starts: the cluster and node that made it. Retention deletes
 * only files whose sidecar starts with exactly this, since names alone are ambiguous in a shared
 * directory (cluster prod's node eu-cp-1 and cluster prod-eu's node cp-1 write the same names).
 */
export const backupOwner = (spec: ClusterSpec, node: NodeSpec): string =>
  `{"cluster":${JSON.stringify(spec.name)},"node":${JSON.stringify(node.name)},`;

export function etcdBackupScript(spec: ClusterSpec, node: NodeSpec): string {
  const a = KUBEADM_ETCD_ACCESS;
  return `#!/usr/bin/env bash
# kubeadm-ha scheduled etcd snapshot for ${node.name}. Generated: edit the spec, not this file.
# Keeps the newest ${spec.etcd.backup.retention} verified snapshots of this cluster and node; a failed run deletes nothing.
set -euo pipefail
umask 077
DIR=${shq(NODE_BACKUP_DIR)}
KEEP=${spec.etcd.backup.retention}
PREFIX=${shq(`${spec.name}-${node.name}-`)}
OWNER=${shq(backupOwner(spec, node))}
ENDPOINT='https://127.0.0.1:2379'
${ETCD_TOOLS_SH}
etcd_tools
install -d -m 0700 "$DIR"
chmod 0700 "$DIR"
ts="$(date -u +%Y%m%dT%H%M%SZ)"
final="$DIR/$PREFIX$ts.db"
[ ! -e "$final" ] || { echo "$final already exists; not overwriting a snapshot" >&2; exit 1; }
tmp="$DIR/.partial-$ts.db"
trap 'rm -f -- "$tmp" "$tmp.part"' EXIT
"$ETCDCTL" --endpoints="$ENDPOINT" --cacert=${shq(a.cacert)} --cert=${shq(a.cert)} --key=${shq(a.key)} snapshot save "$tmp" >/dev/null
# A snapshot the tools cannot read is not a backup: fail before retention runs.
status="$(snaptool snapshot status "$tmp" -w json | tr -d '\\n')"
chmod 0600 "$tmp"
mv -- "$tmp" "$final"
sha="$(cd "$DIR" && sha256sum -- "$(basename "$final")" | tee "$final.sha256" | cut -d ' ' -f 1)"
printf '%s"createdAt":"%s","sha256":"%s","status":%s}\\n' "$OWNER" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$sha" "$status" >"$final.json"
chmod 0600 "$final.sha256" "$final.json"
echo "snapshot $final (etcd $ETCD_VERSION, tools: $TOOLS_SOURCE): $status"
# Retention counts only complete snapshots (a .sha256) that are provably this node's: exact
# name shape and a sidecar naming this cluster and node. The one just made always stays.
ours() {
  local f stamp
  for f in "$DIR/$PREFIX"*.db; do
    stamp="\${f##*/}"
    stamp="\${stamp#"$PREFIX"}"
    [[ "$stamp" =~ ^[0-9]{8}T[0-9]{6}Z\\.db$ ]] || continue
    if [ "$f" != "$final" ] && [ -e "$f.sha256" ] && [ -f "$f.json" ] &&
      [ "$(head -c "\${#OWNER}" -- "$f.json")" = "$OWNER" ]; then
      printf '%s\\n' "$f"
    fi
  done
  return 0
}
mapfile -t older < <(ours | sort -r)
for old in "\${older[@]:$((KEEP - 1))}"; do
  rm -f -- "$old" "$old.sha256" "$old.json"
  echo "retention: removed $old"
done
`;
}

const UNIT_DIR = "/etc/systemd/system";
const SERVICE_PATH = `${UNIT_DIR}/${BACKUP_UNIT}.service`;
const TIMER_PATH = `${UNIT_DIR}/${BACKUP_UNIT}.timer`;

/** Every file the timer puts on a control plane: what removal deletes and drift looks for when unscheduled. */
export const BACKUP_TIMER_PATHS = [BACKUP_SCRIPT, SERVICE_PATH, TIMER_PATH] as const;

export function etcdBackupUnits(spec: ClusterSpec, node: NodeSpec): RenderedFile[] {
  const service = `[Unit]
Description=kubeadm-ha: snapshot the local etcd member (${node.name})
After=kubelet.service
ConditionPathExists=/etc/kubernetes/manifests/etcd.yaml

[Service]
Type=oneshot
ExecStart=${BACKUP_SCRIPT}
Nice=10
IOSchedulingClass=best-effort
IOSchedulingPriority=7
TimeoutStartSec=30min
`;
  const timer = `[Unit]
Description=kubeadm-ha: scheduled etcd snapshots (${node.name})

[Timer]
OnCalendar=${spec.etcd.backup.schedule}
Persistent=true
RandomizedDelaySec=10min

[Install]
WantedBy=timers.target
`;
  return [
    { path: BACKUP_SCRIPT, content: etcdBackupScript(spec, node), mode: "0700" },
    { path: SERVICE_PATH, content: service, mode: "0644" },
    { path: TIMER_PATH, content: timer, mode: "0644" },
  ];
}

const INSTALL_BODY = `step "enable ${BACKUP_UNIT}.timer"
install -d -m 0700 ${shq(NODE_BACKUP_DIR)}
if changed ${SERVICE_PATH} || changed ${TIMER_PATH}; then
  systemctl daemon-reload
fi
systemctl enable ${BACKUP_UNIT}.timer
systemctl restart ${BACKUP_UNIT}.timer
systemctl is-active --quiet ${BACKUP_UNIT}.timer || die "${BACKUP_UNIT}.timer is not active"`;

// Disable while the unit file is still there (systemctl needs it), then delete the units, the
// script, the enablement link and the Persistent= stamp. Snapshots already taken stay.
const REMOVE_BODY = `step "no etcd.backup.schedule: remove ${BACKUP_UNIT}.timer"
if [ -e ${TIMER_PATH} ]; then
  systemctl disable --now ${BACKUP_UNIT}.timer
elif systemctl is-active --quiet ${BACKUP_UNIT}.timer; then
  systemctl stop ${BACKUP_UNIT}.timer
fi
removed=""
for f in ${BACKUP_TIMER_PATHS.map(shq).join(" ")} ${UNIT_DIR}/timers.target.wants/${BACKUP_UNIT}.timer /var/lib/systemd/timers/stamp-${BACKUP_UNIT}.timer; do
  if [ -e "$f" ] || [ -L "$f" ]; then
    rm -f -- "$f"
    removed="$removed $f"
  fi
done
if [ -n "$removed" ]; then
  systemctl daemon-reload
  echo "removed:$removed (snapshots in ${NODE_BACKUP_DIR} are kept)"
else
  echo "no ${BACKUP_UNIT}.timer here: nothing to remove"
fi
if systemctl is-active --quiet ${BACKUP_UNIT}.timer; then die "${BACKUP_UNIT}.timer is still active after its removal"; fi`;

/**
 * The timer step of a control plane, always rendered: it installs the timer when the spec has a
 * schedule and removes one left from before when it has none. (A step that only existed with a
 * schedule would vanish with it, and Terraform would destroy the resource without touching the host.)
 */
export function etcdBackupTimerStep(spec: ClusterSpec, node: NodeSpec): Step {
  if (node.role !== "control-plane")
    throw new Error(`${node.name} is not a control plane; the etcd backup timer runs on control planes only`);
  const enabled = spec.etcd.backup.schedule.trim() !== "";
  const files = enabled ? etcdBackupUnits(spec, node) : [];
  return {
    phase: "etcd-backup-timer",
    node,
    files,
    secrets: [],
    ...(enabled ? {} : { absent: [...BACKUP_TIMER_PATHS] }),
    script: phaseScript({
      phase: "etcd-backup-timer",
      node: node.name,
      files,
      secrets: [],
      body: enabled ? INSTALL_BODY : REMOVE_BODY,
    }),
  };
}
