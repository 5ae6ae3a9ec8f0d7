// The script that keeps etcd's leader off the VIP holder, run with real bash, curl and a real
// three-member etcd on loopback (plain HTTP here; the product's TLS is the lab's). The "VIP" is
// 127.0.0.1 on lo, which this machine holds, or 127.0.0.2, which it does not.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { renderEtcdLeaderAwayScript } from "../../lib/render/etcd-leader-away.ts";
import { loadSpec } from "../../lib/spec/load.ts";
import { requireTool, run } from "./tool-helpers.ts";

const ready = requireTool("etcd") && requireTool("etcdctl") && requireTool("curl");
const dir = mkdtempSync(join(tmpdir(), "kha-leader-away-"));
// Ports of this process's own range, so parallel runs do not collide.
const base = 30000 + (process.pid % 2000) * 10;
const members = [0, 1, 2].map((i) => ({
  name: `m${i + 1}`,
  client: `http://127.0.0.1:${base + i * 2}`,
  peer: `http://127.0.0.1:${base + i * 2 + 1}`,
}));
const procs: Subprocess[] = [];

function scriptFor(vip: string): string {
  const spec = loadSpec(join(import.meta.dir, "../../cluster.example.yaml"));
  spec.controlPlaneEndpoint.vip = vip;
  spec.controlPlaneEndpoint.interface = "lo";
  const file = join(dir, `leader-away-${vip}.sh`);
  writeFileSync(file, renderEtcdLeaderAwayScript(spec), { mode: 0o755 });
  return file;
}

/** Each member's client URL and whether it leads, from etcdctl (simple output). */
function status(): { url: string; name: string; leader: boolean }[] {
  const r = run(["etcdctl", `--endpoints=${members.map((m) => m.client).join(",")}`, "endpoint", "status"], undefined, {
    ETCDCTL_API: "3",
  });
  return r.out
    .trim()
    .split("\n")
    .map((l) => l.split(",").map((f) => f.trim()))
    .map((f) => ({ url: f[0]!, name: members.find((m) => m.client === f[0])?.name ?? "?", leader: f[4] === "true" }));
}
const leader = () => status().find((s) => s.leader);

function once(script: string, endpoint: string) {
  return run(["bash", script, "once"], undefined, {
    KUBEADM_HA_ETCD_ENDPOINT: endpoint,
    KUBEADM_HA_ETCD_PKI: join(dir, "pki"),
  });
}

describe.skipIf(!ready)("kubeadm-ha-etcd-leader-away with a real etcd", () => {
  beforeAll(async () => {
    // curl is given these for the product's TLS; over plain HTTP it does not read them.
    mkdirSync(join(dir, "pki"));
    for (const f of ["ca.crt", "healthcheck-client.crt", "healthcheck-client.key"])
      writeFileSync(join(dir, "pki", f), "");
    const cluster = members.map((m) => `${m.name}=${m.peer}`).join(",");
    for (const m of members)
      procs.push(
        Bun.spawn(
          // biome-ignore format: flag list
          ["etcd", "--name", m.name, "--data-dir", join(dir, m.name), "--listen-client-urls", m.client,
            "--advertise-client-urls", m.client, "--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer,
            "--initial-cluster", cluster, "--initial-cluster-state", "new", "--heartbeat-interval", "50",
            "--election-timeout", "500"],
          { stdout: "ignore", stderr: "ignore" },
        ),
      );
    const end = Date.now() + 20_000;
    while (!(status().length === 3 && leader()) && Date.now() < end) await Bun.sleep(200);
    expect(leader()).toBeDefined();
  }, 30_000);
  afterAll(() => {
    for (const p of procs) p.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  test("on the VIP holder that leads etcd: the leadership goes to another member", async () => {
    const before = leader()!;
    const r = once(scriptFor("127.0.0.1"), before.url);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/moved the etcd leadership to m[123] \(raft index \d+, here \d+\)/);
    const to = /leadership to (m\d)/.exec(r.out)![1];
    expect(to).not.toBe(before.name);
    expect(leader()?.name).toBe(to);
  });

  test("on the VIP holder that is a follower, or on a leader without the VIP: nothing moves", () => {
    const lead = leader()!;
    const follower = status().find((s) => !s.leader)!;
    const a = once(scriptFor("127.0.0.1"), follower.url);
    const b = once(scriptFor("127.0.0.2"), lead.url);
    expect([a.code, b.code]).toEqual([0, 0]);
    expect(a.out + b.out).toBe("");
    expect(leader()?.name).toBe(lead.name);
  });

  test("no other member answers: the leadership stays, said once", () => {
    const lead = leader()!;
    const others = procs.filter((_, i) => members[i]!.name !== lead.name);
    for (const p of others) p.kill("SIGSTOP");
    try {
      const r = once(scriptFor("127.0.0.1"), lead.url);
      expect(r.code).toBe(0);
      expect(r.out).toContain("no other member answers, so the leadership stays");
    } finally {
      for (const p of others) p.kill("SIGCONT");
    }
  });
});
