// verify's parsers against real tool output where the tool is here (haproxy's stats
// CSV from a live haproxy), its scripts through shellcheck, and secrets kept out of argv.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseMemberList } from "../../lib/etcd/member-list.ts";
import {
  etcdCheckScript,
  holdsVip,
  parseEndpointHealth,
  parseNodes,
  parseStatsCsv,
  parseSteps,
  statsScript,
  workloadScript,
} from "../../lib/ops/verify.ts";
import { freePort } from "../../lib/remote/loopback-sshd.ts";
import { parseSpec } from "../../lib/spec/load.ts";

const spec = parseSpec(readFileSync(resolve(import.meta.dir, "../../cluster.example.yaml"), "utf8"));

function shellcheck(script: string): string {
  const r = Bun.spawnSync(["shellcheck", "-s", "bash", "-S", "warning", "-"], {
    stdin: new TextEncoder().encode(`#!/bin/bash\n${script}`),
  });
  return r.stdout.toString() + r.stderr.toString();
}

describe("parsers", () => {
  test("VIP holder from ip -o -4 addr show", () => {
    const out =
      "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n2: eth0    inet 198.18.0.11/24 scope global eth0\n2: eth0    inet 198.18.0.10/24 scope global secondary eth0\n";
    expect(holdsVip(out, "198.18.0.10")).toBe(true);
    expect(holdsVip(out, "198.18.0.1")).toBe(false); // a prefix of 198.18.0.11 must not count
  });

  test("etcd member list (uint64 IDs), endpoint health and kubectl nodes", () => {
    const members = parseMemberList(
      '{"header":{"cluster_id":17237436991929493444,"member_id":9372538179322589801,"raft_term":2},"members":[{"ID":9372538179322589801,"name":"cp-1","peerURLs":["https://198.18.0.11:2380"],"clientURLs":["https://198.18.0.11:2379"]},{"ID":10501334649042878790,"name":"cp-2","peerURLs":["https://198.18.0.12:2380"]}]}',
    );
    expect(members.members.map(({ name, clientUrls }) => ({ name, clientUrls }))).toEqual([
      { name: "cp-1", clientUrls: ["https://198.18.0.11:2379"] },
      { name: "cp-2", clientUrls: [] },
    ]);
    const h = parseEndpointHealth(
      'https://198.18.0.11:2379 is healthy: successfully committed proposal: took = 9.1ms\n{"level":"warn"}\nhttps://198.18.0.12:2379 is unhealthy: failed to commit proposal: context deadline exceeded\nError: unhealthy cluster\n',
    );
    expect(h.get("https://198.18.0.11:2379")).toEqual({
      healthy: true,
      detail: "successfully committed proposal: took = 9.1ms",
    });
    expect(h.get("https://198.18.0.12:2379")!.healthy).toBe(false);
    const ready = parseNodes(
      JSON.stringify({
        items: [
          { metadata: { name: "cp-1" }, status: { conditions: [{ type: "Ready", status: "True" }] } },
          {
            metadata: { name: "cp-2" },
            spec: { unschedulable: true },
            status: { conditions: [{ type: "Ready", status: "True" }] },
          },
          {
            metadata: { name: "worker-1" },
            status: {
              conditions: [
                { type: "MemoryPressure", status: "False" },
                { type: "Ready", status: "False" },
              ],
            },
          },
        ],
      }),
    );
    expect([...ready]).toEqual([
      ["cp-1", { ready: "True", unschedulable: false }],
      ["cp-2", { ready: "True", unschedulable: true }],
      ["worker-1", { ready: "False", unschedulable: false }],
    ]);
    expect(parseSteps("step deploy ok deployment web\nnoise\nstep curl:cp-1 fail http://x -> 000\n")).toEqual([
      { step: "deploy", ok: true, detail: "deployment web" },
      { step: "curl:cp-1", ok: false, detail: "http://x -> 000" },
    ]);
  });
});

describe("haproxy stats from a live haproxy", () => {
  const dir = mkdtempSync(join(tmpdir(), "kha-ops-haproxy-"));
  let server: Server | undefined;
  let proc: ReturnType<typeof Bun.spawn> | undefined;
  afterAll(() => {
    proc?.kill();
    server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test.skipIf(!Bun.which("haproxy") && process.env.CI !== "true")(
    "one backend UP, one DOWN, parsed from `show stat`",
    async () => {
      const [up, down, front] = [await freePort(), await freePort(), await freePort()];
      server = createServer((s) => s.end()).listen(up, "127.0.0.1");
      const sock = join(dir, "admin.sock");
      writeFileSync(
        join(dir, "h.cfg"),
        `global\n  stats socket ${sock} mode 600 level admin\ndefaults\n  mode tcp\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\nfrontend kube_apiserver\n  bind 127.0.0.1:${front}\n  default_backend kube_apiserver\nbackend kube_apiserver\n  default-server check inter 200ms fall 1 rise 1\n  server cp-1 127.0.0.1:${up}\n  server cp-2 127.0.0.1:${down}\n`,
      );
      proc = Bun.spawn(["haproxy", "-f", join(dir, "h.cfg")], { stdout: "ignore", stderr: "ignore" });
      let csv = "";
      for (let i = 0; i < 40; i++) {
        await Bun.sleep(100);
        const r = Bun.spawnSync([
          "python3",
          "-c",
          'import socket,sys\ns=socket.socket(socket.AF_UNIX);s.connect(sys.argv[1]);s.sendall(b"show stat\\n")\nb=b""\nwhile True:\n  d=s.recv(65536)\n  if not d: break\n  b+=d\nsys.stdout.write(b.decode())',
          sock,
        ]);
        csv = r.stdout.toString();
        const st = parseStatsCsv(csv);
        if (st.length === 2 && st[0]!.status === "UP" && st[1]!.status === "DOWN") break;
      }
      const backends = parseStatsCsv(csv);
      expect(backends.map((b) => [b.server, b.status])).toEqual([
        ["cp-1", "UP"],
        ["cp-2", "DOWN"],
      ]);
      expect(backends[1]!.check).toMatch(/^L4CON/);
    },
  );
});

describe("scripts", () => {
  test("pass shellcheck", () => {
    expect(shellcheck(statsScript(spec))).toBe("");
    expect(shellcheck(etcdCheckScript())).toBe("");
    expect(shellcheck(workloadScript(spec, "nginx"))).toBe("");
  });

  test("the stats password goes to curl on stdin from the host's secret file, never as an argument", () => {
    const s = statsScript(spec);
    expect(s).toContain("curl -fsS --max-time 3 --noproxy '*' -K -");
    expect(s).toContain("/etc/kubeadm-ha/secrets/stats-password");
    expect(s).not.toMatch(/curl[^\n]*-u /);
  });

  test("the workload test curls through the VIP and every node, and always deletes its namespace", () => {
    const s = workloadScript(spec, "nginx:1.27");
    for (const a of ["10.0.0.162", ...spec.nodes.map((n) => n.address)]) expect(s).toContain(`'${a}'`);
    expect(s).toContain("trap cleanup EXIT");
    expect(s).toContain("--replicas=4");
    expect(s).toContain("--type=NodePort");
  });
});
