// The kubeadm phases (runbook section 6) as steps: init on the first control plane,
// the CNI, fresh join material, then joins. Pure: spec in, Steps out.
//
// Secrets stay out of argv, output and rendered files: configs carry placeholders,
// the script fills them into a 0600 temporary copy (removed at exit), kubeadm reads
// the token and certificate key from that file (kubeadm refuses --certificate-key
// or --ttl together with --config anyway), and output that may echo them is redacted.

import { type CniSource, chosenCniManifest } from "../spec/cni.ts";
import type { ClusterSpec, NodeSpec } from "../spec/schema.ts";
import { firstControlPlane } from "../spec/topology.ts";
import { ADMIN_CONF, KUBE_VIP_MANIFEST, kubeconfigSwitch, SUPER_ADMIN_CONF } from "./kube-vip.ts";
import {
  APISERVER_BIND_PORT,
  BOOTSTRAP_TOKEN_PLACEHOLDER,
  BOOTSTRAP_TOKEN_TTL,
  CERTIFICATE_KEY_PLACEHOLDER,
  type KubeadmContext,
  renderInitConfig,
  renderJoinConfig,
  renderJoinTokenConfig,
} from "./kubeadm.ts";
import { STATE_DIR } from "./paths.ts";
import { phaseScript, shq } from "./phase-script.ts";
import { COMMON_FUNCTIONS } from "./prepare.ts";
import type { NodeRun, RenderedFile, SecretName, Step } from "./types.ts";

export const INIT_CONFIG_PATH = `${STATE_DIR}/kubeadm-init.yaml`;
export const JOIN_CONFIG_PATH = `${STATE_DIR}/kubeadm-join.yaml`;
/**
 * The CA certificate is staged here and copied into /etc/kubernetes/pki only before
 * kubeadm init: installing it straight into pki would let a changed CA overwrite the
 * one a running cluster uses.
 */
export const STAGED_CA_PATH = `${STATE_DIR}/pki/ca.crt`;

export { defaultCniManifest, FLANNEL_DEFAULT_POD_SUBNET } from "../spec/cni.ts";

export interface WaitOptions {
  /** Upper bound for each wait on an API server's /healthz (default 300 s). */
  waitSeconds?: number;
}
const DEFAULT_WAIT_SECONDS = 300;

/**
 * Bash functions the kubeadm bodies use, kept apart so tests can source them
 * (with their own `secret`, `die`, `warn`) and run them on temporary files.
 */
export const KUBEADM_FUNCTIONS = `
# shellcheck disable=SC2034 # shared by every kubeadm phase; each uses some of them
ADMIN_CONF=/etc/kubernetes/admin.conf KUBELET_CONF=/etc/kubernetes/kubelet.conf APISERVER_MANIFEST=/etc/kubernetes/manifests/kube-apiserver.yaml
TOKEN_PATTERN='^[a-z0-9]{6}[.][a-z0-9]{16}$'
KEY_PATTERN='^[0-9a-f]{64}$'

# Read a secret and check its shape without ever printing it; the value goes to the variable named $1.
read_secret_checked() {
  local var="$1" name="$2" pattern="$3" shape="$4" value
  value="$(secret "$name")" || die "secret $name is missing on this node"
  [[ $value =~ $pattern ]] || die "secret $name is not a valid $shape; regenerate it and deploy again"
  printf -v "$var" '%s' "$value"
}

# A new 0600 temporary file, removed however the script ends; its path goes to the variable named $1.
make_private_tmp() {
  local f
  f="$(mktemp "\${TMPDIR:-/tmp}/kubeadm-ha.XXXXXX")"
  chmod 0600 "$f"
  also_on_exit "rm -f -- $(printf '%q' "$f")"
  printf -v "$1" '%s' "$f"
}

# Copy config $1 into the existing private file $2 with ${BOOTSTRAP_TOKEN_PLACEHOLDER} and ${CERTIFICATE_KEY_PLACEHOLDER}
# filled in from the secrets. Bash substitution only: no secret on a command line.
fill_secrets() {
  local src="$1" dest="$2" content token key
  content="$(cat "$src")"
  if [[ $content == *${BOOTSTRAP_TOKEN_PLACEHOLDER}* ]]; then
    read_secret_checked token bootstrap-token "$TOKEN_PATTERN" "bootstrap token ([a-z0-9]{6}.[a-z0-9]{16})"
    content="\${content//${BOOTSTRAP_TOKEN_PLACEHOLDER}/$token}"
  fi
  if [[ $content == *${CERTIFICATE_KEY_PLACEHOLDER}* ]]; then
    read_secret_checked key certificate-key "$KEY_PATTERN" "certificate key (64 hex digits)"
    content="\${content//${CERTIFICATE_KEY_PLACEHOLDER}/$key}"
  fi
  printf '%s\\n' "$content" >"$dest"
}

# kubeadm's own check of a filled config (unknown or misplaced fields, bad values), before anything changes.
validate_config() {
  kubeadm config validate --config "$1" 2>&1 | redact_secrets \\
    || die "kubeadm refused the configuration (its message is above); nothing was changed on this node. Fix the spec and deploy again"
}

# Delete this round's bootstrap token (its id is the part before the dot); a missing one is fine.
delete_round_token() {
  local token
  read_secret_checked token bootstrap-token "$TOKEN_PATTERN" "bootstrap token"
  if kubeadm token delete "\${token%%.*}" --kubeconfig "$ADMIN_CONF" >/dev/null 2>&1; then
    printf '[kubeadm-ha] %s %s: token %s deleted\\n' "$NODE" "$PHASE" "\${token%%.*}"
  else
    warn "could not delete bootstrap token \${token%%.*} (it expires by itself within ${BOOTSTRAP_TOKEN_TTL})"
  fi
}

# Copy stdin to stdout with the join secrets masked: kubeadm prints join commands and keys.
redact_secrets() {
  local line token key
  token="$(secret bootstrap-token 2>/dev/null || true)"
  key="$(secret certificate-key 2>/dev/null || true)"
  while IFS= read -r line || [ -n "$line" ]; do
    if [ -n "$token" ]; then line="\${line//"$token"/<bootstrap-token>}"; fi
    if [ -n "$key" ]; then line="\${line//"$key"/<certificate-key>}"; fi
    printf '%s\\n' "$line"
  done
}

# serverVersion.gitVersion from \`kubectl version -o json\` on stdin; nothing when the server did not answer.
server_git_version() {
  tr -d ' \\t\\r\\n' | sed -n 's/.*"serverVersion":{[^}]*"gitVersion":"\\([^"]*\\)".*/\\1/p'
}

# The Kubernetes version this node's cluster runs: the API's answer, else the local apiserver manifest's image tag.
running_version() {
  local v
  v="$(kubectl --kubeconfig "$1" version -o json --request-timeout=10s 2>/dev/null | server_git_version || true)"
  if [ -z "$v" ] && [ -f "$APISERVER_MANIFEST" ]; then
    v="$(sed -n 's/^[[:space:]]*image:[[:space:]]*[^[:space:]]*kube-apiserver:\\(v[0-9][^[:space:]@"]*\\).*/\\1/p' "$APISERVER_MANIFEST" | head -n 1)"
  fi
  printf '%s' "$v"
}

# Stop when a node built earlier runs another version than the spec: changing it is kubeadm upgrade's job.
# $1 says what the node is, $2 the kubeconfig, $3 "strict" to stop also when the version cannot be read.
check_running_version() {
  local v
  v="$(running_version "$2")"
  if [ -z "$v" ]; then
    if [ "$3" = strict ]; then die "$1, but its Kubernetes version could not be read (the API does not answer and no apiserver manifest names it); check the control plane, then deploy again"; fi
    warn "$1, but its Kubernetes version could not be read; not comparing it with kubernetes.version $KUBE_VERSION"
    return 0
  fi
  if [ "$v" != "v$KUBE_VERSION" ]; then
    die "$1 and runs Kubernetes $v, but kubernetes.version is $KUBE_VERSION. kubeadm-ha does not change the version of a running cluster: upgrade it with kubeadm upgrade (plan, then apply on each node), or set kubernetes.version back to \${v#v}"
  fi
}

# The control plane that mints join material (Terraform's join_via, uploaded into the stage); this
# node when it is absent (a script run by hand from the review tree).
join_via() { if [ -f "$STAGE/join-via" ]; then cat "$STAGE/join-via"; else printf '%s' "$NODE"; fi; }

# Whether token $1 (the id part) exists; quiet, the listing holds whole tokens.
token_exists() {
  kubeadm token list --kubeconfig "$ADMIN_CONF" 2>/dev/null | awk '{ print $1 }' | grep -Eq "^$1([.]|$)"
}

# Wait until URL answers with a 2xx status, with progress every 10 s; stop after LIMIT seconds naming WHAT.
wait_healthz() {
  local url="$1" limit="$2" what="$3" start elapsed last=0
  start=$SECONDS
  until curl -fsk --max-time 3 -o /dev/null "$url"; do
    elapsed=$((SECONDS - start))
    if [ "$elapsed" -ge "$limit" ]; then die "$what did not answer $url within \${limit}s"; fi
    if [ $((elapsed - last)) -ge 10 ]; then
      printf '[kubeadm-ha] %s %s: waiting for %s at %s (%ss of %ss)\\n' "$NODE" "$PHASE" "$what" "$url" "$elapsed" "$limit"
      last=$elapsed
    fi
    sleep 2
  done
  printf '[kubeadm-ha] %s %s: %s answers %s after %ss\\n' "$NODE" "$PHASE" "$what" "$url" "$((SECONDS - start))"
}
`;

function kubeScript(
  phase: string,
  node: NodeSpec,
  files: RenderedFile[],
  secrets: SecretName[],
  spec: ClusterSpec,
  body: string,
): string {
  const header = `KUBE_VERSION=${shq(spec.kubernetes.version)}
${COMMON_FUNCTIONS.trim()}
${KUBEADM_FUNCTIONS.trim()}
`;
  return phaseScript({ phase, node: node.name, files, secrets, body: `${header}\n${body.trim()}` });
}

// /readyz: ready to serve (etcd reached, informers synced), not just alive; /healthz is deprecated.
const vipHealthz = (spec: ClusterSpec): string =>
  `https://${spec.controlPlaneEndpoint.vip}:${spec.controlPlaneEndpoint.port}/readyz`;
const LOCAL_HEALTHZ = `https://127.0.0.1:${APISERVER_BIND_PORT}/readyz`;

/**
 * `kubeadm init` on the first control plane, with the cluster CA installed beforehand; or, when
 * the first control plane is being replaced (join_via names another control plane), `kubeadm
 * join` into the running cluster with material minted there. Init never runs while a cluster
 * answers at the endpoint: that would start a second cluster behind the same VIP.
 */
export function initStep(spec: ClusterSpec, ctx: KubeadmContext, opts: WaitOptions = {}): Step {
  const node = firstControlPlane(spec);
  const wait = opts.waitSeconds ?? DEFAULT_WAIT_SECONDS;
  const files: RenderedFile[] = [
    { path: INIT_CONFIG_PATH, content: renderInitConfig(spec, ctx), mode: "0600" },
    { path: JOIN_CONFIG_PATH, content: renderJoinConfig(spec, node, ctx), mode: "0600" },
    {
      path: STAGED_CA_PATH,
      content: ctx.caCertPem.endsWith("\n") ? ctx.caCertPem : `${ctx.caCertPem}\n`,
      mode: "0644",
    },
  ];
  const secrets: SecretName[] = ["bootstrap-token", "certificate-key", "ca-key"];
  const kubeVip = spec.loadBalancer.mode === "kube-vip";
  const toSuper = shq(kubeconfigSwitch(ADMIN_CONF, SUPER_ADMIN_CONF));
  const toAdmin = shq(kubeconfigSwitch(SUPER_ADMIN_CONF, ADMIN_CONF));
  // Kubernetes >= 1.29 (every supported minor): admin.conf has no rights until init's RBAC phase,
  // and kube-vip must hold the VIP before that, so it starts with super-admin.conf and returns
  // to admin.conf after init (also when init fails, so the manifest never stays on it).
  const kubeVipSuperAdmin = `step "kube-vip: super-admin.conf during kubeadm init (admin.conf gets its rights only from init itself)"
kube_vip_admin_conf() { sed -i ${toAdmin} ${shq(KUBE_VIP_MANIFEST)}; }
sed -i ${toSuper} ${shq(KUBE_VIP_MANIFEST)}
also_on_exit kube_vip_admin_conf`;
  const kubeVipAdmin = `step "kube-vip: back to admin.conf now that init has granted its rights"
kube_vip_admin_conf`;
  const body = `
step "check for an existing control plane"
if [ -f "$ADMIN_CONF" ] && [ -f "$APISERVER_MANIFEST" ]; then
  if ! cmp -s ${shq(STAGED_CA_PATH)} /etc/kubernetes/pki/ca.crt; then
    die "this node runs a cluster whose CA (/etc/kubernetes/pki/ca.crt) is not the CA kubeadm-ha holds for it; joins pinned to that CA would fail. Restore the original CA material, or rebuild the cluster (kubeadm reset) to use the new one"
  fi
  check_running_version "this node is already initialized" "$ADMIN_CONF" strict
  printf '[kubeadm-ha] %s init: already initialized, kubeadm settings are not re-applied to a running cluster\\n' "$NODE"
  exit 0
fi
if [ -f "$ADMIN_CONF" ] || [ -f "$APISERVER_MANIFEST" ] || [ -f "$KUBELET_CONF" ]; then
  die "an earlier kubeadm init or join on this node stopped half way (some of admin.conf, kubelet.conf, manifests/kube-apiserver.yaml exist, not all); inspect it, run kubeadm reset -f here, then deploy again"
fi

via="$(join_via)"
if [ "$via" != "$NODE" ]; then
  step "join the running cluster as a control plane (material minted on $via; this node is being replaced)"
  wait_healthz ${shq(vipHealthz(spec))} ${wait} "the API server behind the VIP"
  config=""
  make_private_tmp config
  fill_secrets ${shq(JOIN_CONFIG_PATH)} "$config"
  validate_config "$config"
  kubeadm join --config "$config" 2>&1 | redact_secrets \\
    || die "kubeadm join failed (its output is above); fix the cause, run kubeadm reset -f on this node, then run node:replace again"
  step "wait for this node's API server"
  wait_healthz ${shq(LOCAL_HEALTHZ)} ${wait} "this node's API server"
  exit 0
fi

step "check that no cluster answers at the endpoint yet"
if curl -fs --cacert ${shq(STAGED_CA_PATH)} --max-time 3 -o /dev/null ${shq(vipHealthz(spec))}; then
  die "a cluster with this CA already answers at ${vipHealthz(spec)}, but this node has no kubeadm state (reinstalled, or its disk was replaced): kubeadm init here would start a second cluster behind the same VIP. Run bun run node:replace $NODE, which joins it to the running cluster through another control plane"
fi

step "install the cluster CA before kubeadm init"
install -d -m 0755 /etc/kubernetes/pki
install -m 0644 ${shq(STAGED_CA_PATH)} /etc/kubernetes/pki/ca.crt
# From the stage (removed when this script ends): the CA key's only copy on a host is kubeadm's.
install -m 0600 "$STAGE/secrets/ca-key" /etc/kubernetes/pki/ca.key
if command -v openssl >/dev/null; then
  cert_pub="$(openssl x509 -noout -pubkey -in /etc/kubernetes/pki/ca.crt)"
  key_pub="$(openssl pkey -pubout -in /etc/kubernetes/pki/ca.key)"
  [ "$cert_pub" = "$key_pub" ] || die "secret ca-key is not the private key of the CA certificate; regenerate the CA and its key together"
fi

step "kubeadm init"
config=""
make_private_tmp config
fill_secrets ${shq(INIT_CONFIG_PATH)} "$config"
validate_config "$config"
${kubeVip ? `${kubeVipSuperAdmin}\n` : ""}# No certificate upload here: each control-plane join uploads them with a key of its own.
kubeadm init --config "$config" --skip-token-print 2>&1 | redact_secrets \\
  || die "kubeadm init failed (its output is above); fix the cause, run kubeadm reset -f on this node, then deploy again"
${kubeVip ? `${kubeVipAdmin}\n` : ""}
step "wait for this node's API server"
wait_healthz ${shq(LOCAL_HEALTHZ)} ${wait} "this node's API server"
step "wait for the API through the load balancer"
wait_healthz ${shq(vipHealthz(spec))} ${wait} "the API server behind the VIP (keepalived + haproxy)"

step "delete init's bootstrap token (every join mints its own)"
delete_round_token
`;
  return {
    phase: "init",
    node,
    files,
    secrets,
    joinVia: "reads",
    script: kubeScript("init", node, files, secrets, spec, body),
    before: joinTokenRun(spec, node, true),
    after: joinCleanupRun(spec, node, true),
  };
}

/** Which manifest the CNI step applies, or null for "none" (the rules are validate.ts's). */
export function cniManifest(spec: ClusterSpec): CniSource | null {
  const manifest = chosenCniManifest(spec);
  if (manifest === undefined)
    throw new Error(`no manifest for CNI ${spec.networking.cni.name} (validation should have refused this spec)`);
  return manifest;
}

/** Apply the pod network on the first control plane. Server-side apply: idempotent, and calico's CRDs exceed client-side apply's annotation limit. */
export function cniStep(spec: ClusterSpec): Step {
  const node = firstControlPlane(spec);
  const manifest = cniManifest(spec);
  const body =
    manifest === null
      ? `step "CNI: networking.cni.name is none, nothing applied (install a pod network yourself; nodes stay NotReady until then)"`
      : `
MANIFEST=${shq(manifest.manifest)}
WANT_SHA256=${shq(manifest.sha256 ?? "")}
step "CNI: apply ${spec.networking.cni.name} from $MANIFEST"
[ -f "$ADMIN_CONF" ] || die "$ADMIN_CONF is missing: the init step has not completed on this node"
# Applied as cluster-admin: a URL is downloaded and must have the pinned sha256 before kubectl sees it.
case "$MANIFEST" in
  https://*)
    file=""
    make_private_tmp file
    curl -fsSL --max-time 120 -o "$file" "$MANIFEST" || die "could not download the CNI manifest $MANIFEST (networking.cni)"
    ;;
  *) file="$MANIFEST" ;;
esac
if [ -n "$WANT_SHA256" ]; then
  got="$(sha256sum <"$file" | cut -d' ' -f1)"
  [ "$got" = "$WANT_SHA256" ] || die "the CNI manifest $MANIFEST has sha256 $got, not $WANT_SHA256 (networking.cni.sha256); nothing was applied"
fi
kubectl --kubeconfig "$ADMIN_CONF" apply --server-side --force-conflicts -f "$file" \\
  || die "kubectl apply of the CNI manifest $MANIFEST failed (networking.cni)"
`;
  return { phase: "cni", node, files: [], secrets: [], script: kubeScript("cni", node, [], [], spec, body) };
}

/**
 * Runs on the join-via control plane before a join: mint this join's own bootstrap token (and, for
 * a control plane, upload the certificates encrypted with this join's own key). The values are new
 * for every run of the join step, so a join retried or added days after init always has fresh,
 * unexpired material, and a token seen on one node is never valid for another round.
 * `onlyIfRunning`: for the first control plane's step, which mints only when a cluster already
 * runs there (a replacement); at the first init there is nothing to mint from.
 */
function joinTokenRun(spec: ClusterSpec, joining: NodeSpec, onlyIfRunning = false): NodeRun {
  const controlPlane = joining.role === "control-plane";
  const secrets: SecretName[] = controlPlane ? ["bootstrap-token", "certificate-key"] : ["bootstrap-token"];
  const missing = onlyIfRunning
    ? `if [ ! -f "$ADMIN_CONF" ]; then
  printf '[kubeadm-ha] %s %s: no cluster runs here yet, so %s starts one with kubeadm init; nothing to mint\\n' "$NODE" "$PHASE" ${shq(joining.name)}
  exit 0
fi`
    : `[ -f "$ADMIN_CONF" ] || die "$ADMIN_CONF is missing: this control plane is not initialized (choose a healthy one as join_via)"`;
  const body = `
NODE="$(join_via)"
${missing}
src=""
config=""
make_private_tmp src
make_private_tmp config
printf '%s' ${shq(renderJoinTokenConfig(spec, controlPlane))} >"$src"
fill_secrets "$src" "$config"

step ${shq(`bootstrap token for ${joining.name}`)}
read_secret_checked token bootstrap-token "$TOKEN_PATTERN" "bootstrap token"
# The token comes from the config file, not argv; kubeadm prints it on stdout, hence /dev/null.
kubeadm token create --config "$config" --kubeconfig "$ADMIN_CONF" >/dev/null || die "kubeadm token create failed"
printf '[kubeadm-ha] %s %s: token %s created for %s (ttl ${BOOTSTRAP_TOKEN_TTL}, deleted after the join)\\n' "$NODE" "$PHASE" "\${token%%.*}" ${shq(joining.name)}
${
  controlPlane
    ? `
step ${shq(`control-plane certificates for ${joining.name} (secret kube-system/kubeadm-certs)`)}
kubeadm init phase upload-certs --upload-certs --config "$config" 2>&1 | redact_secrets || die "kubeadm init phase upload-certs failed"`
    : ""
}
`;
  return joinViaRun(spec, "join-token", secrets, body);
}

/** A run of a join round on the join-via control plane (the Terraform variable picks the host). */
function joinViaRun(spec: ClusterSpec, name: string, secrets: SecretName[], body: string): NodeRun {
  const node = firstControlPlane(spec);
  return {
    node,
    name,
    files: [],
    secrets,
    joinVia: "runs-there",
    script: kubeScript(name, node, [], secrets, spec, body),
  };
}

/** Runs on the join-via control plane after a join: the round's token and uploaded certificates are deleted. */
function joinCleanupRun(spec: ClusterSpec, joining: NodeSpec, onlyIfMinted = false): NodeRun {
  const secrets: SecretName[] = ["bootstrap-token"];
  const cleanup = `step ${shq(`delete the join material of ${joining.name}`)}
delete_round_token
${
  joining.role === "control-plane"
    ? `kubectl --kubeconfig "$ADMIN_CONF" -n kube-system delete secret kubeadm-certs --ignore-not-found >/dev/null \\
  || warn "could not delete secret kube-system/kubeadm-certs (kubeadm deletes it two hours after the upload)"`
    : ""
}`;
  // After a first init there is no round to clean up (init deletes its own token).
  const body = onlyIfMinted
    ? `
NODE="$(join_via)"
read_secret_checked token bootstrap-token "$TOKEN_PATTERN" "bootstrap token"
if [ -f "$ADMIN_CONF" ] && token_exists "\${token%%.*}"; then
${cleanup}
else
  printf '[kubeadm-ha] %s %s: no join round to clean up for %s\\n' "$NODE" "$PHASE" ${shq(joining.name)}
fi
`
    : `
NODE="$(join_via)"
${cleanup}
`;
  return joinViaRun(spec, "join-cleanup", secrets, body);
}

/** `kubeadm join` for a further control plane or a worker, through the VIP, pinned to the cluster CA. */
export function joinStep(spec: ClusterSpec, node: NodeSpec, ctx: KubeadmContext, opts: WaitOptions = {}): Step {
  const wait = opts.waitSeconds ?? DEFAULT_WAIT_SECONDS;
  const controlPlane = node.role === "control-plane";
  const files: RenderedFile[] = [{ path: JOIN_CONFIG_PATH, content: renderJoinConfig(spec, node, ctx), mode: "0600" }];
  const secrets: SecretName[] = controlPlane ? ["bootstrap-token", "certificate-key"] : ["bootstrap-token"];
  const kubeconfig = controlPlane ? `"$ADMIN_CONF"` : `"$KUBELET_CONF"`;
  const body = `
step "check whether this node has already joined"
if [ -f "$KUBELET_CONF" ]; then
  check_running_version "this node has already joined the cluster" ${kubeconfig} lenient
  printf '[kubeadm-ha] %s join: already joined, kubeadm join is not run again\\n' "$NODE"
  exit 0
fi

step "wait for the API through the load balancer"
wait_healthz ${shq(vipHealthz(spec))} ${wait} "the API server behind the VIP"

step "kubeadm join as ${controlPlane ? "a control plane" : "a worker"}"
config=""
make_private_tmp config
fill_secrets ${shq(JOIN_CONFIG_PATH)} "$config"
validate_config "$config"
kubeadm join --config "$config" 2>&1 | redact_secrets \\
  || die "kubeadm join failed (its output is above); fix the cause, run kubeadm reset -f on this node, then deploy again"
${
  controlPlane
    ? `
step "wait for this node's API server"
wait_healthz ${shq(LOCAL_HEALTHZ)} ${wait} "this node's API server"`
    : ""
}
`;
  return {
    phase: "join",
    node,
    files,
    secrets,
    script: kubeScript("join", node, files, secrets, spec, body),
    before: joinTokenRun(spec, node),
    after: joinCleanupRun(spec, node),
  };
}
