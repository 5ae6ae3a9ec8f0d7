// The ops commands against the lab hosts (root): verify passes on a healthy lab and
// names the broken piece (haproxy stopped on one host, VIP missing, an etcd member
// down); drift catches a hand edit and a deleted file and is clean after re-applying
// the step; preflight names a port held by a listener started on a lab host and
// leaves no listener of its own behind; kubeconfig comes from the first control plane
// that has admin.conf, pointed at the VIP; a backup timer the spec no longer schedules
// is drift, and its removal step deletes it (real systemd on the lab host).
//
// The load-balancer step is applied here over SSH with its rendered script (as the
// stack's provisioners do: files and secrets staged, then run.sh); the other steps'
// files are only installed, so drift has a clean baseline without running kubeadm.

import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectNode, type Remote } from "../../lib/remote/ssh.ts";
import { BACKUP_TIMER_PATHS, BACKUP_UNIT, etcdBackupTimerStep } from "../../lib/render/etcd-backup-timer.ts";
import { haproxyRuntimeCommand } from "../../lib/render/haproxy.ts";
import { renderCluster } from "../../lib/render/index.ts";
import { stageDir } from "../../lib/render/paths.ts";
import type { Step } from "../../lib/render/types.ts";
import { type ClusterSecrets, caCertHash, ensureSecrets, hostSecretValue } from "../../lib/secrets.ts";
import { loadSpec } from "../../lib/spec/load.ts";
import type { ClusterSpec } from "../../lib/spec/schema.ts";
import { LAB, labDown, labExec, labPaths, labStatus, labUp, PROJECT_ROOT, requireLab } from "./lab.ts";
import { run, waitFor } from "./sys.ts";

const lab = requireLab();
// The lab's secrets live in a temp dir, never among a developer's real ones; the commands inherit it.
process.env.KUBEADM_HA_SECRETS_DIR ??= mkdtempSync(join(tmpdir(), "kha-lab-secrets-"));
const BUN = `${PROJECT_ROOT}/node_modules/.bin/bun`;
const CPS = ["cp-1", "cp-2", "cp-3"];
const times: string[] = [];

/** The `data` of a check command's --json envelope, with the envelope's `ok`. */
interface Report {
  ok: boolean;
  rows: { host: string; check: string; status: string; detail: string; fix?: string }[];
  replace?: string[];
  drift?: { host: string; path: string; kind: string }[];
}

async function cli(
  cmd: string,
  args: string[] = [],
): Promise<{ code: number; report?: Report; stdout: string; stderr: string; seconds: number }> {
  const t0 = Date.now();
  const r = await run([BUN, `scripts/${cmd}.ts`, "--spec", labPaths.spec, ...args], {
    cwd: PROJECT_ROOT,
    timeoutMs: 180_000,
  });
  let envelope: { ok: boolean; command: string; data: Report | null } | undefined;
  try {
    envelope = JSON.parse(r.stdout);
  } catch {
    /* not JSON */
  }
  if (envelope) expect(envelope.command).toBe(cmd);
  const report = envelope?.data ? { ...envelope.data, ok: envelope.ok } : undefined;
  return { ...r, report, seconds: (Date.now() - t0) / 1000 };
}

const failing = (rep: Report | undefined) => (rep?.rows ?? []).filter((r) => r.status === "fail");
const sh = async (host: string, cmd: string) => {
  const r = await labExec(host, cmd, { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`${host}: \`${cmd}\` exited ${r.code}: ${r.stderr}`);
  return r.stdout.trim();
};

/** haproxy's view of the apiservers on `host` (runtime API `show stat`): server name -> status. */
async function backendStates(host: string): Promise<Record<string, string>> {
  const csv = await sh(host, haproxyRuntimeCommand("show stat"));
  const out: Record<string, string> = {};
  for (const line of csv.split("\n")) {
    const f = line.split(",");
    if (f[0] === "kube_apiserver" && f[1] !== "FRONTEND" && f[1] !== "BACKEND")
      out[f[1]!] = (f[17] ?? "").split(" ")[0]!;
  }
  return out;
}

/**
 * What the stack's provisioners do for one step: stage files and secrets as the spec's SSH user
 * (the lab's is a sudo user), then install them or run run.sh as root through `sudo -n`.
 */
async function applyStep(remote: Remote, step: Step, secrets: ClusterSecrets, runScript: boolean): Promise<void> {
  const id = randomUUID();
  const stage = stageDir(step.phase, id);
  await remote.run(`mkdir -m 0700 ${stage} && mkdir -p ${stage}/secrets`);
  for (const f of step.files) {
    await remote.run(`mkdir -p ${stage}/root${f.path.slice(0, f.path.lastIndexOf("/"))}`);
    await remote.put({ content: f.content }, `${stage}/root${f.path}`, { mode: 0o600 });
  }
  if (!runScript) {
    const installs = step.files.map((f) => `install -D -m ${f.mode} ${stage}/root${f.path} ${f.path}`).join(" && ");
    await remote.run(`${installs || "true"} && rm -rf ${stage}`, { sudo: true });
    return;
  }
  for (const name of step.secrets) {
    await remote.put({ content: hostSecretValue(secrets, name, id) }, `${stage}/secrets/${name}`, {
      mode: 0o600,
    });
  }
  await remote.put({ content: step.script }, `${stage}/run.sh`, { mode: 0o700 });
  await remote.run(`bash ${stage}/run.sh`, {
    sudo: true,
    timeoutMs: 120_000,
    what: `${step.phase} step on ${step.node.name}`,
  });
}

const vipHolders = async () => (await labStatus()).hosts.filter((h) => h.vipHolder).map((h) => h.name);

describe.skipIf(lab.skip)("ops commands on the lab", () => {
  setDefaultTimeout(300_000);
  let spec: ClusterSpec;
  let secrets: ClusterSecrets;
  let steps: Step[];
  const remotes = new Map<string, Remote>();

  beforeAll(async () => {
    await labUp({ fresh: true });
    spec = loadSpec(labPaths.spec);
    secrets = ensureSecrets(spec);
    steps = renderCluster(spec, { caCertPem: secrets.caCert, caCertHash: caCertHash(secrets.caCert) });
    for (const n of spec.nodes) remotes.set(n.name, await connectNode(spec, n));
    const t0 = Date.now();
    // Files of every step in place; the load-balancer step really applied, one control plane at a time.
    for (const st of steps) await applyStep(remotes.get(st.node.name)!, st, secrets, st.phase === "loadbalancer");
    const vip = await waitFor(async () => (await vipHolders()).length === 1, 30_000, 200);
    if (!vip)
      throw new Error(
        `VIP ${LAB.vip} not on exactly one control plane after the load-balancer step: ${await vipHolders()}`,
      );
    times.push(`load-balancer step applied on 3 control planes, VIP held: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  });

  afterAll(async () => {
    for (const r of remotes.values()) r.close();
    rmSync(join(PROJECT_ROOT, ".kubeadm-ha", "lab.kubeconfig"), { force: true });
    if (times.length) process.stderr.write(`\nops lab timings:\n  ${times.join("\n  ")}\n`);
    await labDown();
  });

  /**
   * verify until it passes (haproxy checks and keepalived settle within seconds). Fails the test
   * unless verify ends with exit 0 and a report of passing rows: a crash (no JSON report) or a
   * run that never passes is not "healthy again".
   */
  async function expectHealthyAgain(): Promise<void> {
    let last: Awaited<ReturnType<typeof cli>> | undefined;
    await waitFor(
      async () => {
        last = await cli("verify", ["--json"]);
        return last.code === 0;
      },
      60_000,
      1000,
    );
    const seen = { code: last?.code, stderr: last?.stderr.slice(-2000) };
    expect(last?.report, `verify printed no JSON report: ${JSON.stringify(seen)}`).toBeDefined();
    expect(failing(last!.report)).toEqual([]);
    expect(last!.report!.ok).toBe(true);
    expect(last!.report!.rows.length).toBeGreaterThan(0);
    expect(seen.code).toBe(0);
  }

  test("verify passes on a healthy lab, every check listed", async () => {
    await expectHealthyAgain();
    const v = await cli("verify", ["--json"]);
    expect(v.code).toBe(0);
    const checks = v.report!.rows.map((r) => `${r.host} ${r.check}`);
    expect(checks).toContain("vip VIP on exactly one control plane");
    expect(checks).toContain("vip /healthz through the VIP");
    expect(checks).toContain("cluster etcd members");
    for (const cp of CPS) {
      expect(checks).toContain(`${cp} haproxy frontend :8443`);
      expect(checks).toContain(`${cp} haproxy backends UP`);
      expect(checks).toContain(`${cp} etcd member healthy`);
    }
    const backends = v.report!.rows.find((r) => r.host === "cp-1" && r.check === "haproxy backends UP")!;
    expect(backends.detail).toMatch(/cp-1 UP.*cp-2 UP.*cp-3 UP/);
    // The stats password is read on the host and never printed.
    expect(v.stdout.includes(secrets.statsPassword)).toBe(false);
    expect(v.stderr.includes(secrets.statsPassword)).toBe(false);
    times.push(`verify on a healthy lab: ${v.seconds.toFixed(1)} s`);
  });

  test("verify names a stopped haproxy", async () => {
    await sh("cp-2", "systemctl stop haproxy");
    try {
      const v = await cli("verify", ["--json"]);
      expect(v.code).toBe(1);
      const bad = failing(v.report).map((r) => `${r.host} ${r.check}`);
      expect(bad).toContain("cp-2 haproxy frontend :8443");
      expect(bad.every((b) => b.startsWith("cp-2 ") || b.startsWith("vip "))).toBe(true);
      const row = v.report!.rows.find((r) => r.host === "cp-2" && r.check === "haproxy frontend :8443")!;
      expect(row.detail).toContain("haproxy inactive");
      expect(row.fix).toContain("systemctl restart haproxy");
    } finally {
      await sh("cp-2", "systemctl start haproxy");
    }
    await expectHealthyAgain();
  });

  test("verify names a missing VIP", async () => {
    await Promise.all(CPS.map((h) => sh(h, "systemctl stop keepalived")));
    try {
      expect(await waitFor(async () => (await vipHolders()).length === 0, 15_000, 200)).toBe(true);
      const v = await cli("verify", ["--json"]);
      expect(v.code).toBe(1);
      const row = v.report!.rows.find((r) => r.check === "VIP on exactly one control plane")!;
      expect(row.status).toBe("fail");
      expect(row.detail).toContain("is on no control plane");
      expect(row.fix).toContain("keepalived");
      expect(v.report!.rows.find((r) => r.check === "/healthz through the VIP")!.status).toBe("fail");
    } finally {
      await Promise.all(CPS.map((h) => sh(h, "systemctl start keepalived")));
    }
    await expectHealthyAgain();
  });

  test("verify names an etcd member that is down", async () => {
    await sh("cp-3", "mv /etc/kubernetes/manifests/etcd.yaml /etc/kubernetes/etcd.yaml.stopped");
    try {
      const down = await waitFor(
        async () => (await labExec("cp-3", "ss -Hltn 'sport = :2379'")).stdout.trim() === "",
        30_000,
        250,
      );
      expect(down).toBe(true);
      // The state verify is asked about: every haproxy has taken cp-3's apiserver (unhealthy without
      // its etcd) out, and the other two are in. Until then a request through the VIP can still
      // reach cp-3 and fail, and while the survivors elect a leader (when cp-3 led) all three fail
      // their health checks: verify run at once reported that moment, not the state (one CI run).
      const settled = await waitFor(
        async () => {
          for (const cp of CPS) {
            const states = await backendStates(cp);
            if (states["cp-3"] !== "DOWN" || states["cp-1"] !== "UP" || states["cp-2"] !== "UP") return false;
          }
          return true;
        },
        30_000,
        250,
      );
      expect(settled).toBe(true);
      const v = await cli("verify", ["--json"]);
      const rows = JSON.stringify(failing(v.report));
      expect(v.code, rows).toBe(1);
      const member = v.report!.rows.find((r) => r.host === "cp-3" && r.check === "etcd member healthy")!;
      expect(member.status).toBe("fail");
      expect(member.fix).toContain("etcd");
      for (const cp of ["cp-1", "cp-2"]) {
        expect(v.report!.rows.find((r) => r.host === cp && r.check === "etcd member healthy")!.status, rows).toBe(
          "pass",
        );
      }
      // The survivors still have quorum: the API answers through the VIP.
      expect(v.report!.rows.find((r) => r.check === "/healthz through the VIP")!.status, rows).toBe("pass");
    } finally {
      await sh("cp-3", "mv /etc/kubernetes/etcd.yaml.stopped /etc/kubernetes/manifests/etcd.yaml");
    }
    await expectHealthyAgain();
  });

  test("drift: clean, then a hand edit and a deleted file are caught with their -replace addresses, clean after re-apply", async () => {
    const clean = await cli("drift", ["--json"]);
    expect(clean.stderr).not.toContain("error");
    expect(clean.code).toBe(0);
    expect(clean.report!.drift).toEqual([]);

    await sh("cp-1", "echo '# tuned by hand' >> /etc/haproxy/haproxy.cfg");
    await sh("cp-2", "rm /etc/keepalived/check_apiserver.sh");
    const d = await cli("drift", ["--json"]);
    expect(d.code).toBe(3);
    expect(d.report!.drift!.map((x) => `${x.host} ${x.path} ${x.kind}`).sort()).toEqual([
      "cp-1 /etc/haproxy/haproxy.cfg changed",
      "cp-2 /etc/keepalived/check_apiserver.sh missing",
    ]);
    expect(d.report!.replace).toEqual(["terraform_data.loadbalancer_cp_1", "terraform_data.loadbalancer_cp_2"]);
    const text = await cli("drift");
    expect(text.code).toBe(3);
    expect(text.stdout).toContain("-replace=terraform_data.loadbalancer_cp_1");
    const dry = await cli("drift", ["--fix", "--dry-run"]);
    // Without a synthesized stack --fix is bad input (2); with one it prints the apply (drift found: 3),
    // which terraform confirms itself (no --yes: no -auto-approve).
    if (dry.code === 2) expect(dry.stderr).toContain("bun run synth");
    else {
      expect(dry.code).toBe(3);
      expect(dry.stderr).toMatch(
        /terraform apply -replace=terraform_data.loadbalancer_cp_1 -replace=terraform_data.loadbalancer_cp_2/,
      );
    }

    // What `terraform apply -replace` does: run the two load-balancer steps again.
    for (const addr of d.report!.replace!) {
      const st = steps.find((s) => `terraform_data.${s.phase}_${s.node.name.replace(/-/g, "_")}` === addr)!;
      await applyStep(remotes.get(st.node.name)!, st, secrets, true);
    }
    const after = await cli("drift", ["--json"]);
    expect(after.code).toBe(0);
    expect(after.report!.drift).toEqual([]);
    times.push(`drift over 4 hosts: ${after.seconds.toFixed(1)} s`);
  });

  test("etcd backup timer on real systemd: a schedule installs it, drift names it once the spec drops the schedule, the removal step deletes it", async () => {
    const cp1 = spec.nodes.find((n) => n.name === "cp-1")!;
    const scheduled = structuredClone(spec);
    scheduled.etcd.backup.schedule = "*-*-* 03:00:00";
    expect(spec.etcd.backup.schedule).toBe("");
    const state = async () =>
      (
        await labExec(
          "cp-1",
          `systemctl is-enabled ${BACKUP_UNIT}.timer 2>&1; systemctl is-active ${BACKUP_UNIT}.timer; ls ${BACKUP_TIMER_PATHS.join(" ")} 2>/dev/null; true`,
        )
      ).stdout.trim();
    await applyStep(remotes.get("cp-1")!, etcdBackupTimerStep(scheduled, cp1), secrets, true);
    expect(await state()).toBe(["enabled", "active", ...[...BACKUP_TIMER_PATHS].sort()].join("\n"));

    // The lab spec has no schedule: what the earlier "deploy" left is drift, fixed by the timer step.
    const d = await cli("drift", ["--json"]);
    expect(d.code).toBe(3);
    expect(d.report!.drift!.map((x) => `${x.host} ${x.path} ${x.kind}`).sort()).toEqual(
      BACKUP_TIMER_PATHS.map((p) => `cp-1 ${p} unwanted`).sort(),
    );
    expect(d.report!.replace).toEqual(["terraform_data.etcd_backup_timer_cp_1"]);

    const removal = steps.find((st) => st.phase === "etcd-backup-timer" && st.node.name === "cp-1")!;
    await applyStep(remotes.get("cp-1")!, removal, secrets, true);
    const after = await state();
    expect(after).not.toContain("enabled");
    expect(after.split("\n").at(-1)).toBe("inactive");
    expect((await labExec("cp-1", "systemctl list-timers --all --no-legend")).stdout).not.toContain(BACKUP_UNIT);
    const clean = await cli("drift", ["--json"]);
    expect(clean.code).toBe(0);
    // Running it again is a no-op.
    await applyStep(remotes.get("cp-1")!, removal, secrets, true);
  });

  test("preflight names a port held by a foreign listener and leaves no listener of its own", async () => {
    // perl-base is on every Debian host (the Debian 13 lab root has no python3).
    await sh(
      "cp-2",
      "systemd-run --unit=kha-squatter perl -MIO::Socket::INET -e 'my $s = IO::Socket::INET->new(LocalPort => 10259, Listen => 5, ReuseAddr => 1) or die $!; sleep 600' >/dev/null 2>&1",
    );
    try {
      expect(
        await waitFor(
          async () => (await labExec("cp-2", "ss -Hltn 'sport = :10259'")).stdout.trim() !== "",
          10_000,
          100,
        ),
      ).toBe(true);
      const p = await cli("preflight", ["--json"]);
      expect(p.code).toBe(1);
      const row = p.report!.rows.find((r) => r.host === "cp-2" && r.check === "port 10259 free")!;
      expect(row.status).toBe("fail");
      expect(row.detail).toMatch(/in use by perl \(pid \d+\)/);
      expect(row.fix).toContain("sport = :10259");
      // An already-built lab: our own daemons are info, not failures.
      for (const [port, who] of [
        [6443, "kube-apiserver"],
        [2379, "etcd"],
        [8443, "haproxy"],
      ] as const) {
        const r = p.report!.rows.find((x) => x.host === "cp-1" && x.check === `port ${port} free`)!;
        expect([port, r.status]).toEqual([port, "info"]);
        expect(r.detail).toContain(who);
      }
      // Reachability was tested between the hosts (free kubelet port through a test listener, etcd through etcd).
      expect(p.report!.rows.find((r) => r.host === "worker-1" && r.check === "port 10250 reachable")!.status).toBe(
        "pass",
      );
      expect(p.report!.rows.find((r) => r.host === "cp-1" && r.check === "port 2380 reachable")!.status).toBe("pass");
      for (const h of [...CPS, "worker-1"]) {
        const left = await labExec(h, "ss -Hltnp 'sport = :10250'; pgrep -af '[K]HA_T' || true");
        expect([h, left.stdout.trim()]).toEqual([h, ""]);
      }
      times.push(`preflight over 4 hosts: ${p.seconds.toFixed(1)} s`);
    } finally {
      await labExec("cp-2", "systemctl stop kha-squatter");
    }
  });

  test("kubeconfig comes from the first control plane that has admin.conf, points at the VIP, 0600", async () => {
    const conf =
      "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: QUJD\n    server: https://198.18.0.12:6443\n  name: kubernetes\ncontexts: []\nkind: Config\nusers:\n- name: kubernetes-admin\n  user:\n    client-key-data: bGFiLWtleQ==\n";
    await sh("cp-1", "rm -f /etc/kubernetes/admin.conf");
    await labExec("cp-2", `install -m 0600 /dev/stdin /etc/kubernetes/admin.conf`, { input: conf });
    const out = join(PROJECT_ROOT, ".kubeadm-ha", "lab.kubeconfig");
    rmSync(out, { force: true });
    const k = await cli("kubeconfig", ["--out", out]);
    expect(k.code).toBe(0);
    expect(k.stdout.trim()).toBe(out);
    const j = await cli("kubeconfig", ["--out", out, "--json"]);
    expect(JSON.parse(j.stdout)).toEqual({
      ok: true,
      command: "kubeconfig",
      data: { file: out, outcome: "unchanged", from: "cp-2", server: `https://${LAB.vip}:${LAB.port}` },
      error: null,
    });
    expect(k.stderr).toContain("from cp-2");
    expect(k.stdout + k.stderr).not.toContain("bGFiLWtleQ==");
    expect(readFileSync(out, "utf8")).toContain(`server: https://${LAB.vip}:${LAB.port}\n`);
    expect(statSync(out).mode & 0o777).toBe(0o600);
    await labExec("cp-2", `echo '# rotated' >> /etc/kubernetes/admin.conf`);
    const again = await cli("kubeconfig", ["--out", out]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain("--force");
    const json = await cli("kubeconfig", ["--out", out, "--json"]);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: false, data: null, error: { code: 2 } });
  });
});
