// The rendered haproxy.cfg, run for real on loopback: a new process, a drain, a graceful stop.
//
// A new haproxy process (a start, or the new worker of a reload) knows nothing of its servers'
// health and takes every one for UP until its first check. When a config change rolls the load
// balancer while a backend is down (a control plane replaced at a new address: its apiserver is not
// there yet), clients reach the dead server before the check does. That must cost them a retry on
// another server, never the request: the rendered haproxy.cfg, run for real on loopback.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { healthzStatus } from "../../lib/ops/chaos.ts";
import { parseStatsCsv } from "../../lib/ops/verify.ts";
import {
  HAPROXY_ADMIN_SOCKET,
  HAPROXY_SERVER_STATE_FILE,
  haproxyRuntimeCommand,
  renderHaproxyCfg,
  STATS_PASSWORD_ENV,
  saveServerStateCommand,
  serversStateCommand,
} from "../../lib/render/haproxy.ts";
import { ClusterSpecSchema } from "../../lib/spec/schema.ts";
import { controlPlanes } from "../../lib/spec/topology.ts";
import { freePort, selfSignedCert } from "./tool-helpers.ts";

const CI = process.env.CI === "true";
function have(tool: string): boolean {
  if (Bun.which(tool)) return true;
  if (CI) throw new Error(`${tool} is required in CI (install the Debian package that provides it)`);
  return false;
}
const HAVE = have("haproxy") && have("openssl") && have("curl");

/** Loopback addresses of the three control planes; the third has no apiserver (refused). */
const BASE = "127.0.7.";
const tmp = mkdtempSync(join(tmpdir(), "kha-haproxy-fresh-"));
const servers: Array<{ stop: (force?: boolean) => void }> = [];

beforeAll(() => {
  if (!HAVE) return;
  const tls = selfSignedCert({ certPath: join(tmp, "cert.pem"), keyPath: join(tmp, "key.pem"), cn: "kube-apiserver" });
  for (const last of [11, 12])
    servers.push(Bun.serve({ hostname: `${BASE}${last}`, port: 6443, tls, fetch: () => new Response("ok") }));
});
afterAll(() => {
  for (const s of servers) s.stop(true);
  rmSync(tmp, { recursive: true, force: true });
});

/** The rendered haproxy.cfg with the root-only paths moved into the test's directory. */
function liveConfig(spec: ReturnType<typeof specWith>, dir: string): string {
  return renderHaproxyCfg(spec, controlPlanes(spec)[0]!)
    .replace(HAPROXY_ADMIN_SOCKET, join(dir, "admin.sock"))
    .replace(HAPROXY_SERVER_STATE_FILE, join(dir, "servers.state"))
    .split("\n")
    .filter((l) => !/^\s+(user|group|log \/dev\/log)/.test(l))
    .join("\n");
}

function specWith(lbPort: number, cp3: string) {
  return ClusterSpecSchema.parse({
    name: "fresh",
    kubernetes: { version: "1.31.4" },
    nodes: [`${BASE}11`, `${BASE}12`, cp3].map((address, i) => ({
      name: `cp-${i + 1}`,
      address,
      role: "control-plane",
    })),
    controlPlaneEndpoint: { vip: `${BASE}100`, port: lbPort, interface: "kha0" },
    loadBalancer: { haproxy: { stats: { enabled: false } } },
  });
}

async function startHaproxy(file: string, lbPort: number) {
  const proc = Bun.spawn(["haproxy", "-db", "-f", file], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", [STATS_PASSWORD_ENV]: "unused" },
    stdout: "ignore",
    stderr: "pipe",
  });
  const deadline = performance.now() + 5000;
  while (
    !(await Bun.connect({ hostname: "127.0.0.1", port: lbPort, socket: { data() {} } }).then(
      (s) => {
        s.end();
        return true;
      },
      () => false,
    ))
  ) {
    if (performance.now() > deadline) {
      proc.kill();
      throw new Error(`haproxy did not listen within 5 s: ${await new Response(proc.stderr).text()}`);
    }
    await Bun.sleep(5);
  }
  return proc;
}

/** Requests on fresh connections through haproxy, three at a time every 30 ms, for `ms`; the statuses. */
async function probe(lbPort: number, ms: number): Promise<number[]> {
  const until = performance.now() + ms;
  const probes: Promise<number>[] = [];
  while (performance.now() < until) {
    for (let i = 0; i < 3; i++) probes.push(healthzStatus("127.0.0.1", lbPort, 2000, "/readyz"));
    await Bun.sleep(30);
  }
  return Promise.all(probes);
}

const sh = (cmd: string) => Bun.spawnSync(["bash", "-c", cmd], { stdout: "pipe", stderr: "pipe" });

describe("haproxy rolled to a new config while a backend is down (a control plane replaced at a new address)", () => {
  test.skipIf(!HAVE)(
    "the new process starts from the old one's server states: no request reaches the dead server, its address is the new config's",
    async () => {
      const lbPort = freePort();
      const dir = mkdtempSync(join(tmp, "roll-"));
      // The old process: cp-3 at its old address, where nothing answers any more; its checks mark it DOWN.
      const before = join(dir, "before.cfg");
      writeFileSync(before, liveConfig(specWith(lbPort, `${BASE}13`), dir));
      const old = await startHaproxy(before, lbPort);
      await Bun.sleep(1500);
      // What the load-balancer phase runs before it reloads.
      const saved = sh(saveServerStateCommand(join(dir, "admin.sock"), join(dir, "servers.state")));
      old.kill();
      await old.exited;
      expect(saved.exitCode).toBe(0);
      const state = readFileSync(join(dir, "servers.state"), "utf8");
      expect(state).toMatch(new RegExp(`^\\d+ kube_apiserver \\d+ cp-3 ${BASE.replaceAll(".", "\\.")}13 0 `, "m"));

      // The new config: cp-3 at its new address, its apiserver not there yet. Three new processes, each
      // probed from the moment it listens (before its first check of cp-3).
      const after = join(dir, "after.cfg");
      writeFileSync(after, liveConfig(specWith(lbPort, `${BASE}14`), dir));
      const statuses: number[] = [];
      for (let run = 0; run < 3; run++) {
        const proc = await startHaproxy(after, lbPort);
        try {
          statuses.push(...(await probe(lbPort, 1500)));
          if (run === 2) {
            // The saved state gave the new process cp-3's health, not its old address.
            const now = sh(saveServerStateCommand(join(dir, "admin.sock"), join(dir, "now.state")));
            expect(now.exitCode).toBe(0);
            const cp3 = readFileSync(join(dir, "now.state"), "utf8")
              .split("\n")
              .find((l) => / cp-3 /.test(l))!
              .split(" ");
            expect(cp3[4]).toBe(`${BASE}14`);
            expect(cp3[5]).toBe("0");
          }
        } finally {
          proc.kill();
          await proc.exited;
        }
      }
      expect(statuses.length).toBeGreaterThan(60);
      expect(statuses.filter((s) => s !== 200)).toEqual([]);
    },
    30_000,
  );
});

describe("control planes about to be removed leave haproxy first", () => {
  test.skipIf(!HAVE)(
    "serversStateCommand drains them over the runtime API: no new request reaches them, the others serve",
    async () => {
      const lbPort = freePort();
      const dir = mkdtempSync(join(tmp, "maint-"));
      const file = join(dir, "haproxy.cfg");
      // cp-3 answers here (a live apiserver about to be removed).
      writeFileSync(file, liveConfig(specWith(lbPort, `${BASE}11`), dir));
      writeFileSync(join(dir, "servers.state"), "1\n");
      const proc = await startHaproxy(file, lbPort);
      try {
        const r = sh(serversStateCommand(["cp-2", "cp-3"], "drain", join(dir, "admin.sock")));
        expect(r.exitCode).toBe(0);
        const admin = () => {
          expect(sh(saveServerStateCommand(join(dir, "admin.sock"), join(dir, "now.state"))).exitCode).toBe(0);
          return Object.fromEntries(
            readFileSync(join(dir, "now.state"), "utf8")
              .split("\n")
              .filter((l) => / kube_apiserver /.test(l))
              .map((l) => l.split(" "))
              .map((f) => [f[3], f[6]]),
          );
        };
        // srv_admin_state: 8 = forced drain.
        expect(admin()).toEqual({ "cp-1": "0", "cp-2": "8", "cp-3": "8" });
        expect((await probe(lbPort, 300)).filter((s) => s !== 200)).toEqual([]);
        // After a planned restart (certs:renew, node:reboot) the server comes back.
        expect(sh(serversStateCommand(["cp-3"], "ready", join(dir, "admin.sock"))).exitCode).toBe(0);
        expect(admin()).toEqual({ "cp-1": "0", "cp-2": "8", "cp-3": "0" });
      } finally {
        proc.kill();
        await proc.exited;
      }
      // No haproxy here (kube-vip mode): nothing to do, no error.
      expect(sh(serversStateCommand(["cp-3"], "drain", join(dir, "missing.sock"))).exitCode).toBe(0);
    },
    30_000,
  );
});

/**
 * A TLS apiserver for cp-3 whose /readyz answers as kube-apiserver's does (every failing check a
 * "[-]name failed: reason withheld" line, always listed on failure): serving, stopping (SIGTERM
 * received, still serving for its shutdown delay) or with its etcd down. /slow answers after 2.5 s:
 * a request in flight while the state changes.
 */
function apiserverForCp3(host: string, tls: { cert: string; key: string }) {
  let state: "serving" | "stopping" | "etcd-down" = "serving";
  let requests = 0;
  const line = (name: string, ok: boolean) => (ok ? `[+]${name} ok` : `[-]${name} failed: reason withheld`);
  const server = Bun.serve({
    hostname: host,
    port: 6443,
    tls,
    async fetch(req) {
      const path = req.url.replace(/^[a-z]+:\/\/[^/]*/i, "").split("?")[0];
      if (path === "/readyz") {
        if (state === "serving") return new Response("ok");
        const body = [
          line("ping", true),
          line("log", true),
          line("etcd", state !== "etcd-down"),
          line("shutdown", state !== "stopping"),
          "readyz check failed",
        ].join("\n");
        return new Response(`${body}\n`, { status: 500 });
      }
      requests++;
      if (path === "/slow") await Bun.sleep(2500);
      return new Response("cp-3");
    },
  });
  return {
    set: (s: typeof state) => {
      state = s;
    },
    requests: () => requests,
    stop: () => server.stop(true),
  };
}

/** cp-3's status in haproxy's stats (UP, NOLB, DOWN, "UP 1/2", …). */
function statusOfCp3(dir: string): string {
  const csv = sh(haproxyRuntimeCommand("show stat", join(dir, "admin.sock"))).stdout.toString();
  return parseStatsCsv(csv).find((b) => b.server === "cp-3")?.status ?? "";
}

async function waitForCp3(dir: string, want: RegExp, ms: number): Promise<string> {
  const deadline = performance.now() + ms;
  let s = statusOfCp3(dir);
  while (!want.test(s) && performance.now() < deadline) {
    await Bun.sleep(20);
    s = statusOfCp3(dir);
  }
  return s;
}

describe("an apiserver that stops gracefully (static-pod restart, reboot) leaves haproxy without a cut request", () => {
  test.skipIf(!HAVE)(
    "'[-]shutdown failed' in /readyz: NOLB, requests in flight finish, new ones go elsewhere; any other failure: DOWN, and its requests are cut",
    async () => {
      const lbPort = freePort();
      const dir = mkdtempSync(join(tmp, "graceful-"));
      const file = join(dir, "haproxy.cfg");
      writeFileSync(file, liveConfig(specWith(lbPort, `${BASE}15`), dir));
      writeFileSync(join(dir, "servers.state"), "1\n");
      const tls = {
        cert: readFileSync(join(tmp, "cert.pem"), "utf8"),
        key: readFileSync(join(tmp, "key.pem"), "utf8"),
      };
      const cp3 = apiserverForCp3(`${BASE}15`, tls);
      const proc = await startHaproxy(file, lbPort);
      try {
        const slowRound = async (state: "stopping" | "etcd-down") => {
          expect(await waitForCp3(dir, /^UP$/, 5000)).toBe("UP");
          // Six slow requests: two of them on cp-3 (round robin), in flight when its state changes.
          const slow = Array.from({ length: 6 }, () => healthzStatus("127.0.0.1", lbPort, 6000, "/slow"));
          await Bun.sleep(300);
          const onCp3 = cp3.requests();
          cp3.set(state);
          const status = await waitForCp3(dir, state === "stopping" ? /^NOLB$/ : /^DOWN/, 3000);
          const fresh = await probe(lbPort, 600);
          const reachedCp3 = cp3.requests() - onCp3;
          return { status, slow: await Promise.all(slow), fresh, reachedCp3 };
        };

        const stopping = await slowRound("stopping");
        expect(stopping.status).toBe("NOLB");
        expect(stopping.slow).toEqual([200, 200, 200, 200, 200, 200]);
        expect(stopping.fresh.filter((s) => s !== 200)).toEqual([]);
        expect(stopping.reachedCp3).toBe(0);
        // Still NOLB while it serves; once its port closes, the refused checks mark it DOWN.
        expect(statusOfCp3(dir)).toBe("NOLB");

        // Back to serving (the restarted apiserver): UP again, then a real failure.
        cp3.set("serving");
        const down = await slowRound("etcd-down");
        expect(down.status).toMatch(/^DOWN/);
        // shutdown-sessions still cuts the streams of a failed apiserver, so clients reconnect elsewhere.
        expect(down.slow.filter((s) => s !== 200).length).toBe(2);
        expect(down.fresh.filter((s) => s !== 200)).toEqual([]);
      } finally {
        proc.kill();
        await proc.exited;
        cp3.stop();
      }
    },
    30_000,
  );
});
