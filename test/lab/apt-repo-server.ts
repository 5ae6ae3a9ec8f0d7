// The lab's apt repository server: static files over https on one address of the lab bridge
// (test/lab/apt-repo.ts starts it in the lab cgroup kha-apt-repo, so `lab down` ends it).
// Each request is logged with the client's address, so tests see which hosts fetched what.
// Usage: bun apt-repo-server.ts ROOT_DIR CERT KEY ADDRESS PORT ACCESS_LOG
import { appendFileSync, statSync } from "node:fs";

const [root, cert, key, hostname, port, accessLog] = process.argv.slice(2);
if (!root || !cert || !key || !hostname || !port || !accessLog) {
  process.stderr.write("usage: bun apt-repo-server.ts ROOT_DIR CERT KEY ADDRESS PORT ACCESS_LOG\n");
  process.exit(2);
}

const server = Bun.serve({
  hostname,
  port: Number(port),
  tls: { cert: Bun.file(cert), key: Bun.file(key) },
  fetch(req, srv) {
    const path = decodeURIComponent(new URL(req.url).pathname);
    const client = srv.requestIP(req)?.address ?? "?";
    const answer = (
      status: number,
      body?: ConstructorParameters<typeof Response>[0],
      headers?: Record<string, string>,
    ) => {
      appendFileSync(accessLog, `${new Date().toISOString()} ${client} ${req.method} ${path} ${status}\n`);
      return new Response(body, { status, headers });
    };
    if (req.method !== "GET" && req.method !== "HEAD") return answer(405, "method not allowed\n");
    if (path.split("/").includes("..")) return answer(404, "not found\n");
    let size: number;
    try {
      const st = statSync(`${root}${path}`);
      if (!st.isFile()) return answer(404, "not found\n");
      size = st.size;
    } catch {
      return answer(404, "not found\n");
    }
    const headers = { "content-length": String(size) };
    return req.method === "HEAD" ? answer(200, null, headers) : answer(200, Bun.file(`${root}${path}`));
  },
});
process.stdout.write(`serving ${root} on https://${server.hostname}:${server.port}\n`);
