// LAB STAND-IN HELPER — how kubeadm decodes its configuration files, so the lab's kubeadm
// stand-in refuses what kubeadm refuses. Written from the upstream Go types (kubernetes/kubernetes):
//   cmd/kubeadm/app/apis/kubeadm/v1beta3/types.go     kubeadm.k8s.io/v1beta3 (every modelled minor)
//   cmd/kubeadm/app/apis/kubeadm/v1beta4/types.go     kubeadm.k8s.io/v1beta4 (1.31+, release-1.31 fields)
//   cmd/kubeadm/app/apis/bootstraptoken/v1/types.go   InitConfiguration.bootstrapTokens[]
//   staging/src/k8s.io/kubelet/config/v1beta1/types.go KubeletConfiguration (top level, per minor)
// and from kubeadm's own validation (cmd/kubeadm/app/apis/kubeadm/validation) for the fields
// kubeadm-ha writes.
//
// What kubeadm does with a bad document, and what the lab does:
//   - wrong type, a malformed token or duration, apiVersion/kind missing, an apiVersion this
//     kubeadm does not know, a value its validation refuses: kubeadm fails (init, join, validate);
//   - an unknown or misplaced field, a duplicate field, a document of a kind it does not read:
//     `kubeadm config validate` fails ("strict decoding error: unknown field ..."), while init and
//     join only print a warning and drop it. The lab refuses both ways: a field kubeadm silently
//     drops is a product bug that must fail a test.
import { isIP } from "node:net";
import { parseAllDocuments } from "yaml";

type Scalar = "string" | "bool" | "int32" | "int64" | "number" | "duration" | "time" | "token" | "object";
export type Schema = Scalar | { list: Schema } | { map: Schema } | { struct: Fields };
type Fields = Record<string, Schema | { since: number; schema: Schema }>;

const str: Schema = "string";
const strList: Schema = { list: str };
const strMap: Schema = { map: str };
const struct = (fields: Fields): Schema => ({ struct: fields });
const since = (minor: number, schema: Schema) => ({ since: minor, schema });

const KUBEADM = "kubeadm.k8s.io";
const KUBELET = "kubelet.config.k8s.io/v1beta1";

// Shared by both kubeadm API versions.
const apiEndpoint = struct({ advertiseAddress: str, bindPort: "int32" });
const imageMeta: Fields = { imageRepository: str, imageTag: str };
const hostPathMount = struct({ name: str, hostPath: str, mountPath: str, readOnly: "bool", pathType: str });
const taint = struct({ key: str, value: str, effect: str, timeAdded: "time" });
const bootstrapToken = struct({
  token: "token",
  description: str,
  ttl: "duration",
  expires: "time",
  usages: strList,
  groups: strList,
});
const networking = struct({ serviceSubnet: str, podSubnet: str, dnsDomain: str });
const externalEtcd = struct({ endpoints: strList, caFile: str, certFile: str, keyFile: str });
const patches = struct({ directory: str });
const bootstrapTokenDiscovery = struct({
  token: str,
  apiServerEndpoint: str,
  caCertHashes: strList,
  unsafeSkipCAVerification: "bool",
});

/** The kubeadm kinds of one API version: v1beta3 (maps, timeouts spread around) or v1beta4. */
function kubeadmKinds(v4: boolean): Record<string, Schema> {
  // v1beta3: extraArgs and kubeletExtraArgs are maps; v1beta4: lists of {name, value}, duplicates allowed.
  const extraArgs: Schema = v4 ? { list: struct({ name: str, value: str }) } : strMap;
  const extraEnvs: Fields = v4 ? { extraEnvs: { list: struct({ name: str, value: str, valueFrom: "object" }) } } : {};
  const component: Fields = { extraArgs, extraVolumes: { list: hostPathMount }, ...extraEnvs };
  const nodeRegistration = struct({
    name: str,
    criSocket: str,
    taints: { list: taint },
    kubeletExtraArgs: extraArgs,
    ignorePreflightErrors: strList,
    imagePullPolicy: str,
    ...(v4 ? { imagePullSerial: "bool" as const } : {}),
  });
  const timeouts = struct({
    controlPlaneComponentHealthCheck: "duration",
    kubeletHealthCheck: "duration",
    kubernetesAPICall: "duration",
    etcdAPICall: "duration",
    tlsBootstrap: "duration",
    discovery: "duration",
    upgradeManifests: "duration",
  });
  const v4Only = (fields: Fields): Fields => (v4 ? fields : {});
  const v3Only = (fields: Fields): Fields => (v4 ? {} : fields);
  return {
    InitConfiguration: struct({
      bootstrapTokens: { list: bootstrapToken },
      nodeRegistration,
      localAPIEndpoint: apiEndpoint,
      certificateKey: str,
      skipPhases: strList,
      patches,
      ...v4Only({ dryRun: "bool", timeouts }),
    }),
    ClusterConfiguration: struct({
      etcd: struct({
        local: struct({
          ...imageMeta,
          dataDir: str,
          extraArgs,
          ...extraEnvs,
          serverCertSANs: strList,
          peerCertSANs: strList,
        }),
        external: externalEtcd,
      }),
      networking,
      kubernetesVersion: str,
      controlPlaneEndpoint: str,
      apiServer: struct({ ...component, certSANs: strList, ...v3Only({ timeoutForControlPlane: "duration" }) }),
      controllerManager: struct(component),
      scheduler: struct(component),
      dns: struct({ ...imageMeta, ...v4Only({ disabled: "bool" }) }),
      certificatesDir: str,
      imageRepository: str,
      featureGates: { map: "bool" },
      clusterName: str,
      ...v4Only({
        proxy: struct({ disabled: "bool" }),
        encryptionAlgorithm: str,
        certificateValidityPeriod: "duration",
        caCertificateValidityPeriod: "duration",
      }),
    }),
    JoinConfiguration: struct({
      nodeRegistration,
      caCertPath: str,
      discovery: struct({
        bootstrapToken: bootstrapTokenDiscovery,
        file: struct({ kubeConfigPath: str }),
        tlsBootstrapToken: str,
        ...v3Only({ timeout: "duration" }),
      }),
      controlPlane: struct({ localAPIEndpoint: apiEndpoint, certificateKey: str }),
      skipPhases: strList,
      patches,
      ...v4Only({ dryRun: "bool", timeouts }),
    }),
  };
}

/** KubeletConfiguration's top level with the minor each later field appeared in. */
const kubeletConfiguration = struct({
  enableServer: "bool",
  staticPodPath: str,
  podLogsDir: str,
  syncFrequency: "duration",
  fileCheckFrequency: "duration",
  httpCheckFrequency: "duration",
  staticPodURL: str,
  staticPodURLHeader: { map: strList },
  address: str,
  port: "int32",
  readOnlyPort: "int32",
  tlsCertFile: str,
  tlsPrivateKeyFile: str,
  tlsCipherSuites: strList,
  tlsMinVersion: str,
  rotateCertificates: "bool",
  serverTLSBootstrap: "bool",
  authentication: "object",
  authorization: "object",
  registryPullQPS: "int32",
  registryBurst: "int32",
  imagePullCredentialsVerificationPolicy: since(33, str),
  preloadedImagesVerificationAllowlist: since(33, strList),
  eventRecordQPS: "int32",
  eventBurst: "int32",
  enableDebuggingHandlers: "bool",
  enableContentionProfiling: "bool",
  healthzPort: "int32",
  healthzBindAddress: str,
  oomScoreAdj: "int32",
  clusterDomain: str,
  clusterDNS: strList,
  streamingConnectionIdleTimeout: "duration",
  nodeStatusUpdateFrequency: "duration",
  nodeStatusReportFrequency: "duration",
  nodeLeaseDurationSeconds: "int32",
  imageMinimumGCAge: "duration",
  imageMaximumGCAge: "duration",
  imageGCHighThresholdPercent: "int32",
  imageGCLowThresholdPercent: "int32",
  volumeStatsAggPeriod: "duration",
  kubeletCgroups: str,
  systemCgroups: str,
  cgroupRoot: str,
  cgroupsPerQOS: "bool",
  cgroupDriver: str,
  cpuManagerPolicy: str,
  singleProcessOOMKill: since(32, "bool"),
  cpuManagerPolicyOptions: strMap,
  cpuManagerReconcilePeriod: "duration",
  memoryManagerPolicy: str,
  topologyManagerPolicy: str,
  topologyManagerScope: str,
  topologyManagerPolicyOptions: strMap,
  qosReserved: strMap,
  runtimeRequestTimeout: "duration",
  hairpinMode: str,
  maxPods: "int32",
  podCIDR: str,
  podPidsLimit: "int64",
  resolvConf: str,
  runOnce: "bool",
  cpuCFSQuota: "bool",
  cpuCFSQuotaPeriod: "duration",
  nodeStatusMaxImages: "int32",
  maxOpenFiles: "int64",
  contentType: str,
  kubeAPIQPS: "int32",
  kubeAPIBurst: "int32",
  serializeImagePulls: "bool",
  maxParallelImagePulls: "int32",
  evictionHard: strMap,
  evictionSoft: strMap,
  evictionSoftGracePeriod: strMap,
  evictionPressureTransitionPeriod: "duration",
  evictionMaxPodGracePeriod: "int32",
  evictionMinimumReclaim: strMap,
  mergeDefaultEvictionSettings: since(33, "bool"),
  podsPerCore: "int32",
  enableControllerAttachDetach: "bool",
  protectKernelDefaults: "bool",
  makeIPTablesUtilChains: "bool",
  iptablesMasqueradeBit: "int32",
  iptablesDropBit: "int32",
  featureGates: { map: "bool" },
  failSwapOn: "bool",
  memorySwap: struct({ swapBehavior: str }),
  containerLogMaxSize: str,
  containerLogMaxFiles: "int32",
  containerLogMaxWorkers: "int32",
  containerLogMonitorInterval: "duration",
  configMapAndSecretChangeDetectionStrategy: str,
  systemReserved: strMap,
  kubeReserved: strMap,
  reservedSystemCPUs: str,
  showHiddenMetricsForVersion: str,
  systemReservedCgroup: str,
  kubeReservedCgroup: str,
  enforceNodeAllocatable: strList,
  allowedUnsafeSysctls: strList,
  volumePluginDir: str,
  providerID: str,
  kernelMemcgNotification: "bool",
  logging: "object",
  enableSystemLogHandler: "bool",
  enableSystemLogQuery: "bool",
  shutdownGracePeriod: "duration",
  shutdownGracePeriodCriticalPods: "duration",
  shutdownGracePeriodByPodPriority: { list: "object" },
  crashLoopBackOff: since(32, "object"),
  reservedMemory: { list: "object" },
  enableProfilingHandler: "bool",
  enableDebugFlagsHandler: "bool",
  seccompDefault: "bool",
  memoryThrottlingFactor: "number",
  registerWithTaints: { list: taint },
  registerNode: "bool",
  tracing: "object",
  localStorageCapacityIsolation: "bool",
  containerRuntimeEndpoint: str,
  imageServiceEndpoint: str,
  failCgroupV1: since(31, "bool"),
  userNamespaces: since(33, "object"),
});

/** The oldest Kubernetes minor this model covers (the kubelet field list starts there). */
export const OLDEST_MODELLED_MINOR = 30;

/** "v1.31.4" (or "1.31.4") -> 31; undefined when it is not a release version. */
export function minorOf(version: string): number | undefined {
  const m = /^v?1\.(\d+)\.\d+(?:[-+][0-9A-Za-z.+-]*)?$/.exec(version.trim());
  return m ? Number(m[1]) : undefined;
}

/** Which commands read a config file, and so which kinds each accepts. */
export type ConfigUse = "init" | "join" | "validate";

export interface ConfigCheck {
  /** Refusals (kubeadm's wording where it has one). */
  errors: string[];
  /** What kubeadm prints and carries on with. */
  warnings: string[];
  /** The documents by kind, as decoded (empty when errors). */
  docs: Record<string, Record<string, any>>;
}

const GO_DURATION = /^[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+$/;
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$/;
const TOKEN = /^([a-z0-9]{6})\.([a-z0-9]{16})$/;
const goType: Record<Scalar, string> = {
  string: "string",
  bool: "bool",
  int32: "int32",
  int64: "int64",
  number: "float64",
  duration: "v1.Duration",
  time: "v1.Time",
  token: "v1.BootstrapTokenString",
  object: "struct",
};
const jsonKind = (v: unknown): string =>
  v === null ? "null" : Array.isArray(v) ? "array" : typeof v === "object" ? "object" : typeof v;
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

interface Walk {
  kind: string;
  minor: number;
  decode: string[];
  strict: string[];
}

/** Go's encoding/json and kubeadm's strict decoder over one value: type errors and unknown fields. */
function walk(value: unknown, schema: Schema, path: string, w: Walk): void {
  if (value === null) return; // JSON null leaves a Go field at its zero value
  const mismatch = (type: string): void => {
    w.decode.push(`json: cannot unmarshal ${jsonKind(value)} into Go struct field ${w.kind}.${path} of type ${type}`);
  };
  if (typeof schema === "string") {
    switch (schema) {
      case "string":
        if (typeof value !== "string") mismatch("string");
        return;
      case "bool":
        if (typeof value !== "boolean") mismatch("bool");
        return;
      case "int32":
      case "int64": {
        const limit = schema === "int32" ? 2 ** 31 : 2 ** 63;
        if (typeof value !== "number" || !Number.isInteger(value) || value < -limit || value >= limit) mismatch(schema);
        return;
      }
      case "number":
        if (typeof value !== "number") mismatch("float64");
        return;
      case "duration":
        if (typeof value !== "string") mismatch(goType.duration);
        else if (value !== "0" && !GO_DURATION.test(value))
          w.decode.push(`${w.kind}.${path}: time: invalid duration ${JSON.stringify(value)}`);
        return;
      case "time":
        if (typeof value !== "string") mismatch(goType.time);
        else if (!RFC3339.test(value))
          w.decode.push(
            `${w.kind}.${path}: parsing time ${JSON.stringify(value)} as "2006-01-02T15:04:05Z07:00": cannot parse`,
          );
        return;
      case "token":
        if (typeof value !== "string") mismatch(goType.token);
        else if (!TOKEN.test(value))
          w.decode.push(
            `the bootstrap token "${value.slice(0, 6)}..." was not of the form "^([a-z0-9]{6})\\.([a-z0-9]{16})$"`,
          );
        return;
      case "object":
        if (!isObject(value)) mismatch("struct");
        return;
    }
  }
  if ("list" in schema) {
    if (!Array.isArray(value)) {
      mismatch("[]...");
      return;
    }
    value.forEach((item, i) => {
      walk(item, schema.list, `${path}[${i}]`, w);
    });
    return;
  }
  if (!isObject(value)) {
    mismatch("map or struct");
    return;
  }
  if ("map" in schema) {
    for (const [k, v] of Object.entries(value)) walk(v, schema.map, `${path}.${k}`, w);
    return;
  }
  for (const [k, v] of Object.entries(value)) {
    const at = path ? `${path}.${k}` : k;
    const field = schema.struct[k];
    const inner = field && typeof field === "object" && "since" in field ? field : { since: 0, schema: field };
    if (!inner.schema || w.minor < inner.since) w.strict.push(`unknown field ${JSON.stringify(at)}`);
    else walk(v, inner.schema as Schema, at, w);
  }
}

// ---------------------------------------------------------------------------------------------
// kubeadm's validation of the values (the subset kubeadm-ha's fields reach)

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const isDnsSubdomain = (s: string) => s.length <= 253 && DNS1123_SUBDOMAIN.test(s);

function isCidr(s: string): boolean {
  const m = /^(.+)\/(\d{1,3})$/.exec(s);
  if (!m) return false;
  const family = isIP(m[1]!);
  return family !== 0 && Number(m[2]) <= (family === 4 ? 32 : 128);
}

/** "host:port" or "host" with a valid host; port 1-65535. */
function hostPortProblem(s: string): string | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(s);
  if (!m) return "must be a host, optionally with :port";
  const host = m[1] ?? m[2]!;
  if (isIP(host) === 0 && !isDnsSubdomain(host)) return `${host} is neither an IP address nor a DNS name`;
  if (m[3] !== undefined && (Number(m[3]) < 1 || Number(m[3]) > 65535)) return "port must be between 1 and 65535";
  return undefined;
}

function validateEndpoint(ep: Record<string, any> | undefined, path: string, out: string[]): void {
  if (!ep) return;
  if (ep.advertiseAddress && isIP(String(ep.advertiseAddress)) === 0)
    out.push(
      `couldn't use "${ep.advertiseAddress}" as "apiserver-advertise-address", must be ipv4 or ipv6 address (${path}.advertiseAddress)`,
    );
  if (ep.bindPort !== undefined && ep.bindPort !== null && (ep.bindPort < 0 || ep.bindPort > 65535))
    out.push(`${path}.bindPort: Invalid value: ${ep.bindPort}: port number is not valid`);
}

function validateArgs(args: unknown, path: string, out: string[]): void {
  if (!Array.isArray(args)) return;
  args.forEach((a, i) => {
    if (!a?.name) out.push(`${path}: Invalid value: "index ${i}": argument has no name`);
  });
}

function validateNodeRegistration(nr: Record<string, any> | undefined, path: string, out: string[]): void {
  if (!nr) return;
  if (nr.name && !isDnsSubdomain(String(nr.name)))
    out.push(`${path}.name: Invalid value: ${JSON.stringify(nr.name)}: must be a lowercase RFC 1123 subdomain`);
  validateArgs(nr.kubeletExtraArgs, `${path}.kubeletExtraArgs`, out);
  if (nr.imagePullPolicy && !["Always", "IfNotPresent", "Never"].includes(nr.imagePullPolicy))
    out.push(`${path}.imagePullPolicy: Unsupported value: ${JSON.stringify(nr.imagePullPolicy)}`);
}

function validateInit(d: Record<string, any>, out: string[]): void {
  (d.bootstrapTokens ?? []).forEach((t: Record<string, any>, i: number) => {
    for (const u of t.usages ?? [])
      if (!["signing", "authentication"].includes(u))
        out.push(`bootstrapTokens[${i}].usages: Invalid value: ${JSON.stringify(u)}: unknown usage`);
    for (const g of t.groups ?? [])
      if (!/^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$/.test(g))
        out.push(
          `bootstrapTokens[${i}].groups: Invalid value: ${JSON.stringify(g)}: bootstrap group must match "\\Asystem:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]\\z"`,
        );
  });
  validateEndpoint(d.localAPIEndpoint, "localAPIEndpoint", out);
  validateNodeRegistration(d.nodeRegistration, "nodeRegistration", out);
}

function validateCluster(d: Record<string, any>, kubeadmMinor: number, out: string[], warn: string[]): void {
  if (d.kubernetesVersion) {
    const minor = minorOf(String(d.kubernetesVersion));
    if (minor === undefined)
      out.push(
        `kubernetesVersion ${JSON.stringify(d.kubernetesVersion)}: the lab has no network for version labels; give a release version such as v1.${kubeadmMinor}.0`,
      );
    else if (minor < kubeadmMinor - 1)
      out.push(
        `this version of kubeadm only supports deploying clusters with the control plane version >= 1.${kubeadmMinor - 1}.0. Current version: ${d.kubernetesVersion}`,
      );
    else if (minor > kubeadmMinor)
      warn.push(
        `[preflight] WARNING: Kubernetes version is greater than kubeadm version. Please consider to upgrade kubeadm. Kubernetes version: ${d.kubernetesVersion}. Kubeadm version: 1.${kubeadmMinor}.x`,
      );
  }
  if (d.controlPlaneEndpoint) {
    const p = hostPortProblem(String(d.controlPlaneEndpoint));
    if (p) out.push(`controlPlaneEndpoint: Invalid value: ${JSON.stringify(d.controlPlaneEndpoint)}: ${p}`);
  }
  const net = d.networking ?? {};
  for (const key of ["serviceSubnet", "podSubnet"])
    for (const cidr of net[key] ? String(net[key]).split(",") : [])
      if (!isCidr(cidr)) out.push(`networking.${key}: Invalid value: ${JSON.stringify(cidr)}: couldn't parse subnet`);
  if (net.dnsDomain && !isDnsSubdomain(String(net.dnsDomain)))
    out.push(`networking.dnsDomain: Invalid value: ${JSON.stringify(net.dnsDomain)}: must be a DNS subdomain`);
  for (const san of d.apiServer?.certSANs ?? [])
    if (isIP(san) === 0 && !isDnsSubdomain(String(san).replace(/^\*\./, "")))
      out.push(
        `apiServer.certSANs: Invalid value: ${JSON.stringify(san)}: altname is not a valid IP address, DNS label or a DNS label with subdomain wildcards`,
      );
  if (d.etcd?.local && d.etcd?.external)
    out.push("etcd.local, etcd.external: Invalid value: only one of .Etcd.Local or .Etcd.External can be set");
  if (d.etcd?.local?.dataDir && !String(d.etcd.local.dataDir).startsWith("/"))
    out.push(`etcd.local.dataDir: Invalid value: ${JSON.stringify(d.etcd.local.dataDir)}: path is not absolute`);
  for (const c of ["apiServer", "controllerManager", "scheduler"]) validateArgs(d[c]?.extraArgs, `${c}.extraArgs`, out);
  validateArgs(d.etcd?.local?.extraArgs, "etcd.local.extraArgs", out);
  if (d.encryptionAlgorithm && !["RSA-2048", "RSA-3072", "RSA-4096", "ECDSA-P256"].includes(d.encryptionAlgorithm))
    out.push(`encryptionAlgorithm: Unsupported value: ${JSON.stringify(d.encryptionAlgorithm)}`);
}

function validateJoin(d: Record<string, any>, out: string[]): void {
  const disc = d.discovery ?? {};
  if (!disc.bootstrapToken && !disc.file) out.push("discovery: Invalid value: bootstrapToken or file must be set");
  if (disc.bootstrapToken && disc.file)
    out.push("discovery: Invalid value: bootstrapToken and file cannot both be set");
  const bt = disc.bootstrapToken;
  if (bt) {
    if (!TOKEN.test(String(bt.token ?? "")))
      out.push("discovery.bootstrapToken.token: Invalid value: the bootstrap token is invalid");
    if (!bt.apiServerEndpoint) out.push("discovery.bootstrapToken: Required value: APIServerEndpoint is not set");
    else {
      const p = hostPortProblem(String(bt.apiServerEndpoint));
      if (p)
        out.push(
          `discovery.bootstrapToken.apiServerEndpoint: Invalid value: ${JSON.stringify(bt.apiServerEndpoint)}: ${p}`,
        );
    }
    if (!(bt.caCertHashes ?? []).length && !bt.unsafeSkipCAVerification)
      out.push(
        "discovery.bootstrapToken: Invalid value: using token-based discovery without caCertHashes can be unsafe. Set unsafeSkipCAVerification as true in your kubeadm config file or pass --discovery-token-unsafe-skip-ca-verification flag to continue",
      );
    for (const h of bt.caCertHashes ?? [])
      if (!/^sha256:[0-9a-f]{64}$/.test(String(h)))
        out.push(
          `discovery.bootstrapToken.caCertHashes: Invalid value: ${JSON.stringify(h)}: invalid hash, must be sha256:<64 hex digits>`,
        );
  }
  if (disc.tlsBootstrapToken && !TOKEN.test(String(disc.tlsBootstrapToken)))
    out.push("discovery.tlsBootstrapToken: Invalid value: the bootstrap token is invalid");
  validateEndpoint(d.controlPlane?.localAPIEndpoint, "controlPlane.localAPIEndpoint", out);
  validateNodeRegistration(d.nodeRegistration, "nodeRegistration", out);
}

function validateKubelet(d: Record<string, any>, out: string[]): void {
  // The kubelet refuses to start with another driver; kubeadm would only find out after 4 minutes.
  if (d.cgroupDriver && !["systemd", "cgroupfs"].includes(d.cgroupDriver))
    out.push(
      `KubeletConfiguration.cgroupDriver: Invalid value: ${JSON.stringify(d.cgroupDriver)}: must be systemd or cgroupfs`,
    );
}

// ---------------------------------------------------------------------------------------------

const READS: Record<ConfigUse, string[]> = {
  init: ["InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"],
  join: ["JoinConfiguration"],
  validate: ["InitConfiguration", "ClusterConfiguration", "JoinConfiguration", "KubeletConfiguration"],
};

/**
 * Decode a kubeadm config file as the given kubeadm version does for `use` (init, join, token
 * create and upload-certs read it as init; `kubeadm config validate` as validate).
 */
export function checkKubeadmConfig(text: string, kubeadmVersion: string, use: ConfigUse): ConfigCheck {
  const errors: string[] = [];
  const warnings: string[] = [];
  const docs: Record<string, Record<string, any>> = {};
  const minor = minorOf(kubeadmVersion);
  if (minor === undefined || minor < OLDEST_MODELLED_MINOR)
    return {
      errors: [
        `the lab's kubeadm stand-in models kubeadm 1.${OLDEST_MODELLED_MINOR} and later; ${kubeadmVersion} is not modelled (set /etc/kha-lab/kubernetes-version to v1.${OLDEST_MODELLED_MINOR}.0 or later)`,
      ],
      warnings,
      docs,
    };
  const parsed = parseAllDocuments(text);
  const list = Array.isArray(parsed) ? parsed : [parsed];
  for (const doc of list) {
    for (const e of doc.errors) errors.push(`error converting YAML to JSON: ${e.message.split("\n")[0]}`);
    if (doc.errors.length) continue;
    const body = doc.toJS();
    if (body === null || body === undefined) continue; // an empty document (comments only)
    if (!isObject(body)) {
      errors.push("invalid configuration: a document is not a YAML mapping");
      continue;
    }
    const apiVersion = typeof body.apiVersion === "string" ? body.apiVersion : "";
    const kind = typeof body.kind === "string" ? body.kind : "";
    if (!apiVersion || !kind) {
      errors.push(
        "invalid configuration for GroupVersionKind: kind and apiVersion is mandatory information that must be specified",
      );
      continue;
    }
    if (docs[kind]) {
      errors.push(`invalid configuration: kind ${JSON.stringify(kind)} is specified twice in YAML file`);
      continue;
    }
    const gvk = `${apiVersion}, Kind=${kind}`;
    let schema: Schema | undefined;
    if (apiVersion.startsWith(`${KUBEADM}/`)) {
      const version = apiVersion.slice(KUBEADM.length + 1);
      if (["v1alpha1", "v1alpha2", "v1alpha3", "v1beta1", "v1beta2"].includes(version)) {
        errors.push(
          `your configuration file uses an old API spec: ${JSON.stringify(apiVersion)} (kind: ${JSON.stringify(kind)}). Please use an older kubeadm and run 'kubeadm config migrate --old-config old-config-file --new-config new-config-file', which will write the new, similar spec using a newer API version.`,
        );
        continue;
      }
      const known = version === "v1beta3" || (version === "v1beta4" && minor >= 31);
      schema = known ? kubeadmKinds(version === "v1beta4")[kind] : undefined;
    } else if (apiVersion === KUBELET && kind === "KubeletConfiguration") {
      schema = kubeletConfiguration;
    }
    if (!schema) {
      errors.push(
        `no kind ${JSON.stringify(kind)} is registered for version ${JSON.stringify(apiVersion)} in scheme "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/scheme/scheme.go:31"`,
      );
      continue;
    }
    if (!READS[use].includes(kind)) {
      errors.push(
        `[config] WARNING: Ignored YAML document with GroupVersionKind ${gvk}: \`kubeadm ${use}\` does not read it (the lab stand-in refuses what kubeadm would silently drop)`,
      );
      continue;
    }
    const w: Walk = { kind, minor, decode: [], strict: [] };
    const { apiVersion: _a, kind: _k, ...fields } = body;
    walk(fields, schema, "", w);
    errors.push(...w.decode);
    if (w.strict.length)
      errors.push(
        `error unmarshaling configuration schema.GroupVersionKind{Group:"${apiVersion.split("/")[0]}", Version:"${apiVersion.split("/")[1]}", Kind:"${kind}"}: strict decoding error: ${w.strict.join(", ")}`,
      );
    docs[kind] = body;
  }
  const has = (k: string) => docs[k] !== undefined;
  if (errors.length === 0) {
    if (use === "join" && !has("JoinConfiguration"))
      errors.push("no JoinConfiguration kind was found in the YAML file");
    if (use === "init" && !has("InitConfiguration") && !has("ClusterConfiguration"))
      errors.push("no InitConfiguration or ClusterConfiguration kind was found in the YAML file");
    if (use === "validate" && !has("InitConfiguration") && !has("ClusterConfiguration") && !has("JoinConfiguration"))
      errors.push("no InitConfiguration, ClusterConfiguration or JoinConfiguration kind was found in the YAML file");
    if (has("KubeletConfiguration") && !has("InitConfiguration") && !has("ClusterConfiguration"))
      errors.push(
        "a KubeletConfiguration is read only next to an InitConfiguration or ClusterConfiguration; kubeadm join takes the cluster's (the lab stand-in refuses what kubeadm would silently drop)",
      );
  }
  if (errors.length === 0) {
    if (docs.InitConfiguration) validateInit(docs.InitConfiguration, errors);
    if (docs.ClusterConfiguration) validateCluster(docs.ClusterConfiguration, minor, errors, warnings);
    if (docs.JoinConfiguration) validateJoin(docs.JoinConfiguration, errors);
    if (docs.KubeletConfiguration) validateKubelet(docs.KubeletConfiguration, errors);
  }
  return { errors, warnings, docs: errors.length ? {} : docs };
}
