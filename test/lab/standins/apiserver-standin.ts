// LAB STAND-IN FOR KUBE-APISERVER — not the Kubernetes API server. Used only inside lab
// hosts (test/lab), started by the kubelet stand-in from /etc/kubernetes/manifests/kube-apiserver.yaml.
//
// A TLS server on --secure-port whose /healthz (and /livez, /readyz) answers 200 only while
// the local etcd member serves a linearizable read within a short timeout, which needs both a
// healthy member and a cluster with quorum; otherwise 500. That is the signal haproxy and
// keepalived health checks look at, so failure tests see what a real apiserver would show.
// Flags use kube-apiserver's names so the manifest reads like kubeadm's.
import { parseArgs } from "node:util";

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
  },
  strict: false,
});

const ETCD_TIMEOUT_MS = Number(process.env.APISERVER_STANDIN_ETCD_TIMEOUT_MS ?? 1500);
const etcd = String(flags["etcd-servers"]).split(",")[0]!;
const etcdTls = {
  ca: Bun.file(String(flags["etcd-cafile"])),
  cert: Bun.file(String(flags["etcd-certfile"])),
  key: Bun.file(String(flags["etcd-keyfile"])),
};

/** A linearizable range read of one key through the local member (etcd's JSON gateway). */
async function etcdOk(): Promise<string | undefined> {
  try {
    const res = await fetch(`${etcd}/v3/kv/range`, {
      method: "POST",
      body: JSON.stringify({ key: btoa("kubeadm-ha-lab/healthz"), serializable: false }),
      tls: etcdTls,
      signal: AbortSignal.timeout(ETCD_TIMEOUT_MS),
    } as RequestInit);
    if (!res.ok) return `etcd answered ${res.status}`;
    await res.arrayBuffer();
    return undefined;
  } catch (e) {
    return `etcd read failed: ${(e as Error).message}`;
  }
}

const server = Bun.serve({
  hostname: String(flags["bind-address"]),
  port: Number(flags["secure-port"]),
  tls: { cert: Bun.file(String(flags["tls-cert-file"])), key: Bun.file(String(flags["tls-private-key-file"])) },
  async fetch(req) {
    // Not new URL(req.url): a request without a Host header (haproxy's HTTP/1.0 health check)
    // has no valid absolute URL, and a real apiserver answers those too.
    const path = req.url.replace(/^[a-z]+:\/\/[^/]*/i, "").split("?")[0];
    if (path === "/healthz" || path === "/livez" || path === "/readyz") {
      const problem = await etcdOk();
      return problem
        ? new Response(`[-]etcd failed: ${problem}\n${path.slice(1)} check failed\n`, { status: 500 })
        : new Response("ok", { status: 200 });
    }
    if (path === "/version") {
      return Response.json({ major: "1", minor: "31", gitVersion: "v1.31.4", platform: "linux/amd64" });
    }
    return new Response("404 page not found (lab apiserver stand-in)\n", { status: 404 });
  },
});
process.stdout.write(`apiserver-standin: listening on ${server.hostname}:${server.port}, etcd ${etcd}\n`);
process.on("SIGTERM", () => {
  server.stop(true);
  process.exit(0);
});
