// The lab's apiserver stand-in answers its health endpoints as kube-apiserver does: every check
// listed on failure, the shutdown check on /readyz only, and an etcd read that the member answers
// with Unavailable ("leader changed" while a leader hands over) retried within the check's timeout,
// as kube-apiserver's etcd client retries a read. Run against a TLS stand-in for etcd's JSON gateway.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, requireTool, run } from "./tool-helpers.ts";

const HAVE = requireTool("openssl");
const work = mkdtempSync(join(tmpdir(), "kha-apiserver-standin-"));
const STANDIN = join(import.meta.dir, "../lab/standins/apiserver-standin.ts");

/** What the etcd gateway answers to each range request, in turn; the last one repeats. */
let answers: Array<{ status: number; body: string }> = [];
let ranges = 0;
const ok = { status: 200, body: '{"header":{}}' };
const leaderChanged = {
  status: 503,
  body: '{"error":"etcdserver: leader changed","message":"etcdserver: leader changed","code":14}',
};
const permissionDenied = { status: 403, body: '{"error":"etcdserver: permission denied","code":7}' };

let etcd: ReturnType<typeof Bun.serve> | undefined;
let apiserver: ReturnType<typeof Bun.spawn> | undefined;
let port = 0;

beforeAll(async () => {
  if (!HAVE) return;
  // One self-signed certificate for 127.0.0.1 serves as CA, server and client certificate.
  const crt = join(work, "tls.crt");
  const key = join(work, "tls.key");
  // biome-ignore format: flag list
  const r = run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", crt]);
  if (r.code !== 0) throw new Error(r.err);
  etcd = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert: Bun.file(crt), key: Bun.file(key) },
    fetch(req) {
      if (new URL(req.url).pathname !== "/v3/kv/range") return new Response("{}", { status: 404 });
      const a = answers[Math.min(ranges++, answers.length - 1)] ?? ok;
      return new Response(a.body, { status: a.status });
    },
  });
  port = freePort();
  // biome-ignore format: flag list
  apiserver = Bun.spawn([process.execPath, STANDIN, "--bind-address", "127.0.0.1", "--secure-port", String(port),
    "--tls-cert-file", crt, "--tls-private-key-file", key, "--etcd-servers", `https://127.0.0.1:${etcd.port}`,
    "--etcd-cafile", crt, "--etcd-certfile", crt, "--etcd-keyfile", key, "--shutdown-delay-duration", "3s"],
    { env: { ...process.env, APISERVER_STANDIN_ETCD_TIMEOUT_MS: "800" }, stdout: "ignore", stderr: "ignore" });
  const deadline = performance.now() + 10_000;
  while ((await get("/livez").catch(() => undefined)) === undefined) {
    if (performance.now() > deadline) throw new Error("the apiserver stand-in did not listen within 10 s");
    await Bun.sleep(50);
  }
});
afterAll(() => {
  apiserver?.kill("SIGKILL");
  etcd?.stop(true);
  rmSync(work, { recursive: true, force: true });
});

async function get(path: string): Promise<{ status: number; body: string; ms: number }> {
  const t = performance.now();
  const res = await fetch(`https://127.0.0.1:${port}${path}`, { tls: { rejectUnauthorized: false } } as RequestInit);
  return { status: res.status, body: await res.text(), ms: performance.now() - t };
}

async function withAnswers(list: typeof answers, path: string) {
  answers = list;
  ranges = 0;
  const r = await get(path);
  return { ...r, ranges };
}

describe.skipIf(!HAVE)("apiserver stand-in health endpoints", () => {
  test("healthy: ok", async () => {
    expect(await withAnswers([ok], "/readyz")).toMatchObject({ status: 200, body: "ok", ranges: 1 });
  });

  test("'leader changed' while a leader hands over is retried: ok once the new leader answers", async () => {
    const r = await withAnswers([leaderChanged, leaderChanged, ok], "/healthz");
    expect(r).toMatchObject({ status: 200, body: "ok", ranges: 3 });
  });

  test("Unavailable until the check's timeout: 500, every check listed, the reason withheld", async () => {
    const r = await withAnswers([leaderChanged], "/readyz");
    expect(r.status).toBe(500);
    expect(r.body).toBe(
      "[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\n[+]shutdown ok\nreadyz check failed\n",
    );
    expect(r.ranges).toBeGreaterThan(2);
    expect(r.ms).toBeGreaterThan(700);
  });

  test("any other error is not retried", async () => {
    const r = await withAnswers([permissionDenied, ok], "/livez");
    expect(r).toMatchObject({ status: 500, ranges: 1 });
    expect(r.body).toBe("[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\nlivez check failed\n");
  });

  test("after SIGTERM: /readyz fails its shutdown check, /livez and requests are still served for the delay", async () => {
    apiserver?.kill("SIGTERM");
    const ready = await withAnswers([ok], "/readyz");
    expect(ready.status).toBe(500);
    expect(ready.body).toBe(
      "[+]ping ok\n[+]log ok\n[+]etcd ok\n[-]shutdown failed: reason withheld\nreadyz check failed\n",
    );
    expect(await withAnswers([ok], "/livez")).toMatchObject({ status: 200, body: "ok" });
    expect((await get("/version")).status).toBe(200);
  });
});
