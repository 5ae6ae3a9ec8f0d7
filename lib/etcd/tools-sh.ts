// etcd tool snippets and kubeadm's etcd client paths: plain strings, no imports beyond the
// quoting helper, so the renderers (the backup timer) and the remote commands share them.
import { shq } from "../shell.ts";

/** Client certificate etcdctl uses; kubeadm's healthcheck client by default. */
export interface EtcdAccess {
  cacert: string;
  cert: string;
  key: string;
}

export const KUBEADM_ETCD_ACCESS: EtcdAccess = {
  cacert: "/etc/kubernetes/pki/etcd/ca.crt",
  cert: "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
  key: "/etc/kubernetes/pki/etcd/healthcheck-client.key",
};

/** Where kubeadm-ha keeps etcd binaries copied out of the etcd container. */
export const TOOLS_DIR = "/var/lib/kubeadm-ha/bin";

/**
 * Bash that defines `etcd_tools`: sets ETCDCTL, ETCDUTL (may be empty on 3.4),
 * ETCD_VERSION and TOOLS_SOURCE. Shared by the commands and the backup timer, so
 * it must stay shellcheck-clean.
 */
export const ETCD_TOOLS_SH = `KHA_TOOLS=${shq(TOOLS_DIR)}
etcd_tools() {
  ETCDCTL=""
  ETCDUTL=""
  TOOLS_SOURCE=""
  local id pid d b
  # kubeadm nodes usually have etcdctl only inside the etcd image: copy it (and
  # etcdutl) out of the running container so the same version works when etcd is stopped.
  if command -v crictl >/dev/null 2>&1; then
    id="$(crictl ps -q --state running --name '^etcd$' 2>/dev/null | head -n 1 || true)"
    if [ -n "$id" ]; then
      pid="$(crictl inspect --output go-template --template '{{.info.pid}}' "$id" 2>/dev/null || true)"
      if [ -n "$pid" ] && [ -d "/proc/$pid/root" ]; then
        install -d -m 0700 "$KHA_TOOLS"
        for b in etcdctl etcdutl; do
          for d in /usr/local/bin /usr/bin /bin; do
            if [ -x "/proc/$pid/root$d/$b" ]; then
              install -m 0700 "/proc/$pid/root$d/$b" "$KHA_TOOLS/$b"
              break
            fi
          done
        done
        TOOLS_SOURCE="etcd container"
      fi
    fi
  fi
  if [ -x "$KHA_TOOLS/etcdctl" ]; then
    ETCDCTL="$KHA_TOOLS/etcdctl"
    [ -x "$KHA_TOOLS/etcdutl" ] && ETCDUTL="$KHA_TOOLS/etcdutl"
    [ -n "$TOOLS_SOURCE" ] || TOOLS_SOURCE="copied from the etcd container"
  else
    ETCDCTL="$(command -v etcdctl || true)"
    ETCDUTL="$(command -v etcdutl || true)"
    TOOLS_SOURCE="host"
  fi
  if [ -z "$ETCDCTL" ]; then
    echo "no etcdctl on this host and no running etcd container to copy it from" >&2
    return 1
  fi
  export ETCDCTL_API=3
  ETCD_VERSION="$("$ETCDCTL" version 2>/dev/null | sed -n 's/^etcdctl version: *//p')"
}
# snapshot status/restore: etcdutl when there is one (3.5+; etcdctl 3.6 lost them), else etcdctl (3.4).
snaptool() {
  if [ -n "$ETCDUTL" ]; then "$ETCDUTL" "$@"; else "$ETCDCTL" "$@"; fi
}
`;

export function etcdctlFlags(access: EtcdAccess, endpoint: string): string {
  return `--endpoints=${shq(endpoint)} --cacert=${shq(access.cacert)} --cert=${shq(access.cert)} --key=${shq(access.key)}`;
}
