// Hosts that accept the SSH connection but give no session must fail, bounded and said clearly,
// never hang: a login refused after the key was accepted (a non-root user while /run/nologin
// exists, as on a host that has not finished booting: sshd's PAM account stack says no and
// hangs up), and a server that stops answering once connected (no channel for a command).
// Real sshd processes on loopback (lib/remote/loopback-sshd.ts), short bounds.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UserError } from "../../lib/errors.ts";
import { connectAll, hostProblems, sshRow } from "../../lib/ops/connect.ts";
import { canRunSudoUserSshd, type LoopbackSshd, startLoopbackSshd } from "../../lib/remote/loopback-sshd.ts";
import { connectNode } from "../../lib/remote/ssh.ts";
import { parseSpec } from "../../lib/spec/load.ts";
import type { ClusterSpec } from "../../lib/spec/schema.ts";
import { envelopeOf, runBun } from "./cli-helpers.ts";

const missing = canRunSudoUserSshd();
if (missing && process.env.CI === "true") throw new Error(`these tests need sshd, sudo and unshare: ${missing}`);

const USER = "kha-boot";

function specText(port: number, keyPath: string, user: string, knownHosts = "known_hosts"): string {
  return `name: t
kubernetes: { version: "1.31.4", packages: { source: preinstalled } }
ssh: { user: ${user}, port: ${port}, privateKeyPath: ${keyPath}, knownHostsPath: ${knownHosts} }
controlPlaneEndpoint: { vip: 127.0.0.100, interface: lo }
nodes:
  - { name: cp-1, address: 127.0.0.11, role: control-plane, ssh: { host: 127.0.0.1 } }
  - { name: cp-2, address: 127.0.0.12, role: control-plane, ssh: { host: 127.0.0.1 } }
  - { name: cp-3, address: 127.0.0.13, role: control-plane, ssh: { host: 127.0.0.1 } }
`;
}

/** Every process below `pid` (sshd serves each connection in children of the listener). */
function descendants(pid: number): number[] {
  const kids = spawnSync("pgrep", ["-P", String(pid)], { encoding: "utf8" })
    .stdout.split("\n")
    .filter(Boolean)
    .map(Number);
  return kids.flatMap((k) => [k, ...descendants(k)]);
}

describe.skipIf(Boolean(missing))("a host that accepts the connection but gives no session", () => {
  let s: LoopbackSshd;
  let spec: ClusterSpec;
  let work: string;
  beforeAll(async () => {
    s = await startLoopbackSshd({ sudoUser: USER, nologin: true });
    spec = parseSpec(specText(s.port, s.clientKeyPath, USER));
    work = mkdtempSync(join(tmpdir(), "kha-refused-"));
  });
  afterAll(async () => {
    await s?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test("a login refused after the key (nologin) fails at once, naming the host, what it said and why", async () => {
    const t0 = Date.now();
    const e = await connectNode(spec, spec.nodes[0]!, { knownHostsText: s.knownHostsLine, readyTimeoutMs: 2000 }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(e).toBeInstanceOf(UserError);
    const err = e as UserError;
    expect(err.exitCode).toBe(1);
    expect(err.message).toStartWith(`cp-1 (${USER}@127.0.0.1:${s.port}): the SSH server closed the connection`);
    expect(err.message).toContain("System is booting up");
    expect(err.message).toContain("/run/nologin");
    // root is exempt from nologin: the same server lets it in, so the refusal is the login, not the setup.
    const root = parseSpec(specText(s.port, s.clientKeyPath, "root"));
    const r = await connectNode(root, root.nodes[0]!, { knownHostsText: s.knownHostsLine, readyTimeoutMs: 2000 });
    expect((await r.exec("id -u")).stdout.trim()).toBe("0");
    r.close();
  }, 8000);

  test("connectAll: every node gets its ssh FAIL row, and the problem is one paragraph naming them all", async () => {
    const sessions = await connectAll(spec, spec.nodes, {
      knownHostsText: s.knownHostsLine,
      readyTimeoutMs: 2000,
      quiet: true,
    });
    expect(sessions.map((x) => [x.node.name, !!x.remote])).toEqual([
      ["cp-1", false],
      ["cp-2", false],
      ["cp-3", false],
    ]);
    expect(sessions.map((x) => sshRow(x).status)).toEqual(["fail", "fail", "fail"]);
    const grouped = hostProblems(sessions.map((x) => ({ host: x.node.name, error: x.error })));
    expect(grouped.paragraphs).toHaveLength(1);
    expect(grouped.text).toContain("refused the login");
    expect(grouped.text).toContain("The same on cp-2, cp-3.");
  }, 8000);

  test("bun run preflight --json on such hosts ends (exit 1) with the reason in each ssh row", async () => {
    writeFileSync(join(work, "known_hosts"), `${s.knownHostsLine}\n`);
    const file = join(work, "cluster.yaml");
    writeFileSync(file, specText(s.port, s.clientKeyPath, USER));
    const r = await runBun(["scripts/preflight.ts", "--spec", file, "--json"]);
    expect(r.code).toBe(1);
    const rows = envelopeOf(r).data.rows.filter((x: { check: string }) => x.check === "ssh");
    expect(rows.map((x: { host: string; status: string }) => [x.host, x.status])).toEqual([
      ["cp-1", "fail"],
      ["cp-2", "fail"],
      ["cp-3", "fail"],
    ]);
    expect(rows[0].detail).toContain("refused the login");
  }, 20_000);

  test("a server that stops answering once connected: a command fails after the session bound", async () => {
    const root = parseSpec(specText(s.port, s.clientKeyPath, "root"));
    const r = await connectNode(root, root.nodes[0]!, { knownHostsText: s.knownHostsLine, sessionTimeoutMs: 1500 });
    const frozen = descendants(s.pid);
    expect(frozen.length).toBeGreaterThan(0);
    const thaw = () => {
      for (const pid of frozen) {
        try {
          process.kill(pid, "SIGCONT");
        } catch {}
      }
    };
    for (const pid of frozen) process.kill(pid, "SIGSTOP");
    // Resumed even if exec hangs past the test's timeout (as it did before the bound).
    const safety = setTimeout(thaw, 6000);
    try {
      const t0 = Date.now();
      const e = await r.exec("true").then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(Date.now() - t0).toBeLessThan(3000);
      expect(e).toBeInstanceOf(UserError);
      expect((e as UserError).message).toStartWith(
        `cp-1 (root@127.0.0.1:${s.port}): the SSH server opened no session for a command within 1.5 s`,
      );
    } finally {
      clearTimeout(safety);
      thaw();
      r.close();
    }
  }, 8000);
});
