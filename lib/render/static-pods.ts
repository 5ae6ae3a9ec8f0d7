// loadBalancer.mode static-pod: the same keepalived.conf, haproxy.cfg and check scripts as the
// systemd mode, run by the kubelet as static pods (the kubeadm HA guide's variant). Host
// network (keepalived adds the VIP to the host's interface, haproxy binds the host's port),
// every file the processes read mounted read-only from the host at its own path, so the
// rendered configs name the same paths in both modes.
import { stringify } from "yaml";
import type { ClusterSpec } from "../spec/schema.ts";
import { DEFAULT_HAPROXY_IMAGE } from "../versions.ts";
import { HAPROXY_CFG, HAPROXY_ENV_FILE, HAPROXY_STATE_FILE } from "./haproxy.ts";
import { KEEPALIVED_CONF } from "./keepalived.ts";

export const MANIFESTS_DIR = "/etc/kubernetes/manifests";
export const KEEPALIVED_MANIFEST = `${MANIFESTS_DIR}/keepalived.yaml`;
export const HAPROXY_MANIFEST = `${MANIFESTS_DIR}/haproxy.yaml`;
/** haproxy's entrypoint in its pod: reads the stats password, and writes the state file systemd writes in the other mode. */
export const HAPROXY_RUN_SCRIPT = "/etc/haproxy/kubeadm-ha-run.sh";
/** What keepalived needs in its pod: VRRP raw sockets, adding the VIP, gratuitous ARP broadcasts. */
export const KEEPALIVED_CAPABILITIES = ["NET_ADMIN", "NET_BROADCAST", "NET_RAW"] as const;

const STATE_DIR_OF = (file: string) => file.slice(0, file.lastIndexOf("/"));

export function haproxyImage(spec: ClusterSpec): string {
  return spec.loadBalancer.staticPod?.haproxyImage ?? DEFAULT_HAPROXY_IMAGE;
}

interface Mount {
  name: string;
  path: string;
  type: "Directory" | "File" | "DirectoryOrCreate";
  readOnly: boolean;
}

export function pod(
  name: string,
  image: string,
  command: string[],
  mounts: Mount[],
  securityContext: Record<string, unknown>,
): string {
  const doc = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name,
      namespace: "kube-system",
      labels: { component: name, tier: "control-plane", "app.kubernetes.io/managed-by": "kubeadm-ha" },
    },
    spec: {
      hostNetwork: true,
      priorityClassName: "system-node-critical",
      containers: [
        {
          name,
          image,
          imagePullPolicy: "IfNotPresent",
          command,
          securityContext,
          volumeMounts: mounts.map((m) => ({ name: m.name, mountPath: m.path, readOnly: m.readOnly })),
        },
      ],
      volumes: mounts.map((m) => ({ name: m.name, hostPath: { path: m.path, type: m.type } })),
    },
  };
  return `# kubeadm-ha: ${name} as a static pod. Generated: edit the spec, not this file.\n${stringify(doc)}`;
}

/** keepalived in the foreground with the systemd mode's keepalived.conf (which includes the check scripts and the secret file, all under /etc/keepalived). */
export function renderKeepalivedManifest(spec: ClusterSpec): string {
  const image = spec.loadBalancer.staticPod?.keepalivedImage;
  // validate.ts refuses static-pod without it; a renderer called anyway must not invent one.
  if (!image) throw new Error("loadBalancer.staticPod.keepalivedImage is required in static-pod mode");
  return pod(
    "keepalived",
    image,
    ["keepalived", "--dont-fork", "--log-console", "--log-detail", "--use-file", KEEPALIVED_CONF],
    [
      { name: "config", path: STATE_DIR_OF(KEEPALIVED_CONF), type: "Directory", readOnly: true },
      { name: "haproxy-state", path: STATE_DIR_OF(HAPROXY_STATE_FILE), type: "DirectoryOrCreate", readOnly: true },
    ],
    { capabilities: { add: [...KEEPALIVED_CAPABILITIES] } },
  );
}

export function renderHaproxyManifest(spec: ClusterSpec): string {
  return pod(
    "haproxy",
    haproxyImage(spec),
    ["/bin/sh", HAPROXY_RUN_SCRIPT],
    [
      { name: "config", path: STATE_DIR_OF(HAPROXY_CFG), type: "Directory", readOnly: true },
      { name: "stats-password", path: HAPROXY_ENV_FILE, type: "File", readOnly: true },
      // Written here: the state file keepalived tracks, and the admin socket verify reads.
      { name: "haproxy-state", path: STATE_DIR_OF(HAPROXY_STATE_FILE), type: "DirectoryOrCreate", readOnly: false },
      { name: "admin-socket", path: "/run/haproxy", type: "DirectoryOrCreate", readOnly: false },
    ],
    // The official image runs as haproxy: the entrypoint needs root to read the 0600 password
    // file and write the state file; haproxy.cfg's `user haproxy` drops privileges after that.
    { runAsUser: 0, runAsGroup: 0 },
  );
}

/**
 * haproxy's entrypoint: the stats password from the 0600 env file (as systemd's EnvironmentFile
 * does), then 0 in the state file while haproxy runs and 1 once it has ended however it ended
 * (SIGKILL included: this shell outlives it), so keepalived moves the VIP at once in both modes.
 */
export function renderHaproxyRunScript(): string {
  return `#!/bin/sh
# kubeadm-ha: haproxy's entrypoint in its static pod. Generated: edit the spec, not this file.
set -eu
set -a
# shellcheck source=/dev/null
. ${HAPROXY_ENV_FILE}
set +a
echo 0 >${HAPROXY_STATE_FILE}
# -W: master-worker (SIGUSR2 reloads seamlessly), -db: stay in the foreground.
haproxy -W -db -f ${HAPROXY_CFG} &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' TERM INT
trap 'kill -USR2 "$pid" 2>/dev/null || true' HUP
status=0
wait "$pid" || status=$?
# wait returns early when a trapped signal arrives: wait until haproxy itself has ended.
while kill -0 "$pid" 2>/dev/null; do
  status=0
  wait "$pid" || status=$?
done
echo 1 >${HAPROXY_STATE_FILE}
exit "$status"
`;
}
