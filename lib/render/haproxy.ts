// haproxy.cfg for one control plane: a TCP proxy on the load-balancer port that
// spreads connections over every apiserver and stops using a sick one within a second.

import { shq } from "../shell.ts";
import type { ClusterSpec, NodeSpec } from "../spec/schema.ts";
import { controlPlanes } from "../spec/topology.ts";
import { DRAIN_UNIT_LINES } from "./lb-drain.ts";
import { STATE_DIR } from "./paths.ts";

export const HAPROXY_CFG = "/etc/haproxy/haproxy.cfg";
/** systemd drop-in that hands the stats password to haproxy through its environment. */
export const HAPROXY_DROPIN = "/etc/systemd/system/haproxy.service.d/kubeadm-ha.conf";
/** Written 0600 by the phase script from `secret stats-password`; read by systemd as root. */
export const HAPROXY_ENV_FILE = `${STATE_DIR}/haproxy.env`;
export const STATS_PASSWORD_ENV = "KUBEADM_HA_STATS_PASSWORD";
/** Port every kube-apiserver listens on (kubeadm's default bind port). */
export const APISERVER_PORT = 6443;

/**
 * 0 while haproxy runs, 1 once its process has ended (crash and SIGKILL included): systemd
 * writes it, keepalived watches it (track_file, inotify), so a dead haproxy moves the
 * VIP at once instead of after the check script's interval x fall (measured: 1.8 s -> 0.56 s
 * to the last failed request). Process tracking would need kernel process events, which
 * containers do not get.
 */
export const HAPROXY_STATE_FILE = "/run/kubeadm-ha/haproxy.state";
const STATE_FILE_DIR = HAPROXY_STATE_FILE.slice(0, HAPROXY_STATE_FILE.lastIndexOf("/"));
/** haproxy's runtime API (root only, see the global section). */
export const HAPROXY_ADMIN_SOCKET = "/run/haproxy/admin.sock";
/**
 * The servers' health as the running haproxy sees it, saved just before a reload or restart the
 * load-balancer phase makes: the new process starts from it instead of taking every server for UP
 * until its first check (a dead backend would get connections, and the first refused one marks it
 * DOWN and cuts that very client with shutdown-sessions). In /run: gone at a reboot, and mounted into
 * the static pod with the state file.
 */
export const HAPROXY_SERVER_STATE_FILE = `${HAPROXY_STATE_FILE.slice(0, HAPROXY_STATE_FILE.lastIndexOf("/"))}/haproxy-servers.state`;

/**
 * Shell: no server state (the format's version line alone). haproxy warns about a missing or empty
 * file, not about this one.
 */
export function emptyServerStateCommand(file: string = HAPROXY_SERVER_STATE_FILE): string {
  return `mkdir -p ${shq(file.slice(0, file.lastIndexOf("/")))} && printf '1\\n' >${shq(file)}`;
}

/**
 * Shell: one command to haproxy's runtime API on `socket`, its answer on stdout (perl-base is part
 * of every Debian and Ubuntu install; socat is not). Fails, naming the API, when nothing listens.
 */
export function haproxyRuntimeCommand(command: string, socket: string = HAPROXY_ADMIN_SOCKET): string {
  const perl =
    'my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "haproxy runtime API: $!\\n"; print $s "$ARGV[1]\\n"; print while <$s>;';
  return `perl -MIO::Socket::UNIX -e ${shq(perl)} ${shq(socket)} ${shq(command)}`;
}

/**
 * Shell: `show servers state` from haproxy's runtime API into `file`. When haproxy does not answer,
 * no state: a stale one is never loaded.
 */
export function saveServerStateCommand(
  socket: string = HAPROXY_ADMIN_SOCKET,
  file: string = HAPROXY_SERVER_STATE_FILE,
): string {
  const tmp = `${file}.tmp`;
  return `{ ${haproxyRuntimeCommand("show servers state", socket)} >${shq(tmp)} 2>/dev/null && [ -s ${shq(tmp)} ] && mv -f ${shq(tmp)} ${shq(file)}; } || { rm -f ${shq(tmp)}; ${emptyServerStateCommand(file)}; }`;
}

/**
 * Shell: haproxy on this host stops sending new connections to `servers` ("drain", over the runtime
 * API; the open ones finish), before those apiservers go away, or sends them new ones again once
 * their checks pass ("ready", after a planned restart); nothing where no haproxy runs (kube-vip).
 * Drain, not maint: maintenance counts as DOWN, and shutdown-sessions would cut the clients they serve.
 */
export function serversStateCommand(
  servers: string[],
  state: "drain" | "ready",
  socket: string = HAPROXY_ADMIN_SOCKET,
): string {
  const commands = servers.map((n) => `set server kube_apiserver/${n} state ${state}`).join("; ");
  return `if [ -S ${shq(socket)} ]; then ${haproxyRuntimeCommand(commands, socket)}; fi`;
}

/** Creates the state file's directory at every boot, before keepalived starts (it drops a track file whose directory is missing). */
export const RUN_DIR_TMPFILES = "/etc/tmpfiles.d/kubeadm-ha.conf";

export function renderRunDirTmpfiles(): string {
  return `# kubeadm-ha: ${STATE_FILE_DIR} holds haproxy's state for keepalived's track_file. keepalived
# ignores a track file whose directory is missing when it starts, so it is made at every boot.
d ${STATE_FILE_DIR} 0755 root root -
`;
}

export function renderHaproxyDropin(): string {
  return `# kubeadm-ha: gives haproxy the stats password without writing it into haproxy.cfg.
# ${HAPROXY_ENV_FILE} is 0600 root; systemd reads it before haproxy drops privileges.
# It also records whether haproxy runs in ${HAPROXY_STATE_FILE} for keepalived
# (ExecStopPost runs however the process ended, SIGKILL included).
[Service]
EnvironmentFile=${HAPROXY_ENV_FILE}
ExecStartPost=/bin/sh -c 'mkdir -p ${STATE_FILE_DIR} && echo 0 > ${HAPROXY_STATE_FILE}'
ExecStopPost=/bin/sh -c 'mkdir -p ${STATE_FILE_DIR} && echo 1 > ${HAPROXY_STATE_FILE}'
${DRAIN_UNIT_LINES}`;
}

export function renderHaproxyCfg(spec: ClusterSpec, node: NodeSpec): string {
  // The port rules (not 6443, not the stats port) are validate.ts's.
  const lbPort = spec.controlPlaneEndpoint.port;
  const { stats, timeouts: t, healthCheck: hc } = spec.loadBalancer.haproxy;
  const servers = controlPlanes(spec)
    .map((n) => `  server ${n.name} ${n.address}:${APISERVER_PORT}`)
    .join("\n");

  const statsSection = stats.enabled
    ? `
# Stats page. The password comes from the environment (0600 env file read by systemd's drop-in or the pod's entrypoint),
# never from this file. Without it the config check fails instead of serving the page
# with an empty password.
# (Nested conditions, no !, && or ||: haproxy parses those only from 2.5; Ubuntu 22.04 has 2.4.)
.if defined(${STATS_PASSWORD_ENV})
  .if streq("$${STATS_PASSWORD_ENV}","")
    .alert "${STATS_PASSWORD_ENV} is not set: haproxy must be started with it in its environment (by systemd with the kubeadm-ha drop-in, or by its static pod's entrypoint)"
  .endif
.else
  .alert "${STATS_PASSWORD_ENV} is not set: haproxy must be started with it in its environment (by systemd with the kubeadm-ha drop-in, or by its static pod's entrypoint)"
.endif
listen stats
  mode http
  bind ${stats.bindAddress}:${stats.port}
  timeout client 30s
  stats enable
  stats uri /
  stats refresh 10s
  stats auth ${stats.user}:"\${${STATS_PASSWORD_ENV}}"
`
    : "";

  return `# kubeadm-ha: haproxy for ${node.name}. Generated: edit the spec, not this file.
# TCP pass-through to every kube-apiserver: TLS stays end to end, clients verify the
# apiserver certificate themselves.

global
  log /dev/log local0 notice
  user haproxy
  group haproxy
  # Root only: the runtime API can print the environment, which holds the stats password.
  stats socket ${HAPROXY_ADMIN_SOCKET} mode 600 level admin
  # Saved by the load-balancer phase just before it reloads or restarts haproxy: the new process
  # keeps the old one's view of which apiserver is down (a new one takes every server for UP).
  server-state-file ${HAPROXY_SERVER_STATE_FILE}

defaults
  mode tcp
  log global
  option tcplog
  option dontlognull
  # A connect on a LAN takes well under a millisecond; a short limit bounds what a dead
  # (blackholed) apiserver costs a client before the retry below.
  timeout connect ${t.connect}
  # Long on purpose: kubectl logs -f, exec, port-forward and watches sit idle for long
  # stretches. Measured on lab hosts: the runbook's 5 s cut an idle \`logs -f\` after 5 s,
  # the kubeadm guide's settings after ~35 s.
  timeout client ${t.client}
  timeout server ${t.server}
  timeout tunnel ${t.tunnel}
  # A connection that fails to connect is retried, each retry on another server
  # (redispatch 1), so a dead backend costs the client a retry, not an error.
  retries 3
  option redispatch 1
  # Each server's UP/DOWN from the state file above (when there is one); its address stays the config's.
  load-server-state-from-file global

frontend kube_apiserver
  # All addresses: works on the VIP holder without ip_nonlocal_bind, and lets the
  # keepalived check reach this haproxy on 127.0.0.1 on every node.
  bind *:${lbPort}
  default_backend kube_apiserver

backend kube_apiserver
  balance roundrobin
  # HTTPS check of /readyz: a TLS handshake alone (ssl-hello-chk, as in the runbook)
  # counts an apiserver answering 500 as healthy; measured: a third of requests failed for good.
  # /readyz, not /healthz (deprecated since 1.16): it turns 500 as soon as an apiserver starts a
  # graceful shutdown, so haproxy drains it while it still serves.
  option httpchk
  http-check connect ssl
  http-check send meth GET uri /readyz
  # An apiserver told to stop (a static-pod restart, a reboot) fails /readyz with the line
  # "[-]shutdown failed" and keeps serving for its shutdown delay: that answer puts it in NOLB
  # (no new connection, none cut) instead of DOWN, whose shutdown-sessions would cut the requests
  # it is still answering. Measured on the lab: 1 failed request in ~20 restarts before, 0 after.
  # Every other failing answer still marks it DOWN after "fall" checks, and when the apiserver
  # finally closes its port, the refused checks do.
  http-check expect comment "apiserver shutting down gracefully" error-status L7OKC ! string "[-]shutdown failed"
  http-check expect status 200
  # Without it a check's answer is awaited only for "inter" (500 ms): an apiserver slow to
  # answer /readyz under load would be marked DOWN and, with shutdown-sessions, lose every
  # stream. A blackholed server still fails fast, on "timeout connect".
  timeout check 2s
  # verify none: the check only reads /readyz (no secret); haproxy -c refuses check-ssl
  # without a CA file otherwise, and the CA may not exist before kubeadm init.
  # inter ${hc.interval} fall ${hc.fall}: measured, a dead backend is DOWN in 0.74-0.96 s, UP again in ~1 s.
  # fastinter: re-check quickly while a server changes state; downinter: probe dead ones less.
  # on-marked-down shutdown-sessions: cut streams to a DOWN server so clients reconnect elsewhere.
  # observe layer4 + error-limit 1 + on-error mark-down: a refused/timed-out connection marks
  # the server DOWN at once, without waiting for the next checks (traffic stops within one error).
  default-server check check-ssl verify none inter ${hc.interval} fastinter ${hc.fastInterval} downinter ${hc.downInterval} fall ${hc.fall} rise ${hc.rise} on-marked-down shutdown-sessions observe layer4 error-limit 1 on-error mark-down
${servers}
${statsSection}`;
}
