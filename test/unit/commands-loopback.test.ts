// The commands' --json envelopes after they reached real hosts: every node is this machine's
// loopback sshd (root, no lab), which runs none of the cluster, so each command gets as far as
// the hosts let it: trust-hosts and chaos --dry-run succeed, the checks fail (exit 1) with their
// rows as data, drift finds drift (exit 3). Nothing here changes this machine: only --dry-run
// and read-only commands run, and trust-hosts writes the test's own known_hosts.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { canRunSshd, type LoopbackSshd, startLoopbackSshd } from "../../lib/remote/loopback-sshd.ts";
import { type Envelope, envelopeOf, makeSnapshot, type Ran, runBun } from "./cli-helpers.ts";
import { requireTool } from "./tool-helpers.ts";

const missing = canRunSshd();
if (missing && process.env.CI === "true") throw new Error(`these tests need a real sshd: ${missing}`);
const haveEtcd = requireTool("etcd") && requireTool("etcdctl");
setDefaultTimeout(120_000);

/** The envelope's promises, whatever the outcome: ok iff exit 0, error.code is the exit code. */
function consistent(r: Ran, command: string): Envelope {
  const e = envelopeOf(r);
  expect(e.command).toBe(command);
  expect(e.ok).toBe(r.code === 0);
  if (r.code === 0) expect(e.error).toBeNull();
  else expect(e.error).toEqual({ message: expect.any(String), code: r.code });
  return e;
}

describe.skipIf(Boolean(missing))("--json envelopes from commands that reached the hosts", () => {
  let sshd: LoopbackSshd;
  let work: string;
  let spec: string;
  let snapshot: string;
  const run = (args: string[]) =>
    runBun([...args, "--spec", spec, "--json"], {
      env: { KUBEADM_HA_SECRETS_DIR: join(work, "secrets"), CDKTF_OUTDIR: join(work, "out") },
    });

  beforeAll(async () => {
    sshd = await startLoopbackSshd();
    work = mkdtempSync(join(tmpdir(), "kha-envelopes-"));
    spec = join(work, "loop.yaml");
    writeFileSync(
      spec,
      `name: loop
kubernetes: { version: "1.31.4", packages: { source: preinstalled } }
ssh: { user: root, port: ${sshd.port}, privateKeyPath: ${sshd.clientKeyPath}, knownHostsPath: state/known_hosts }
controlPlaneEndpoint: { vip: 127.0.0.100, port: 8443, interface: lo }
etcd: { backup: { directory: backups } }
nodes:
  - { name: cp-1, address: 127.0.0.11, role: control-plane, ssh: { host: 127.0.0.1 } }
  - { name: cp-2, address: 127.0.0.12, role: control-plane, ssh: { host: 127.0.0.1 } }
  - { name: cp-3, address: 127.0.0.13, role: control-plane, ssh: { host: 127.0.0.1 } }
`,
    );
    snapshot = haveEtcd ? await makeSnapshot(join(work, "snap")) : join(work, "none.db");
  });
  afterAll(async () => {
    await sshd?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test("trust-hosts: without --yes nothing is written; with --yes the key is, data lists the hosts", async () => {
    const look = await run(["scripts/trust-hosts.ts"]);
    expect(look.code).toBe(0);
    const first = consistent(look, "trust-hosts");
    expect(first.data).toMatchObject({ knownHosts: join(work, "state/known_hosts"), written: false });
    expect(first.data.hosts[0]).toMatchObject({ node: "cp-1", host: "127.0.0.1", state: "new", written: false });
    expect(existsSync(join(work, "state/known_hosts"))).toBe(false);
    const write = await run(["scripts/trust-hosts.ts", "--yes"]);
    expect(write.code).toBe(0);
    expect(consistent(write, "trust-hosts").data.written).toBe(true);
    expect(existsSync(join(work, "state/known_hosts"))).toBe(true);
  });

  describe("with the host key recorded", () => {
    beforeAll(async () => {
      if (!existsSync(join(work, "state/known_hosts"))) await run(["scripts/trust-hosts.ts", "--yes"]);
      await run(["scripts/secrets.ts"]);
    });

    test("verify: exit 1, the failed checks in error, every row in data", async () => {
      const r = await run(["scripts/verify.ts"]);
      expect(r.code).toBe(1);
      const e = consistent(r, "verify");
      expect(e.error!.message).toMatch(/^\d+ checks? failed \(.*vip VIP on exactly one control plane/);
      expect(e.data.cluster).toBe("loop");
      expect(e.data.summary.fail).toBeGreaterThan(0);
      expect(e.data.rows.some((x: { host: string }) => x.host === "cp-1")).toBe(true);
    });

    test("drift: exit 3, the drifted files and the -replace addresses in data", async () => {
      const r = await run(["scripts/drift.ts"]);
      expect(r.code).toBe(3);
      const e = consistent(r, "drift");
      expect(e.error!.message).toContain("drifted file(s)");
      expect(e.data.drift.length).toBeGreaterThan(0);
      expect(e.data.replace).toContain("null_resource.prepare_cp_1");
      expect(e.data.rows.length).toBeGreaterThan(0);
    });

    test("chaos --dry-run: exit 0, the plan and why it would refuse in data", async () => {
      const r = await run(["scripts/chaos.ts", "--dry-run"]);
      expect(r.code).toBe(0);
      const e = consistent(r, "chaos");
      expect(e.data).toMatchObject({ cluster: "loop", mode: "isolate" });
      expect(e.data.plan).toHaveLength(1);
      expect(e.data.problems.join(" ")).toContain("the VIP is on no control plane");
    });

    test("kubeconfig: exit 1, one paragraph for the three control planes", async () => {
      const r = await run(["scripts/kubeconfig.ts", "--out", join(work, "kubeconfig")]);
      expect(r.code).toBe(1);
      const e = consistent(r, "kubeconfig");
      expect(e.data).toBeNull();
      expect(e.error!.message).toContain("no control plane gave /etc/kubernetes/admin.conf:\n\ncp-1, cp-2, cp-3: ");
    });

    test("etcd:backup: exit 1, no healthy member, said once", async () => {
      const r = await run(["scripts/etcd-backup.ts", "--out", join(work, "backups")]);
      expect(r.code).toBe(1);
      const e = consistent(r, "etcd:backup");
      expect(e.error!.message).toStartWith("no healthy etcd member to back up from:\n\n");
      // The three control planes fail alike (no etcd here): one paragraph naming them.
      expect(e.error!.message.split("\n\n")).toHaveLength(3);
      expect(e.error!.message).toMatch(/The same on cp-2, cp-3\.|cp-1, cp-2, cp-3: /);
    });

    test("etcd:patch-manifest --dry-run: exit 1 when a control plane has no etcd.yaml to read", async () => {
      const r = await run(["scripts/etcd-patch-manifest.ts", "--data-dir", "/var/lib/etcd-restored", "--dry-run"]);
      expect(r.code).toBe(1);
      expect(consistent(r, "etcd:patch-manifest").error!.message).toContain("cp-1");
    });

    test.skipIf(!haveEtcd)(
      "etcd:restore --dry-run: exit 2, refused before any change (no kubeadm etcd here)",
      async () => {
        const r = await run(["scripts/etcd-restore.ts", snapshot, "--dry-run"]);
        expect(r.code).toBe(2);
        expect(consistent(r, "etcd:restore").error!.message).toContain("Nothing was changed");
      },
    );

    test("preflight: the rows in data, the envelope consistent with the exit code", async () => {
      const r = await run(["scripts/preflight.ts"]);
      expect([0, 1]).toContain(r.code);
      const e = consistent(r, "preflight");
      expect(e.data.cluster).toBe("loop");
      expect(e.data.rows.length).toBeGreaterThan(0);
    });
  });
});
