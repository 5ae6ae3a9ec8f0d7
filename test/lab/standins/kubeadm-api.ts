// LAB STAND-IN HELPER — the part of the kubeadm and kubectl stand-ins (test/lab/standins) that
// talks to the cluster: it reads kubeadm config files as kubeadm does (YAML documents by kind) and
// calls the apiserver stand-in's lab API, which keeps tokens and the kubeadm-certs Secret in etcd.
// So a join is refused exactly when the real kubeadm would refuse it: a token that does not
// exist, is wrong or has expired on the lab clock; certificates missing, expired (two hours after
// upload) or encrypted with another key. Used only inside lab hosts.
//
//   kubeadm-api.ts init-tokens CONFIG SERVER     every InitConfiguration.bootstrapTokens entry
//   kubeadm-api.ts token-create CONFIG SERVER    the first bootstrapTokens entry
//   kubeadm-api.ts token-create-value TOKEN TTL SERVER
//   kubeadm-api.ts token-delete ID SERVER
//   kubeadm-api.ts token-list SERVER
//   kubeadm-api.ts upload-certs KEY SERVER
//   kubeadm-api.ts certs-delete SERVER
//   kubeadm-api.ts join-check CONFIG             discovery with the token; certificates for a control plane
//   kubeadm-api.ts join-check-flags ENDPOINT TOKEN [KEY]   the same for a join given by flags
//   kubeadm-api.ts upload-config CONFIG SERVER   ConfigMap kube-system/kubeadm-config from the ClusterConfiguration
//   kubeadm-api.ts configmap-get NS NAME KEY SERVER
//   kubeadm-api.ts configmap-patch NS NAME PATCH_FILE SERVER   (a merge patch: {"data": {...}})
//   kubeadm-api.ts configmap-create NS NAME KEY FILE SERVER
//   kubeadm-api.ts unschedulable SERVER        the cordoned nodes, a name per line
//   kubeadm-api.ts cordon NAME on|off SERVER   set or clear a node's spec.unschedulable; prints "already"
//                                                when it was so before
//   kubeadm-api.ts apiserver-manifest IN OUT CONFIG|- [SERVER]   the control-plane phase: the apiserver's
//                                                manifest with ClusterConfiguration.apiServer.extraArgs (from
//                                                CONFIG at init, from kubeadm-config at SERVER for a join)
//
// And what kubeadm checks on the node itself (kubeadm-schema.ts, kubeadm-preflight.ts, kubeadm-etcd.ts):
//   kubeadm-api.ts validate-config VERSION init|join|validate CONFIG   strict decoding and validation
//   kubeadm-api.ts preflight VERSION CONFIG|- IGNORE...   binaries in PATH, swap; IGNORE: the flag values
//   kubeadm-api.ts kubelet-config-upload CONFIG|- SERVER  init's upload-config/kubelet phase
//   kubeadm-api.ts kubelet-start init|join CONFIG|- [SERVER TOKEN]  the kubelet refuses swap unless failSwapOn: false
//   kubeadm-api.ts check-etcd SERVER CONFIG|- [wait]  every listed etcd member answers (wait: this node's too)
import { readFileSync, writeFileSync } from "node:fs";
import { parseAllDocuments, stringify } from "yaml";
import { clusterStatusProblem, type EtcdMember, kubeadmEtcdTls } from "./kubeadm-etcd.ts";
import { ignoreSet, kubeletStartProblem, preflightFindings, report } from "./kubeadm-preflight.ts";
import { type ConfigUse, checkKubeadmConfig, minorOf } from "./kubeadm-schema.ts";

const die = (msg: string): never => {
  process.stderr.write(`${msg}\n`);
  process.exit(1);
};

function docs(file: string): Record<string, any>[] {
  return parseAllDocuments(readFileSync(file, "utf8"))
    .map((d) => d.toJS())
    .filter((d) => d && typeof d === "object");
}
const byKind = (file: string, kind: string) => docs(file).find((d) => d.kind === kind);

/** Go's time.Duration text as kubeadm's ttl takes it ("1h0m0s", "30m", "0" = never). */
function seconds(ttl: unknown): number {
  if (ttl === undefined || ttl === null) return 24 * 3600; // kubeadm's default token TTL
  const text = String(ttl);
  if (text === "0") return 0;
  const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$/.exec(text);
  if (!m || text === "") return die(`invalid ttl ${JSON.stringify(text)}: time: invalid duration`);
  return Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0);
}

async function call(server: string, method: string, path: string, body?: object, token?: string): Promise<any> {
  for (let attempt = 0; ; attempt++) {
    try {
      const res = await fetch(`https://${server}${path}`, {
        method,
        headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: body ? JSON.stringify(body) : undefined,
        tls: { rejectUnauthorized: false },
        signal: AbortSignal.timeout(5_000),
      } as RequestInit);
      const json = (await res.json().catch(() => ({}))) as { message?: string };
      if (res.status === 503 && attempt < 20) throw new Error(json.message ?? "unavailable");
      if (!res.ok) die(`error execution phase: ${json.message ?? `HTTP ${res.status}`}`);
      return json;
    } catch (e) {
      // Like kubeadm, wait for an API server that is still starting (init) or a VIP that moves.
      if (attempt >= 20) die(`error: the API server at ${server} did not answer: ${(e as Error).message}`);
      await Bun.sleep(1000);
    }
  }
}

function splitToken(token: unknown): [string, string] {
  const m = /^([a-z0-9]{6})\.([a-z0-9]{16})$/.exec(String(token ?? ""));
  if (!m)
    die(
      `the bootstrap token "${String(token).slice(0, 6)}..." was not of the form "\\A([a-z0-9]{6})\\.([a-z0-9]{16})\\z"`,
    );
  return [m![1]!, m![2]!];
}

async function createTokens(config: string, server: string, all: boolean): Promise<void> {
  const init = byKind(config, "InitConfiguration");
  const tokens: Record<string, unknown>[] = init?.bootstrapTokens ?? [];
  if (tokens.length === 0) die(`${config}: InitConfiguration.bootstrapTokens is empty`);
  for (const t of all ? tokens : tokens.slice(0, 1)) {
    const [id, secret] = splitToken(t.token);
    await call(server, "POST", "/kha-lab/tokens", {
      id,
      secret,
      ttlSeconds: seconds(t.ttl),
      description: t.description,
    });
  }
}

/** kubeadm join's discovery with the token, then (control plane) the certificate download. */
async function joinCheck(endpoint: string, token: string, controlPlane: boolean, key: unknown): Promise<void> {
  if (!token || !endpoint) die("discovery.bootstrapToken.token and apiServerEndpoint must be set");
  splitToken(token);
  await call(endpoint, "POST", "/kha-lab/discovery", {}, token);
  if (controlPlane) {
    if (!/^[0-9a-f]{64}$/.test(String(key ?? "")))
      die("controlPlane.certificateKey must be set to the key `kubeadm init phase upload-certs` used");
    await call(endpoint, "POST", "/kha-lab/kubeadm-certs/download", { key }, token);
  }
}

function joinCheckConfig(config: string): Promise<void> {
  const join = byKind(config, "JoinConfiguration") ?? die(`${config}: no JoinConfiguration`);
  const bt = join.discovery?.bootstrapToken ?? {};
  return joinCheck(
    String(bt.apiServerEndpoint ?? ""),
    String(bt.token ?? ""),
    !!join.controlPlane,
    join.controlPlane?.certificateKey,
  );
}

const configDocs = (file: string | undefined) => (file && file !== "-" ? docs(file) : []);

/** kubeadm's etcdAPICall timeout: the JoinConfiguration's (v1beta4), else 2 minutes. */
function etcdApiCallMs(file: string | undefined): number {
  const t = configDocs(file).find((d) => d.kind === "JoinConfiguration")?.timeouts?.etcdAPICall;
  return t === undefined ? 120_000 : seconds(t) * 1000;
}

const [cmd, a, b] = process.argv.slice(2);
switch (cmd) {
  case "validate-config": {
    const [version, use, file] = process.argv.slice(3);
    const r = checkKubeadmConfig(readFileSync(file!, "utf8"), version!, use as ConfigUse);
    for (const w of r.warnings) process.stderr.write(`${w}\n`);
    if (r.errors.length) die(r.errors.join("\n"));
    break;
  }
  case "preflight": {
    const [version, file, ...ignoreFlags] = process.argv.slice(3);
    const ignoreFromConfig = configDocs(file).find((d) => /^(Init|Join)Configuration$/.test(d.kind))?.nodeRegistration
      ?.ignorePreflightErrors;
    const ignore = ignoreSet(ignoreFlags, ignoreFromConfig);
    if (typeof ignore === "string") die(ignore);
    process.stdout.write("[preflight] Running pre-flight checks\n");
    const found = preflightFindings(minorOf(version!) ?? 0, (bin) => Bun.which(bin));
    const { lines, fatal } = report(found, ignore as Set<string>);
    if (lines.length) process.stderr.write(`${lines.join("\n")}\n`);
    if (fatal) process.exit(1);
    break;
  }
  case "kubelet-config-upload": {
    const kubelet = configDocs(a).find((d) => d.kind === "KubeletConfiguration") ?? {};
    await call(b!, "PUT", "/kha-lab/kubelet-config", kubelet);
    break;
  }
  case "kubelet-start": {
    // init: the config's KubeletConfiguration; join: the cluster's kubelet-config, as kubeadm downloads it.
    const [use, file, server, token] = process.argv.slice(3);
    let kubelet: Record<string, any> | undefined = configDocs(file).find((d) => d.kind === "KubeletConfiguration");
    if (use === "join" && server) {
      const res = await fetch(`https://${server}/kha-lab/kubelet-config`, {
        headers: token ? { authorization: `Bearer ${token}` } : {},
        tls: { rejectUnauthorized: false },
        signal: AbortSignal.timeout(10_000),
      } as RequestInit).catch(() => undefined);
      kubelet = res?.ok ? ((await res.json()) as Record<string, any>) : undefined;
    }
    const problem = kubeletStartProblem(kubelet);
    if (problem) die(`error execution phase ${use === "init" ? "wait-control-plane" : "kubelet-start"}: ${problem}`);
    break;
  }
  case "check-etcd": {
    const [server, file, mode] = process.argv.slice(3);
    const tls = kubeadmEtcdTls();
    if (typeof tls === "string") die(`error execution phase check-etcd: ${tls}`);
    const certs = tls as Exclude<typeof tls, string>;
    const members = async () => (await call(server!, "GET", "/kha-lab/etcd-members")) as EtcdMember[];
    if (mode !== "wait") {
      process.stdout.write("[check-etcd] Checking that the etcd cluster is healthy\n");
      const problem = await clusterStatusProblem(await members(), certs, etcdApiCallMs(file));
      if (problem) die(`error execution phase check-etcd: etcd cluster is not healthy: ${problem}`);
      break;
    }
    // After this node's member was added and started: every member, this one included, answers.
    process.stdout.write("[etcd] Waiting for the new etcd member to join the cluster\n");
    const deadline = Date.now() + etcdApiCallMs(file);
    for (;;) {
      const problem = await clusterStatusProblem(await members(), certs, 5000, true);
      if (!problem) break;
      if (Date.now() > deadline)
        die(
          `error execution phase control-plane-join/etcd: timeout waiting for etcd cluster to be available: ${problem}`,
        );
      await Bun.sleep(1000);
    }
    break;
  }
  case "init-tokens":
    await createTokens(a!, b!, true);
    break;
  case "token-create":
    await createTokens(a!, b!, false);
    break;
  case "token-delete":
    await call(b!, "DELETE", `/kha-lab/tokens/${a}`);
    process.stdout.write(`bootstrap token "${a}" deleted\n`);
    break;
  case "token-list": {
    const list = (await call(a!, "GET", "/kha-lab/tokens")) as { id: string; expires: number | null }[];
    process.stdout.write("TOKEN ID   EXPIRES (lab clock, s)\n");
    for (const t of list) process.stdout.write(`${t.id}     ${t.expires ?? "<forever>"}\n`);
    break;
  }
  case "upload-certs":
    await call(b!, "PUT", "/kha-lab/kubeadm-certs", { key: a });
    break;
  case "certs-delete":
    await call(a!, "DELETE", "/kha-lab/kubeadm-certs");
    break;
  case "upload-config": {
    // kubeadm init's upload-config phase: the ClusterConfiguration document, as YAML.
    const cluster = byKind(a!, "ClusterConfiguration") ?? die(`${a}: no ClusterConfiguration`);
    await call(b!, "PUT", "/kha-lab/configmaps/kube-system/kubeadm-config", {
      data: { ClusterConfiguration: stringify(cluster) },
    });
    break;
  }
  case "configmap-get": {
    const [ns, name, key, server] = process.argv.slice(3);
    const cm = (await call(server!, "GET", `/kha-lab/configmaps/${ns}/${name}`)) as { data: Record<string, string> };
    process.stdout.write(cm.data[key!] ?? "");
    break;
  }
  case "configmap-patch": {
    const [ns, name, file, server] = process.argv.slice(3);
    const patch = JSON.parse(readFileSync(file!, "utf8"));
    await call(server!, "PATCH", `/kha-lab/configmaps/${ns}/${name}`, patch);
    process.stdout.write(`configmap/${name} patched\n`);
    break;
  }
  case "configmap-create": {
    const [ns, name, key, file, server] = process.argv.slice(3);
    await call(server!, "PUT", `/kha-lab/configmaps/${ns}/${name}`, { data: { [key!]: readFileSync(file!, "utf8") } });
    process.stdout.write(`configmap/${name} created\n`);
    break;
  }
  case "unschedulable": {
    // One attempt: get nodes asks it in passing (see the kubectl stand-in).
    const res = await fetch(`https://${a}/kha-lab/unschedulable`, {
      tls: { rejectUnauthorized: false },
      signal: AbortSignal.timeout(3_000),
    } as RequestInit).catch((e: Error) => die(`error: the API server at ${a} did not answer: ${e.message}`));
    if (!res.ok) die(`error: the API server at ${a} answered ${res.status}`);
    const names = (await res.json()) as string[];
    process.stdout.write(names.map((n) => `${n}\n`).join(""));
    break;
  }
  case "cordon": {
    const [name, on, server] = process.argv.slice(3);
    const r = (await call(server!, "PUT", `/kha-lab/unschedulable/${name}`, { unschedulable: on === "on" })) as {
      was: boolean;
    };
    if (r.was === (on === "on")) process.stdout.write("already\n");
    break;
  }
  case "apiserver-manifest": {
    // kubeadm's control-plane phase writes kube-apiserver.yaml with apiServer.extraArgs as flags
    // (an extra argument replaces kubeadm's own flag of that name). Init reads its config file; a
    // join reads the ClusterConfiguration init uploaded, as kubeadm does.
    const [input, output, config, server] = process.argv.slice(3);
    let cluster: Record<string, any> | undefined;
    if (config && config !== "-") cluster = byKind(config, "ClusterConfiguration");
    if (!cluster && server) {
      const cm = (await call(server, "GET", "/kha-lab/configmaps/kube-system/kubeadm-config")) as {
        data: Record<string, string>;
      };
      cluster = parseAllDocuments(cm.data.ClusterConfiguration ?? "")[0]?.toJS() as Record<string, any> | undefined;
    }
    const raw = cluster?.apiServer?.extraArgs ?? {};
    const extra: [string, string][] = Array.isArray(raw)
      ? raw.map((x: { name: string; value: string }) => [x.name, String(x.value)])
      : Object.entries(raw).map(([k, v]) => [k, String(v)]);
    const pod = parseAllDocuments(readFileSync(input!, "utf8"))[0]!.toJS() as Record<string, any>;
    const c = pod.spec.containers[0];
    for (const [name, value] of extra)
      c.command = [...c.command.filter((f: string) => !f.startsWith(`--${name}=`)), `--${name}=${value}`];
    writeFileSync(output!, stringify(pod), { mode: 0o600 });
    break;
  }
  case "join-check":
    await joinCheckConfig(a!);
    break;
  case "join-check-flags": {
    const [endpoint, token, key] = process.argv.slice(3);
    await joinCheck(endpoint!, token!, !!key, key);
    break;
  }
  case "token-create-value": {
    const [token, ttl, server] = process.argv.slice(3);
    const [id, secret] = splitToken(token);
    await call(server!, "POST", "/kha-lab/tokens", { id, secret, ttlSeconds: seconds(ttl || undefined) });
    break;
  }
  default:
    die(`kubeadm-api.ts: unknown command ${cmd}`);
}
