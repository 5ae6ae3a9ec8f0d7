// The ops commands' remote parts against a real sshd on loopback (root, no lab):
// host facts, the short-lived listener (python3 and perl) and /dev/tcp probes,
// drift of fake deployed files under a temp root, and fetching a kubeconfig.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { UserError } from "../../lib/errors.ts";
import { closeAll, connectAll } from "../../lib/ops/connect.ts";
import { nodeDrift } from "../../lib/ops/drift.ts";
import { fetchAdminConf, pointAtVip, writeKubeconfig } from "../../lib/ops/kubeconfig.ts";
import { FACTS_SCRIPT, parseFacts, parseProbes, probeScript, startTestListener } from "../../lib/ops/preflight.ts";
import { canRunSshd, freePort, type LoopbackSshd, startLoopbackSshd } from "../../lib/remote/loopback-sshd.ts";
import { connectNode, type Remote } from "../../lib/remote/ssh.ts";
import { renderCluster } from "../../lib/render/index.ts";
import { caCertHash, generateSecrets } from "../../lib/secrets.ts";
import { parseSpec } from "../../lib/spec/load.ts";
import type { ClusterSpec } from "../../lib/spec/schema.ts";

const missing = canRunSshd();
if (missing && process.env.CI === "true") throw new Error(`ops loopback tests need a real sshd: ${missing}`);
const maybe = missing ? describe.skip : describe;

function specFor(port: number, keyPath: string): ClusterSpec {
  return parseSpec(`
name: loop
kubernetes: { version: "1.31.4", packages: { source: preinstalled } }
ssh: { user: root, port: ${port}, privateKeyPath: ${keyPath} }
controlPlaneEndpoint: { vip: 127.0.0.100, port: 8443, interface: lo }
nodes:
  - { name: cp-1, address: 127.0.0.11, role: control-plane, ssh: { host: 127.0.0.1 } }
  - { name: cp-2, address: 127.0.0.12, role: control-plane, ssh: { host: 127.0.0.1 } }
  - { name: cp-3, address: 127.0.0.13, role: control-plane, ssh: { host: 127.0.0.1 } }
`);
}

/** Whether something accepts TCP connections on 127.0.0.1:port. */
async function accepts(port: number): Promise<boolean> {
  try {
    const s = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
    s.end();
    return true;
  } catch {
    return false;
  }
}

maybe("ops commands on a loopback sshd", () => {
  setDefaultTimeout(60_000);
  let sshd: LoopbackSshd;
  let spec: ClusterSpec;
  let remote: Remote;
  let work: string;
  beforeAll(async () => {
    sshd = await startLoopbackSshd();
    spec = specFor(sshd.port, sshd.clientKeyPath);
    remote = await connectNode(spec, spec.nodes[0]!, { knownHostsText: sshd.knownHostsLine });
    work = mkdtempSync(join(tmpdir(), "kha-ops-"));
  });
  afterAll(async () => {
    remote?.close();
    await sshd?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  test("host facts: root, the sshd listener with its process, modules, cgroups", async () => {
    const r = await remote.exec("bash -s", { stdin: FACTS_SCRIPT });
    expect(r.code).toBe(0);
    const f = parseFacts(r.stdout);
    expect(f.sudo).toBe("root");
    const l = f.listeners.find((x) => x.port === sshd.port);
    expect(l?.procs[0]?.name).toBe("sshd");
    expect(f.cmdlines.get(l!.procs[0]!.pid)).toContain("sshd");
    expect(f.modules.size).toBe(2);
    expect(f.cgroupFs).not.toBe("");
    expect(f.tools.has("perl")).toBe(true);
  });

  test.each(["python3", "perl"] as const)(
    "a %s listener accepts, peers' /dev/tcp probes see it, and it is gone after stop",
    async (tool) => {
      const [a, b, closed] = [await freePort(), await freePort(), await freePort()];
      const t0 = Date.now();
      const l = await startTestListener(remote, [a, b], 20, tool);
      const startMs = Date.now() - t0;
      expect(l.error).toBeUndefined();
      expect(l.tool).toBe(tool);
      expect(l.failed.size).toBe(0);
      const targets = [a, b, closed].map((port) => ({ address: "127.0.0.1", port }));
      const probes = parseProbes((await remote.exec("bash -s", { stdin: probeScript(targets) })).stdout);
      expect(probes.get(`127.0.0.1:${a}`)).toBe("ok");
      expect(probes.get(`127.0.0.1:${b}`)).toBe("ok");
      expect(probes.get(`127.0.0.1:${closed}`)).toBe("refused");
      await l.stop();
      expect(await accepts(a)).toBe(false);
      expect(await accepts(b)).toBe(false);
      process.stderr.write(`${tool} listener ready in ${startMs} ms\n`);
    },
  );

  test("a port already taken is reported by the listener, not silently skipped", async () => {
    const l = await startTestListener(remote, [sshd.port], 10);
    try {
      expect(l.failed.get(sshd.port)).toMatch(/in use/i);
    } finally {
      await l.stop();
    }
  });

  test("drift: clean after install, then a hand edit, a deleted file and a chmod are each named with the step's address", async () => {
    const s = generateSecrets();
    const steps = renderCluster(spec, { caCertPem: s.caCert, caCertHash: caCertHash(s.caCert) }).filter(
      (st) => st.node.name === "cp-1",
    );
    const root = join(work, "root");
    for (const f of steps.flatMap((st) => st.files)) {
      mkdirSync(dirname(join(root, f.path)), { recursive: true });
      writeFileSync(join(root, f.path), f.content);
      chmodSync(join(root, f.path), Number.parseInt(f.mode, 8));
    }
    const clean = await nodeDrift(spec, remote, steps, { root });
    expect(clean.items).toEqual([]);
    expect(clean.checked).toBe(steps.reduce((n, st) => n + st.files.length + (st.absent?.length ?? 0), 0));

    writeFileSync(
      join(root, "/etc/haproxy/haproxy.cfg"),
      `${readFileSync(join(root, "/etc/haproxy/haproxy.cfg"), "utf8")}# hand edit\n`,
    );
    unlinkSync(join(root, "/etc/keepalived/check_apiserver.sh"));
    chmodSync(join(root, "/etc/sysctl.d/99-kubeadm-ha.conf"), 0o666);
    const d = await nodeDrift(spec, remote, steps, { root });
    expect(d.items.map((i) => [i.path, i.kind, i.address])).toEqual([
      ["/etc/sysctl.d/99-kubeadm-ha.conf", "mode", "null_resource.prepare_cp_1"],
      ["/etc/keepalived/check_apiserver.sh", "missing", "null_resource.loadbalancer_cp_1"],
      ["/etc/haproxy/haproxy.cfg", "changed", "null_resource.loadbalancer_cp_1"],
    ]);
  });

  test("drift: a backup timer the spec no longer schedules is reported with the step that removes it", async () => {
    const s = generateSecrets();
    const ctx = { caCertPem: s.caCert, caCertHash: caCertHash(s.caCert) };
    const scheduled = structuredClone(spec);
    scheduled.etcd.backup.schedule = "*-*-* 03:00:00";
    // What an earlier deploy with a schedule left on cp-1.
    const root = join(work, "root-timer");
    const old = renderCluster(scheduled, ctx).filter((st) => st.node.name === "cp-1");
    for (const f of old.flatMap((st) => st.files)) {
      mkdirSync(dirname(join(root, f.path)), { recursive: true });
      writeFileSync(join(root, f.path), f.content);
      chmodSync(join(root, f.path), Number.parseInt(f.mode, 8));
    }
    expect(spec.etcd.backup.schedule).toBe("");
    const now = renderCluster(spec, ctx).filter((st) => st.node.name === "cp-1");
    const d = await nodeDrift(spec, remote, now, { root });
    expect(d.items.map((i) => [i.path, i.kind, i.address])).toEqual(
      [
        "/usr/local/lib/kubeadm-ha/etcd-backup.sh",
        "/etc/systemd/system/kubeadm-ha-etcd-backup.service",
        "/etc/systemd/system/kubeadm-ha-etcd-backup.timer",
      ].map((p) => [p, "unwanted", "null_resource.etcd_backup_timer_cp_1"]),
    );
    // Once the removal ran, drift is clean.
    for (const p of [
      "/usr/local/lib/kubeadm-ha/etcd-backup.sh",
      "/etc/systemd/system/kubeadm-ha-etcd-backup.service",
      "/etc/systemd/system/kubeadm-ha-etcd-backup.timer",
    ])
      unlinkSync(join(root, p));
    expect((await nodeDrift(spec, remote, now, { root })).items).toEqual([]);
  });

  test("connectAll reports through the logger it is given: host, phase, what happened; nothing on stderr", async () => {
    const lines: string[][] = [];
    const write = process.stderr.write;
    let printed = "";
    process.stderr.write = ((chunk: string) => {
      printed += chunk;
      return true;
    }) as typeof process.stderr.write;
    let sessions: Awaited<ReturnType<typeof connectAll>> = [];
    try {
      sessions = await connectAll(spec, spec.nodes, {
        knownHostsText: sshd.knownHostsLine,
        phase: "check",
        log: (...l) => lines.push(l),
      });
    } finally {
      process.stderr.write = write;
      closeAll(sessions);
    }
    expect(lines.sort()).toEqual([
      ["cp-1", "check", "connected"],
      ["cp-2", "check", "connected"],
      ["cp-3", "check", "connected"],
    ]);
    expect(printed).toBe("");
  });

  test("kubeconfig: fetched from the first control plane that has it, pointed at the VIP, 0600, never overwritten silently", async () => {
    const admin = join(work, "admin.conf");
    writeFileSync(
      admin,
      "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: QUJD\n    server: https://127.0.0.11:6443\n  name: kubernetes\nkind: Config\nusers:\n- name: kubernetes-admin\n  user:\n    client-key-data: S0VZ\n",
      { mode: 0o600 },
    );
    const got = await fetchAdminConf(spec, { connect: { knownHostsText: sshd.knownHostsLine }, path: admin });
    expect(got.from).toBe("cp-1");
    const pointed = pointAtVip(got.content, spec);
    expect(pointed).toContain("server: https://127.0.0.100:8443\n");
    expect(pointed).toContain("client-key-data: S0VZ");
    expect(pointed).toContain("certificate-authority-data: QUJD");

    const out = join(work, "kube", "loop.kubeconfig");
    expect(writeKubeconfig(out, pointed)).toBe("written");
    expect(statSync(out).mode & 0o777).toBe(0o600);
    expect(statSync(dirname(out)).mode & 0o777).toBe(0o700);
    expect(writeKubeconfig(out, pointed)).toBe("unchanged");
    expect(() => writeKubeconfig(out, `${pointed}# other\n`)).toThrow(UserError);
    expect(writeKubeconfig(out, `${pointed}# other\n`, true)).toBe("replaced");
    expect(statSync(out).mode & 0o777).toBe(0o600);

    // The same problem on every control plane is one paragraph naming them, exit 1 (an operation failed).
    const err = await fetchAdminConf(spec, {
      connect: { knownHostsText: sshd.knownHostsLine },
      path: join(work, "none"),
      log: () => {},
    }).catch((e: UserError) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as UserError).message).toMatch(/^no control plane gave .*none:\n\ncp-1, cp-2, cp-3: /);
    expect((err as UserError).message.match(/No such file/g)).toHaveLength(1);
    expect((err as UserError).exitCode).toBe(1);
  });
});
