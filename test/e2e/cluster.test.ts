// End to end on the lab: terraform apply of the builtin stack runs every phase
// for real (prepare, keepalived + haproxy, init/joins against the recording
// kubeadm stand-in), then idempotency, a rolling haproxy change with zero failed
// requests, and what the stand-in saw (endpoint, upload-certs, CA pin, join order).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { healthzStatus } from "../../lib/ops/chaos.ts";
import { ensureSecrets } from "../../lib/secrets.ts";
import { LAB, labDown, labExec, labOs, labPaths, labSetClock, labStatus, requireLab } from "../lab/lab.ts";
import { applyLab, creationOrder, E2E_DIR, labSpec, stepSeconds, synthLab, terraform } from "./apply.ts";
import { outage, startPoller } from "./poller.ts";

const guard = requireLab();
const VIP = "198.18.0.10";
const PORT = 8443;

let apply: Awaited<ReturnType<typeof terraform>>;

const curlOnHost = async (host: string, args: string) =>
  (await labExec(host, `curl -s -o /dev/null -w '%{http_code}' --max-time 2 ${args}`)).stdout.trim();

describe.skipIf(guard.skip)("end to end: terraform apply on the lab", () => {
  beforeAll(async () => {
    apply = await applyLab({ log: !!process.env.KHA_E2E_VERBOSE });
    process.stderr.write(`e2e on ${labOs()} hosts\n`);
  }, 900_000);
  afterAll(async () => {
    if (!process.env.KHA_KEEP_LAB) await labDown();
  }, 300_000);

  test("apply ran every step; parallel phases ran in parallel (wall time < sum of steps)", () => {
    const seconds = stepSeconds(apply.out);
    const steps = Object.keys(seconds).filter((k) => k.startsWith("terraform_data."));
    expect(steps.length).toBeGreaterThanOrEqual(4 + 3 + 1 + 1 + 1 + 3);
    const sum = Object.values(seconds).reduce((a, b) => a + b, 0);
    process.stderr.write(`e2e apply: wall ${apply.seconds.toFixed(1)} s, sum of steps ${sum} s\n`);
    expect(apply.seconds).toBeLessThan(sum);
  });

  test("the VIP is on exactly one control plane and /healthz answers through haproxy", async () => {
    const status = await labStatus();
    const holders = status.hosts.filter((h) => h.vipHolder);
    expect(holders.length).toBe(1);
    expect(holders[0]!.name).toStartWith("cp-");
    expect(await healthzStatus(VIP, PORT, 3000)).toBe(200);
  });

  test("the stats page needs its password", async () => {
    const secrets = ensureSecrets(labSpec());
    expect(await curlOnHost("cp-1", "http://127.0.0.1:8404/stats")).toBe("401");
    expect(await curlOnHost("cp-1", `-u admin:wrong http://127.0.0.1:8404/stats`)).toBe("401");
    expect(await curlOnHost("cp-1", `-u 'admin:${secrets.statsPassword}' http://127.0.0.1:8404/stats`)).toBe("200");
  });

  test("kubeadm saw the VIP endpoint, a pinned CA, certificates uploaded per control-plane join, joins one at a time", async () => {
    const init = (await labExec("cp-1", "cat /var/log/kubeadm-standin.log")).stdout;
    expect(init).toMatch(/kubeadm init --config \S+ --skip-token-print/);
    expect(init).toContain(`controlPlaneEndpoint: ${VIP}:${PORT}`);
    // The pod network came from the pinned file on cp-1 (nothing is downloaded in the lab).
    expect(init).toMatch(/ kubectl .*apply --server-side --force-conflicts -f \/etc\/kha-lab\/cni\/calico\.yaml/);
    // one token per join (3) and one certificate upload per control-plane join (2), all on cp-1
    expect(init.match(/ kubeadm token create --config /g)?.length).toBe(3);
    expect(init.match(/ kubeadm init phase upload-certs --upload-certs --config /g)?.length).toBe(2);
    const joinTimes: Record<string, string> = {};
    for (const host of ["cp-2", "cp-3", "worker-1"]) {
      const log = (await labExec(host, "cat /var/log/kubeadm-standin.log")).stdout;
      const line = log.split("\n").find((l) => / kubeadm join /.test(l));
      expect(line).toBeDefined();
      joinTimes[host] = line!.split(" ")[0]!;
      expect(log).toMatch(/caCertHashes:\s*\n\s*- "?sha256:[0-9a-f]{64}/);
      expect(log).not.toContain("unsafeSkipCAVerification: true");
    }
    // terraform's own order: cp-3's join starts only after cp-2's completed, workers after cp-3.
    const order = creationOrder(apply.out);
    const completed = (id: string) => apply.out.indexOf(`${id}: Creation complete`);
    expect(order.indexOf("terraform_data.join_cp_3")).toBeGreaterThan(-1);
    expect(apply.out.indexOf("terraform_data.join_cp_3: Creating...")).toBeGreaterThan(
      completed("terraform_data.join_cp_2"),
    );
    expect(apply.out.indexOf("terraform_data.join_worker_1: Creating...")).toBeGreaterThan(
      completed("terraform_data.join_cp_3"),
    );
  });

  test("secrets on hosts are 0600 root files; no secret in the apply output", async () => {
    const secrets = ensureSecrets(labSpec());
    const modes = (await labExec("cp-1", "stat -c '%a %U %n' /etc/kubeadm-ha/secrets /etc/kubeadm-ha/secrets/*"))
      .stdout;
    expect(modes).toContain("700 root /etc/kubeadm-ha/secrets");
    for (const line of modes.trim().split("\n").slice(1)) expect(line).toStartWith("600 root ");
    for (const v of [secrets.vrrpPassword, secrets.statsPassword, secrets.joinSeed]) {
      expect(apply.out.includes(v)).toBe(false);
    }
  });

  test(`every phase ran as the spec's sudo user (${LAB.user}) through sudo -n; nothing logged in as root`, async () => {
    expect(labSpec().ssh.user).toBe(LAB.user);
    for (const host of ["cp-1", "cp-2", "cp-3", "worker-1"]) {
      const journal = (await labExec(host, "journalctl --no-pager -o cat _COMM=sudo _COMM=sshd _COMM=sshd-session"))
        .stdout;
      // sudo logs each command: "kha : PWD=... ; USER=root ; COMMAND=/usr/bin/bash /tmp/.../run.sh".
      expect(journal).toMatch(new RegExp(`${LAB.user} : .*USER=root ; COMMAND=\\S*bash \\S+/run\\.sh`));
      expect(journal).toContain(`Accepted publickey for ${LAB.user} `);
      expect(journal).not.toContain("Accepted publickey for root ");
    }
  });

  test("a second apply plans no changes", async () => {
    const plan = await terraform(["plan", "-input=false", "-detailed-exitcode"]);
    expect(plan.out).toContain("No changes.");
    expect(plan.code).toBe(0);
  });

  test("drift: a hand edit and a deleted file are caught with their -replace addresses; --fix puts them back", async () => {
    const drift = (args: string[]) => {
      const r = Bun.spawnSync(["node_modules/.bin/bun", "scripts/drift.ts", "--spec", labPaths.spec, ...args], {
        env: { ...process.env, CDKTF_OUTDIR: E2E_DIR, KUBEADM_HA_SECRETS_DIR: labPaths.secretsDir },
        stdout: "pipe",
        stderr: "pipe",
      });
      return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
    };
    expect(drift(["--json"]).code).toBe(0);
    await labExec("cp-2", "echo '# edited by hand' >> /etc/haproxy/haproxy.cfg");
    await labExec("worker-1", "rm -f /etc/sysctl.d/99-kubeadm-ha.conf");
    const found = drift(["--json"]);
    expect(found.code).toBe(3);
    for (const s of ["cp-2", "/etc/haproxy/haproxy.cfg", "worker-1", "/etc/sysctl.d/99-kubeadm-ha.conf"])
      expect(found.out).toContain(s);
    expect(found.out).toContain("terraform_data.loadbalancer_cp_2");
    expect(found.out).toContain("terraform_data.prepare_worker_1");
    expect(found.out).not.toContain("terraform_data.loadbalancer_cp_1");

    const poller = startPoller(VIP, PORT);
    const fix = drift(["--fix", "--yes"]);
    const samples = await poller.stop();
    expect(fix.code).toBe(0);
    expect(outage(samples, 0).failed).toBe(0);
    expect(drift(["--json"]).code).toBe(0);
    expect((await labExec("cp-2", "grep -c 'edited by hand' /etc/haproxy/haproxy.cfg || true")).stdout.trim()).toBe(
      "0",
    );
  }, 300_000);

  test("a haproxy change re-runs only the load-balancer steps, one host at a time, with zero failed requests", async () => {
    synthLab((spec) => {
      spec.loadBalancer.haproxy.timeouts.client = "2h";
    });
    const plan = await terraform(["plan", "-input=false", "-detailed-exitcode"]);
    expect(plan.code).toBe(2);
    expect(plan.out).toContain("Plan: 3 to add, 0 to change, 3 to destroy");
    for (const id of ["loadbalancer_cp_1", "loadbalancer_cp_2", "loadbalancer_cp_3"])
      expect(plan.out).toContain(`terraform_data.${id} must be replaced`);

    const poller = startPoller(VIP, PORT);
    const rolling = await terraform(["apply", "-input=false", "-auto-approve"]);
    const samples = await poller.stop();
    expect(rolling.code).toBe(0);
    const o = outage(samples, 0);
    process.stderr.write(
      `rolling haproxy change: ${o.failed} failed of ${o.total} requests (${rolling.seconds.toFixed(1)} s)\n`,
    );
    expect(o.total).toBeGreaterThan(20);
    expect(o.failed).toBe(0);
    // one at a time: each load balancer starts after the previous one completed
    const out = rolling.out;
    const done = (n: number) => out.indexOf(`terraform_data.loadbalancer_cp_${n}: Creation complete`);
    const start = (n: number) => out.indexOf(`terraform_data.loadbalancer_cp_${n}: Creating...`);
    expect(start(2)).toBeGreaterThan(done(1));
    expect(start(3)).toBeGreaterThan(done(2));
    const cfg = (await labExec("cp-3", "grep -c 'timeout client 2h' /etc/haproxy/haproxy.cfg")).stdout.trim();
    expect(cfg).toBe("1");
  }, 300_000);

  test("join secrets do not outlive the joins: no token left in the cluster, none on any host", async () => {
    const tokens = (await labExec("cp-1", "kubeadm token list --kubeconfig /etc/kubernetes/admin.conf")).stdout;
    expect(tokens.trim().split("\n")).toHaveLength(1); // the header only: init's and every join's token deleted
    for (const host of ["cp-1", "cp-2", "cp-3", "worker-1"]) {
      const left = (
        await labExec(host, "ls /etc/kubeadm-ha/secrets 2>/dev/null; ls -d /tmp/kubeadm-ha-stage.* 2>/dev/null || true")
      ).stdout;
      expect(left.split("\n").filter(Boolean).sort()).toEqual(
        host.startsWith("cp-") ? ["stats-password", "vrrp-password"] : [],
      );
    }
  });

  test("after a reboot keepalived still tracks haproxy's state file (its directory is made at boot)", async () => {
    // What a boot does on cp-3: /run is empty, systemd-tmpfiles creates what tmpfiles.d asks
    // for, then keepalived starts (haproxy may start after it).
    const host = "cp-3";
    await labExec(host, "systemctl stop keepalived haproxy; rm -rf /run/kubeadm-ha /tmp/keepalived.data");
    await labExec(host, "systemd-tmpfiles --create --boot");
    // --boot also creates /run/nologin ("System is booting up"), which systemd-user-sessions removes
    // once a real boot has finished; without that the sudo user could not log in again.
    await labExec(host, "rm -f /run/nologin");
    await labExec(host, "systemctl start keepalived");
    const dump = await labExec(
      host,
      "sleep 1; kill -USR1 $(pidof keepalived | tr ' ' '\\n' | sort -n | head -1); sleep 1; cat /tmp/keepalived.data",
    );
    await labExec(host, "systemctl start haproxy");
    expect(dump.stdout).toContain("haproxy_state");
    expect(dump.stdout).toContain("/run/kubeadm-ha/haproxy.state");
    expect(await healthzStatus(VIP, PORT, 3000)).toBe(200);
  }, 60_000);

  test("a worker added to the spec hours after init joins on the next apply, with a fresh token", async () => {
    // worker-1 leaves the spec (its host reset), the cluster ages 3 hours (tokens made at init
    // and certificate uploads are long expired), then worker-1 is added again: a new node.
    await labExec("worker-1", "kubeadm reset -f >/dev/null");
    synthLab((spec) => {
      spec.nodes = spec.nodes.filter((n) => n.name !== "worker-1");
    });
    const verbose = { log: !!process.env.KHA_E2E_VERBOSE };
    const removed = await terraform(["apply", "-input=false", "-auto-approve"], verbose);
    expect(removed.code).toBe(0);
    await labSetClock(3 * 3600);
    try {
      synthLab();
      const added = await terraform(["apply", "-input=false", "-auto-approve"], verbose);
      if (added.code !== 0) process.stderr.write(added.out.slice(-4000));
      expect(added.code).toBe(0);
      expect(added.out).toContain("terraform_data.join_worker_1: Creation complete");
      expect((await labExec("worker-1", "test -s /etc/kubernetes/kubelet.conf && echo joined")).stdout.trim()).toBe(
        "joined",
      );

      // A control-plane join retried hours later (its host reset, the step replaced) gets fresh
      // certificates too: kubeadm deletes an upload two hours after it was made.
      await labSetClock(6 * 3600);
      await labExec("cp-3", "kubeadm reset -f >/dev/null");
      const retried = await terraform(
        ["apply", "-input=false", "-auto-approve", "-replace=terraform_data.join_cp_3"],
        verbose,
      );
      if (retried.code !== 0) process.stderr.write(retried.out.slice(-4000));
      expect(retried.code).toBe(0);
      expect((await labExec("cp-3", "test -s /etc/kubernetes/admin.conf && echo joined")).stdout.trim()).toBe("joined");
      const tokens = (await labExec("cp-1", "kubeadm token list --kubeconfig /etc/kubernetes/admin.conf")).stdout;
      expect(tokens.trim().split("\n")).toHaveLength(1);
    } finally {
      await labSetClock(0);
    }
    const plan = await terraform(["plan", "-input=false", "-detailed-exitcode"]);
    expect(plan.code).toBe(0);
  }, 600_000);
});
