// LAB STAND-IN FOR KUBE-APISERVER — not the Kubernetes API server. Used only inside lab
// hosts (test/lab), started by the kubelet stand-in from /etc/kubernetes/manifests/kube-apiserver.yaml.
//
// A TLS server on --secure-port whose /healthz (and /livez, /readyz) answers 200 only while
// the local etcd member serves a linearizable read within a short timeout, which needs both a
// healthy member and a cluster with quorum; otherwise 500. That is the signal haproxy and
// keepalived health checks look at, so failure tests see what a real apiserver would show.
// Flags use kube-apiserver's names so the manifest reads like kubeadm's.
//
// It also keeps the cluster state kubeadm's join checks depend on, in etcd like the real one
// (test/lab/standins/kubeadm-api.ts is the client): bootstrap tokens with their expiry, the
// kubeadm-certs Secret (two hours after upload, as kubeadm's owner token), and a lab clock that
// tests can move forward (etcd key kubeadm-ha-lab/clock-offset-seconds) to make them expire.
import { existsSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { minorOf } from "./kubeadm-schema.ts";

const { values: flags } = parseArgs({
  options: {
    "advertise-address": { type: "string" },
    "bind-address": { type: "string", default: "0.0.0.0" },
    "secure-port": { type: "string", default: "6443" },
    "tls-cert-file": { type: "string", default: "/etc/kubernetes/pki/apiserver.crt" },
    "tls-private-key-file": { type: "string", default: "/etc/kubernetes/pki/apiserver.key" },
    "etcd-servers": { type: "string", default: "https://127.0.0.1:2379" },
    "etcd-cafile": { type: "string", default: "/etc/kubernetes/pki/etcd/ca.crt" },
    "etcd-certfile": { type: "string", default: "/etc/kubernetes/pki/apiserver-etcd-client.crt" },
    "etcd-keyfile": { type: "string", default: "/etc/kubernetes/pki/apiserver-etcd-client.key" },
    "shutdown-delay-duration": { type: "string", default: "0s" },
  },
  strict: false,
});

/** kube-apiserver's --shutdown-delay-duration (Go duration: 0s, 3s, 1m30s, 500ms) in milliseconds. */
function goDurationMs(text: string): number {
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  if (text !== "0" && (parts.length === 0 || parts.map((p) => p[0]).join("") !== text)) {
    process.stderr.write(
      `Error: invalid argument "${text}" for "--shutdown-delay-duration" flag: time: invalid duration\n`,
    );
    process.exit(1);
  }
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;
  return parts.reduce((sum, p) => sum + Number(p[1]) * unit[p[2] as keyof typeof unit], 0);
}
const SHUTDOWN_DELAY_MS = goDurationMs(String(flags["shutdown-delay-duration"]));
/** Set on SIGTERM: /readyz fails from then on while requests are still served (kube-apiserver does the same). */
let shuttingDown = false;

/** The lab's Kubernetes version, as the kubeadm/kubectl/kubelet stand-ins read it. */
const VERSION_FILE = "/etc/kha-lab/kubernetes-version";
const VERSION = existsSync(VERSION_FILE) ? readFileSync(VERSION_FILE, "utf8").trim() : "v1.31.4";
const ETCD_TIMEOUT_MS = Number(process.env.APISERVER_STANDIN_ETCD_TIMEOUT_MS ?? 1500);
const etcd = String(flags["etcd-servers"]).split(",")[0]!;
const etcdTls = {
  ca: Bun.file(String(flags["etcd-cafile"])),
  cert: Bun.file(String(flags["etcd-certfile"])),
  key: Bun.file(String(flags["etcd-keyfile"])),
};

/**
 * A linearizable range read of one key through the local member (etcd's JSON gateway). An answer
 * with gRPC code 14 (Unavailable: "leader changed", "no leader" while a leader hands over) is retried
 * until the check's timeout, as kube-apiserver's etcd client retries a read (clientv3's retry
 * interceptor, for Unavailable on range requests); any other answer, or no answer, fails at once.
 */
async function etcdOk(): Promise<string | undefined> {
  const deadline = AbortSignal.timeout(ETCD_TIMEOUT_MS);
  for (let backoffMs = 25; ; backoffMs = Math.min(backoffMs * 2, 200)) {
    let problem: string;
    try {
      const res = await fetch(`${etcd}/v3/kv/range`, {
        method: "POST",
        body: JSON.stringify({ key: btoa("kubeadm-ha-lab/healthz"), serializable: false }),
        tls: etcdTls,
        signal: deadline,
      } as RequestInit);
      const text = await res.text();
      if (res.ok) return undefined;
      problem = `etcd answered ${res.status}: ${text.trim()}`;
      if (grpcCode(text) !== 14) return problem;
    } catch (e) {
      return `etcd read failed: ${(e as Error).message}`;
    }
    await Bun.sleep(backoffMs);
    if (deadline.aborted) return problem;
  }
}

/** The gRPC status code in an error answer of etcd's JSON gateway ({"code": 14, "message": …}). */
function grpcCode(text: string): number | undefined {
  try {
    const code = (JSON.parse(text) as { code?: unknown }).code;
    return typeof code === "number" ? code : undefined;
  } catch {
    return undefined;
  }
}

const b64 = (s: string) => Buffer.from(s).toString("base64");
async function etcdCall(path: string, body: object): Promise<any> {
  const res = await fetch(`${etcd}${path}`, {
    method: "POST",
    body: JSON.stringify(body),
    tls: etcdTls,
    signal: AbortSignal.timeout(5000),
  } as RequestInit);
  if (!res.ok) throw new Error(`etcd ${path} answered ${res.status}`);
  return res.json();
}
async function etcdGet(key: string): Promise<string | undefined> {
  const r = await etcdCall("/v3/kv/range", { key: b64(key) });
  const v = r.kvs?.[0]?.value;
  return v === undefined ? undefined : Buffer.from(v, "base64").toString();
}
async function etcdList(prefix: string): Promise<string[]> {
  const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
  const r = await etcdCall("/v3/kv/range", { key: b64(prefix), range_end: b64(end) });
  return (r.kvs ?? []).map((kv: { value: string }) => Buffer.from(kv.value, "base64").toString());
}
const etcdPut = (key: string, value: string) => etcdCall("/v3/kv/put", { key: b64(key), value: b64(value) });
const etcdDelete = async (key: string) =>
  Number((await etcdCall("/v3/kv/deleterange", { key: b64(key) })).deleted ?? 0);

const TOKENS = "kubeadm-ha-lab/bootstrap-tokens/";
const CERTS = "kubeadm-ha-lab/kubeadm-certs";
const CONFIGMAPS = "kubeadm-ha-lab/configmaps/";
const KUBELET_CONFIG = "kubeadm-ha-lab/kubelet-config";
/** Nodes cordoned (kubectl cordon/drain), each a key holding its name: the Node's spec.unschedulable. */
const UNSCHEDULABLE = "kubeadm-ha-lab/unschedulable/";
/** kubeadm deletes the kubeadm-certs Secret with its owner token, two hours after an upload. */
const CERTS_TTL_SECONDS = 2 * 3600;
interface StoredToken {
  id: string;
  secret: string;
  /** Lab-clock seconds; null never expires. */
  expires: number | null;
  description?: string;
}

/** Seconds since the epoch on the lab clock: this host's clock plus the offset tests set. */
async function labNow(): Promise<number> {
  const offset = Number((await etcdGet("kubeadm-ha-lab/clock-offset-seconds")) ?? 0);
  return Math.floor(Date.now() / 1000) + offset;
}
const sha256 = (s: string) => new Bun.CryptoHasher("sha256").update(s).digest("hex");

/** A bootstrap token that exists, matches and has not expired, else the reason kubeadm would give. */
async function checkToken(auth: string | null): Promise<string | undefined> {
  const m = /^Bearer ([a-z0-9]{6})\.([a-z0-9]{16})$/.exec(auth ?? "");
  if (!m) return "no bootstrap token in the request";
  const raw = await etcdGet(TOKENS + m[1]);
  const t: StoredToken | undefined = raw ? JSON.parse(raw) : undefined;
  if (!t || t.secret !== m[2] || (t.expires !== null && t.expires <= (await labNow())))
    return `couldn't validate the identity of the API Server: could not find a JWS signature in the cluster-info ConfigMap for token ID "${m[1]}"`;
  return undefined;
}

/** The lab's share of the Kubernetes API: what kubeadm token/upload-certs/join talk to. */
async function labApi(req: Request, path: string): Promise<Response> {
  const body = req.method === "GET" || req.method === "DELETE" ? {} : await req.json().catch(() => ({}));
  const fail = (status: number, message: string) => Response.json({ message }, { status });
  if (path === "/kha-lab/tokens" && req.method === "GET") {
    const now = await labNow();
    const all = (await etcdList(TOKENS)).map((v) => JSON.parse(v) as StoredToken);
    return Response.json(all.filter((t) => t.expires === null || t.expires > now).map(({ secret: _s, ...t }) => t));
  }
  if (path === "/kha-lab/tokens" && req.method === "POST") {
    const { id, secret, ttlSeconds, description } = body as Record<string, any>;
    if (!/^[a-z0-9]{6}$/.test(id ?? "") || !/^[a-z0-9]{16}$/.test(secret ?? ""))
      return fail(400, "the bootstrap token must be of the form [a-z0-9]{6}.[a-z0-9]{16}");
    const existing = await etcdGet(TOKENS + id);
    if (existing) return fail(409, `secrets "bootstrap-token-${id}" already exists`);
    const expires = Number(ttlSeconds) > 0 ? (await labNow()) + Number(ttlSeconds) : null;
    await etcdPut(TOKENS + id, JSON.stringify({ id, secret, expires, description } satisfies StoredToken));
    return Response.json({ id, expires }, { status: 201 });
  }
  const del = /^\/kha-lab\/tokens\/([a-z0-9]{6})$/.exec(path);
  if (del && req.method === "DELETE") {
    return (await etcdDelete(TOKENS + del[1])) > 0
      ? Response.json({ deleted: del[1] })
      : fail(404, `secrets "bootstrap-token-${del[1]}" not found`);
  }
  if (path === "/kha-lab/discovery" && req.method === "POST") {
    const problem = await checkToken(req.headers.get("authorization"));
    return problem ? fail(401, problem) : Response.json({ ok: true });
  }
  if (path === "/kha-lab/kubeadm-certs" && req.method === "PUT") {
    const key = String((body as Record<string, unknown>).key ?? "");
    if (!/^[0-9a-f]{64}$/.test(key)) return fail(400, "the certificate key must be 64 hex digits (a 32-byte AES key)");
    await etcdPut(CERTS, JSON.stringify({ keySha256: sha256(key), expires: (await labNow()) + CERTS_TTL_SECONDS }));
    return Response.json({ ok: true });
  }
  if (path === "/kha-lab/kubeadm-certs" && req.method === "DELETE") {
    await etcdDelete(CERTS);
    return Response.json({ ok: true });
  }
  if (path === "/kha-lab/kubeadm-certs/download" && req.method === "POST") {
    const problem = await checkToken(req.headers.get("authorization"));
    if (problem) return fail(401, problem);
    const raw = await etcdGet(CERTS);
    const certs = raw ? (JSON.parse(raw) as { keySha256: string; expires: number }) : undefined;
    if (!certs || certs.expires <= (await labNow()))
      return fail(
        404,
        'error downloading certs: error downloading the secret: Secret "kubeadm-certs" was not found in the "kube-system" Namespace. This Secret might have expired. Please, run `kubeadm init phase upload-certs --upload-certs` on a control plane to generate a new one',
      );
    if (certs.keySha256 !== sha256(String((body as Record<string, unknown>).key ?? "")))
      return fail(
        403,
        "error downloading certs: error decoding secret data with provided key: cipher: message authentication failed",
      );
    return Response.json({ ok: true });
  }
  // ConfigMaps (kubeadm-config above all): GET, PUT (create or replace), PATCH (merge into .data).
  const cm = /^\/kha-lab\/configmaps\/([a-z0-9-]+)\/([a-z0-9.-]+)$/.exec(path);
  if (cm) {
    const key = `${CONFIGMAPS}${cm[1]}/${cm[2]}`;
    const raw = await etcdGet(key);
    const current = raw ? (JSON.parse(raw) as { data: Record<string, string> }) : undefined;
    const notFound = () => fail(404, `configmaps "${cm[2]}" not found`);
    if (req.method === "GET") return current ? Response.json(current) : notFound();
    const data = ((body as { data?: Record<string, string> }).data ?? {}) as Record<string, string>;
    if (req.method === "PUT") {
      await etcdPut(key, JSON.stringify({ data }));
      return Response.json({ data });
    }
    if (req.method === "PATCH") {
      if (!current) return notFound();
      const merged = { data: { ...current.data, ...data } };
      await etcdPut(key, JSON.stringify(merged));
      return Response.json(merged);
    }
  }
  // spec.unschedulable of the lab's nodes: the list, and a node's set (cordon) or cleared (uncordon),
  // answering whether it was set before (kubectl's "already cordoned").
  if (path === "/kha-lab/unschedulable" && req.method === "GET") return Response.json(await etcdList(UNSCHEDULABLE));
  const node = /^\/kha-lab\/unschedulable\/([a-z0-9.-]+)$/.exec(path);
  if (node && req.method === "PUT") {
    const key = `${UNSCHEDULABLE}${node[1]}`;
    const was = (await etcdGet(key)) !== undefined;
    if ((body as { unschedulable?: boolean }).unschedulable) await etcdPut(key, node[1]!);
    else await etcdDelete(key);
    return Response.json({ was });
  }
  // What kubeadm's check-etcd reads through the API (the etcd pods, then etcd's member list).
  if (path === "/kha-lab/etcd-members" && req.method === "GET") {
    const r = await etcdCall("/v3/cluster/member/list", {});
    return Response.json(
      (r.members ?? []).map((m: { name?: string; clientURLs?: string[]; peerURLs?: string[] }) => ({
        name: m.name ?? "",
        clientURLs: m.clientURLs ?? [],
        peerURLs: m.peerURLs ?? [],
      })),
    );
  }
  // The kubelet-config ConfigMap: uploaded by init, read by every join's kubelet-start.
  if (path === "/kha-lab/kubelet-config" && req.method === "PUT") {
    await etcdPut(KUBELET_CONFIG, JSON.stringify(body));
    return Response.json({ ok: true });
  }
  if (path === "/kha-lab/kubelet-config" && req.method === "GET") {
    const raw = await etcdGet(KUBELET_CONFIG);
    return raw ? Response.json(JSON.parse(raw)) : fail(404, 'configmaps "kubelet-config" not found');
  }
  return fail(404, `no lab API at ${req.method} ${path}`);
}

/**
 * /healthz, /livez, /readyz as kube-apiserver answers them: "ok" when every check passes, else 500
 * with every check listed ("[-]name failed: reason withheld"; the reason goes to the log). Only
 * /readyz has the shutdown check, failing from SIGTERM on.
 */
async function health(endpoint: string): Promise<Response> {
  const etcdProblem = await etcdOk();
  const shutdown = endpoint === "readyz" && shuttingDown;
  if (!etcdProblem && !shutdown) return new Response("ok", { status: 200 });
  if (etcdProblem) process.stderr.write(`apiserver-standin: ${endpoint}: [-]etcd failed: ${etcdProblem}\n`);
  const checks: Array<[string, boolean]> = [
    ["ping", true],
    ["log", true],
    ["etcd", !etcdProblem],
    ...(endpoint === "readyz" ? ([["shutdown", !shutdown]] as Array<[string, boolean]>) : []),
  ];
  const lines = checks.map(([name, ok]) => (ok ? `[+]${name} ok` : `[-]${name} failed: reason withheld`));
  return new Response(`${lines.join("\n")}\n${endpoint} check failed\n`, { status: 500 });
}

const server = Bun.serve({
  hostname: String(flags["bind-address"]),
  port: Number(flags["secure-port"]),
  tls: { cert: Bun.file(String(flags["tls-cert-file"])), key: Bun.file(String(flags["tls-private-key-file"])) },
  async fetch(req) {
    // Not new URL(req.url): a request without a Host header (haproxy's HTTP/1.0 health check)
    // has no valid absolute URL, and a real apiserver answers those too.
    const path = req.url.replace(/^[a-z]+:\/\/[^/]*/i, "").split("?")[0] ?? "";
    if (path === "/healthz" || path === "/livez" || path === "/readyz") return health(path.slice(1));
    if (path.startsWith("/kha-lab/")) {
      try {
        return await labApi(req, path);
      } catch (e) {
        return Response.json({ message: `lab API: ${(e as Error).message}` }, { status: 503 });
      }
    }
    if (path === "/version") {
      return Response.json({
        major: "1",
        minor: String(minorOf(VERSION)),
        gitVersion: VERSION,
        platform: "linux/amd64",
      });
    }
    return new Response("404 page not found (lab apiserver stand-in)\n", { status: 404 });
  },
});
process.stdout.write(`apiserver-standin: listening on ${server.hostname}:${server.port}, etcd ${etcd}\n`);
// As kube-apiserver: on SIGTERM /readyz fails at once, requests are served for the shutdown delay,
// then the listener closes (connections still queued on it are reset) and the process exits.
process.on("SIGTERM", () => {
  if (shuttingDown) return;
  shuttingDown = true;
  setTimeout(() => {
    server.stop(true);
    process.exit(0);
  }, SHUTDOWN_DELAY_MS);
});
