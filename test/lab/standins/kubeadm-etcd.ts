// LAB STAND-IN HELPER — kubeadm's check-etcd on a control-plane join, and its wait for the new
// member afterwards, from upstream cmd/kubeadm/app/util/etcd/etcd.go: every member in the live
// member list that has client URLs must answer a Status call (2 s each, retried every 500 ms for
// the etcd API call timeout: v1beta4 timeouts.etcdAPICall, 2 minutes by default and in v1beta3);
// one that does not makes the join fail with "etcd cluster is not healthy". Members are read
// through the cluster (the apiserver stand-in's lab API), their status on their own client URLs
// with this node's etcd client certificate, as kubeadm does (etcd's JSON gateway, not gRPC).
import { existsSync } from "node:fs";

export interface EtcdMember {
  name?: string;
  clientURLs?: string[];
  peerURLs?: string[];
}

export interface EtcdTls {
  ca: string;
  cert: string;
  key: string;
}

/** kubeadm's client certificate for etcd on a control plane (certificatesDir /etc/kubernetes/pki). */
export function kubeadmEtcdTls(pki = "/etc/kubernetes/pki"): EtcdTls | string {
  const tls = {
    ca: `${pki}/etcd/ca.crt`,
    cert: `${pki}/apiserver-etcd-client.crt`,
    key: `${pki}/apiserver-etcd-client.key`,
  };
  for (const f of Object.values(tls))
    if (!existsSync(f)) return `error creating etcd client: open ${f}: no such file or directory`;
  return tls;
}

/** One Status call to a member's client URL; undefined when it answered, else why not. */
async function status(url: string, tls: EtcdTls | undefined, timeoutMs: number): Promise<string | undefined> {
  try {
    const res = await fetch(`${url.replace(/\/$/, "")}/v3/maintenance/status`, {
      method: "POST",
      body: "{}",
      signal: AbortSignal.timeout(timeoutMs),
      ...(tls ? { tls: { ca: Bun.file(tls.ca), cert: Bun.file(tls.cert), key: Bun.file(tls.key) } } : {}),
    } as RequestInit);
    const body = (await res.json().catch(() => ({}))) as { version?: string; message?: string };
    if (!res.ok || !body.version) return `status ${res.status}: ${body.message ?? "no status"}`;
    return undefined;
  } catch (e) {
    return (e as Error).name === "TimeoutError" ? "context deadline exceeded" : (e as Error).message;
  }
}

/**
 * kubeadm's getClusterStatus: each listed member in turn, each retried for up to `deadlineMs`; the
 * first that never answers is the error. Members without client URLs (added, not started) are not
 * endpoints yet, unless `requireStarted` (the wait after this node's own member was added).
 */
export async function clusterStatusProblem(
  members: EtcdMember[],
  tls: EtcdTls | undefined,
  deadlineMs: number,
  requireStarted = false,
): Promise<string | undefined> {
  for (const m of members) {
    const urls = m.clientURLs ?? [];
    if (urls.length === 0) {
      if (requireStarted) return `member ${m.peerURLs?.join(",") ?? "?"} has not started`;
      continue;
    }
    for (const url of urls) {
      const start = Date.now();
      let last: string | undefined;
      do {
        last = await status(url, tls, 2000);
        if (!last) break;
        await Bun.sleep(500);
      } while (Date.now() - start < deadlineMs);
      if (last) return `${url} (member ${m.name || "?"}): ${last}`;
    }
  }
  return undefined;
}
