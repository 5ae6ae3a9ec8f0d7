// The lab itself, tested on real hosts (root): hosts, SSH trust, etcd, the stand-ins,
// isolation, and a teardown that leaves nothing behind, also after a crash.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { parseSpec } from "../../lib/spec/load.ts";
import { LAB_OS_VERSIONS, labOsFromEnv } from "./debian-root.ts";
import {
  LAB,
  labDown,
  labEtcdctl,
  labExec,
  labHolder,
  labLeftovers,
  labNspawnPids,
  labPaths,
  labSetClock,
  labStatus,
  labUp,
  linkDown,
  linkUp,
  PROJECT_ROOT,
  requireLab,
  sshArgv,
} from "./lab.ts";
import { run, waitFor } from "./sys.ts";

const lab = requireLab();
const BUN = `${PROJECT_ROOT}/node_modules/.bin/bun`;
const CPS = ["cp-1", "cp-2", "cp-3"];
const HOSTS = [...CPS, "worker-1"];
const ADDR: Record<string, string> = {
  "cp-1": "198.18.0.11",
  "cp-2": "198.18.0.12",
  "cp-3": "198.18.0.13",
  "worker-1": "198.18.0.21",
};
const times: string[] = [];

/** As root: these tests drive the stand-ins directly (the lab spec's own user is checked below). */
const ssh = (host: string, cmd: string) => run(sshArgv(host, cmd, { user: "root" }), { timeoutMs: 15_000 });
const sh = async (host: string, cmd: string) => {
  const r = await labExec(host, cmd, { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`${host}: \`${cmd}\` exited ${r.code}: ${r.stderr}`);
  return r.stdout.trim();
};

/** Status code of GET /healthz on a control plane's apiserver stand-in, its TLS verified against the lab CA. */
async function healthz(address: string): Promise<number> {
  try {
    const res = await fetch(`https://${address}:6443/healthz`, {
      tls: { ca: Bun.file(`${labPaths.runtimeDir}/pki/kubernetes-ca.crt`) },
      signal: AbortSignal.timeout(5000),
    } as RequestInit);
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

/** Processes on this machine that belong to a lab host (by their command line). */
async function labProcesses(): Promise<string> {
  const r = await run([
    "pgrep",
    "-a",
    "-f",
    "kubelet-standin|apiserver-standin|198\\.18\\.0\\.1[0-9]:2380|systemd-nspawn .*kha-",
  ]);
  return r.stdout.trim();
}

describe.skipIf(lab.skip)("lab (real hosts)", () => {
  beforeAll(async () => {
    // A fresh lab: another test file may have left one up with its own changes. This waits
    // while another process holds the lab.
    const r = await labUp({ fresh: true });
    times.push(`up: ${r.seconds.toFixed(1)} s (SSH on every host at ${r.sshReadySeconds.toFixed(1)} s)`);
    const again = await labUp();
    expect(again.alreadyUp).toBe(true);
    times.push(`second up (idempotent): ${again.seconds.toFixed(1)} s`);
  }, 20 * 60_000);

  afterAll(async () => {
    const r = await labDown();
    times.push(`final down: ${r.seconds.toFixed(1)} s`);
    process.stderr.write(`\nlab timings:\n  ${times.join("\n  ")}\n`);
  }, 120_000);

  test("four hosts answer SSH with the written known_hosts, each with its own hostname and host key", async () => {
    const known = readFileSync(labPaths.knownHosts, "utf8").trim().split("\n");
    expect(known).toHaveLength(4);
    expect(new Set(known.map((l) => l.split(" ")[2])).size).toBe(4);
    expect(statSync(labPaths.key).mode & 0o777).toBe(0o600);
    for (const host of HOSTS) {
      const r = await ssh(host, "hostname; cat /etc/machine-id");
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout.split("\n")[0]).toBe(host);
      // The key the host presents is the one written for its address.
      const line = known.find((l) => l.startsWith(`${ADDR[host]} `))!;
      expect(await sh(host, "cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub")).toBe(
        line.split(" ").slice(1).join(" "),
      );
    }
    const ids = await Promise.all(HOSTS.map((h) => sh(h, "cat /etc/machine-id")));
    expect(new Set(ids).size).toBe(4);

    // Verification is real: cp-1's address paired with cp-2's key must be refused.
    const dir = mkdtempSync(`${tmpdir()}/kha-kh-`);
    try {
      const wrong = `${ADDR["cp-1"]} ${known
        .find((l) => l.startsWith(`${ADDR["cp-2"]} `))!
        .split(" ")
        .slice(1)
        .join(" ")}\n`;
      writeFileSync(`${dir}/known_hosts`, wrong);
      const argv = sshArgv("cp-1", "true").map((a) =>
        a.startsWith("UserKnownHostsFile=") ? `UserKnownHostsFile=${dir}/known_hosts` : a,
      );
      const r = await run(argv, { timeoutMs: 15_000 });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
      // Password logins are off: only the lab key gets in.
      const pw = await run(
        [
          "ssh",
          "-F",
          "/dev/null",
          "-o",
          "BatchMode=yes",
          "-o",
          "PubkeyAuthentication=no",
          "-o",
          `UserKnownHostsFile=${labPaths.knownHosts}`,
          `root@${ADDR["cp-1"]}`,
          "true",
        ],
        { timeoutMs: 15_000 },
      );
      expect(pw.code).not.toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  test("the lab spec passes the project's validation", async () => {
    const text = readFileSync(labPaths.spec, "utf8");
    const spec = parseSpec(text, labPaths.spec);
    expect(spec.name).toBe("lab");
    expect(spec.nodes.map((n) => n.name)).toEqual(HOSTS);
    expect(spec.controlPlaneEndpoint).toMatchObject({ vip: "198.18.0.10", port: 8443, interface: "eth0", prefix: 24 });
    expect(spec.ssh).toMatchObject({ user: LAB.user, privateKeyPath: "id_ed25519", knownHostsPath: "known_hosts" });
    const r = await run([BUN, "scripts/validate.ts", "--spec", labPaths.spec], { cwd: PROJECT_ROOT });
    expect(`${r.stdout}${r.stderr}`).toContain("ok");
    expect(r.code).toBe(0);
    // The way the lab tells users to target it: eval "$(bun run lab env)", then any command.
    const viaEnv = await run(["sh", "-c", `eval "$('${BUN}' run lab env)" && '${BUN}' scripts/validate.ts --json`], {
      cwd: PROJECT_ROOT,
    });
    expect(viaEnv.code).toBe(0);
    expect(JSON.parse(viaEnv.stdout).data).toMatchObject({ file: labPaths.spec, valid: true });
  }, 60_000);

  test("the spec's SSH user is not root, logs in with the lab key and runs anything with sudo -n", async () => {
    for (const host of HOSTS) {
      const r = await run(
        sshArgv(host, "id -un; id -u; sudo -n id -u; cat /etc/shadow >/dev/null 2>&1 || echo unprivileged"),
        {
          timeoutMs: 15_000,
        },
      );
      expect(r.stderr).toBe("");
      const [name, uid, sudoUid, shadow] = r.stdout.split("\n");
      expect(name).toBe(LAB.user);
      expect(uid).not.toBe("0");
      expect(sudoUid).toBe("0");
      expect(shadow).toBe("unprivileged");
    }
  }, 60_000);

  test(`hosts run ${labOsFromEnv()}'s own haproxy, keepalived and etcd (etcdutl from 3.5)`, async () => {
    const want = LAB_OS_VERSIONS[labOsFromEnv()];
    const out = await sh(
      "cp-1",
      "haproxy -v | head -1; keepalived -v 2>&1 | head -1; etcd --version | head -1; command -v etcdutl || echo none",
    );
    const [haproxy, keepalived, etcd, etcdutl] = out.split("\n");
    expect(haproxy).toMatch(new RegExp(`version ${want.haproxy.replace(".", "\\.")}\\.`));
    expect(keepalived).toMatch(new RegExp(`v${want.keepalived.replace(".", "\\.")}\\.`));
    expect(etcd).toMatch(new RegExp(`Version: ${want.etcd.replace(".", "\\.")}\\.`));
    expect(etcdutl !== "none").toBe(want.etcdutl);
  }, 60_000);

  test("etcd runs three healthy members over TLS from kubeadm-shaped static pods", async () => {
    const list = await labEtcdctl(["member", "list", "-w", "json"]);
    expect(list.code).toBe(0);
    const members = (JSON.parse(list.stdout) as { members: { name: string; clientURLs: string[] }[] }).members;
    expect(members.map((m) => m.name).sort()).toEqual(CPS);
    expect(members.every((m) => m.clientURLs.every((u) => u.startsWith("https://")))).toBe(true);
    const health = await labEtcdctl(["endpoint", "health", "-w", "json"]);
    expect(health.code).toBe(0);
    expect((JSON.parse(health.stdout) as { health: boolean }[]).filter((h) => h.health)).toHaveLength(3);

    // Client certificates are required.
    const anon = await run(["curl", "-sk", "--max-time", "5", `https://${ADDR["cp-1"]}:2379/health`]);
    expect(anon.stdout).not.toContain('"health":"true"');

    // kubeadm's paths and SANs, and the manifest shape the etcd toolkit patches.
    const sans = await sh("cp-2", "openssl x509 -noout -ext subjectAltName -in /etc/kubernetes/pki/etcd/server.crt");
    for (const san of ["IP Address:198.18.0.12", "IP Address:127.0.0.1", "DNS:localhost"]) expect(sans).toContain(san);
    await sh(
      "cp-2",
      "for f in etcd/ca etcd/server etcd/peer etcd/healthcheck-client apiserver-etcd-client; do test -s /etc/kubernetes/pki/$f.crt && test -s /etc/kubernetes/pki/$f.key; done",
    );
    const manifest = await sh("cp-2", "cat /etc/kubernetes/manifests/etcd.yaml");
    for (const s of [
      "kind: Pod",
      "namespace: kube-system",
      "--data-dir=/var/lib/etcd",
      "--initial-cluster-state=new",
      "name: etcd-data",
      "path: /var/lib/etcd",
      "name: etcd-certs",
    ]) {
      expect(manifest).toContain(s);
    }
    // From inside a host, with kubeadm's healthcheck client certificate.
    const inside = await sh(
      "cp-3",
      "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt --key=/etc/kubernetes/pki/etcd/healthcheck-client.key endpoint health 2>&1",
    );
    expect(inside).toContain("is healthy");
  }, 60_000);

  test("the apiserver stand-in answers 200 while etcd has quorum, 500 on the survivor without it, 200 again after", async () => {
    for (const cp of CPS) expect(await healthz(ADDR[cp]!)).toBe(200);
    const sans = await sh("cp-1", "openssl x509 -noout -ext subjectAltName -in /etc/kubernetes/pki/apiserver.crt");
    for (const san of ["IP Address:198.18.0.11", `IP Address:${LAB.vip}`, "IP Address:127.0.0.1"])
      expect(sans).toContain(san);

    const t0 = Date.now();
    await Promise.all(
      ["cp-2", "cp-3"].map((h) => sh(h, "mv /etc/kubernetes/manifests/etcd.yaml /etc/kubernetes/etcd.yaml.stopped")),
    );
    const stopped = await waitFor(
      async () =>
        (await Promise.all(["cp-2", "cp-3"].map((h) => labExec(h, "pgrep -x etcd")))).every((r) => r.code === 1),
      15_000,
      200,
    );
    expect(stopped).toBe(true);
    const stopS = (Date.now() - t0) / 1000;
    const lost = await waitFor(async () => (await healthz(ADDR["cp-1"]!)) === 500, 15_000, 250);
    expect(lost).toBe(true);
    const lostS = (Date.now() - t0) / 1000;

    const t1 = Date.now();
    await Promise.all(
      ["cp-2", "cp-3"].map((h) => sh(h, "mv /etc/kubernetes/etcd.yaml.stopped /etc/kubernetes/manifests/etcd.yaml")),
    );
    const back = await waitFor(
      async () => (await Promise.all(CPS.map((cp) => healthz(ADDR[cp]!)))).every((s) => s === 200),
      30_000,
      250,
    );
    expect(back).toBe(true);
    times.push(
      `two etcd members stopped by moving manifests: ${stopS.toFixed(1)} s; survivor /healthz 500 at ${lostS.toFixed(1)} s; all 200 again ${((Date.now() - t1) / 1000).toFixed(1)} s after moving them back`,
    );
    expect((await labEtcdctl(["endpoint", "health"])).code).toBe(0);
  }, 90_000);

  // The contract the etcd toolkit relies on: moving etcd.yaml away stops etcd; a manifest whose
  // --data-dir and etcd-data hostPath point at a restored data dir starts etcd there.
  test("a full three-member restore works through the manifests, as the etcd toolkit does it", async () => {
    const t0 = Date.now();
    const certs =
      "--cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt --key=/etc/kubernetes/pki/etcd/healthcheck-client.key";
    const local = `ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 ${certs}`;
    expect((await labEtcdctl(["put", "lab/before", "1"])).code).toBe(0);
    await sh("cp-1", `${local} snapshot save /root/snap.db >/dev/null 2>&1`);
    const merged = (h: string) => `${labPaths.runtimeDir}/hosts/${h}/merged`;
    for (const h of ["cp-2", "cp-3"])
      writeFileSync(`${merged(h)}/root/snap.db`, readFileSync(`${merged("cp-1")}/root/snap.db`));
    expect((await labEtcdctl(["put", "lab/after", "2"])).code).toBe(0);

    await Promise.all(CPS.map((h) => sh(h, "mv /etc/kubernetes/manifests/etcd.yaml /etc/kubernetes/etcd.yaml")));
    const stopped = await waitFor(
      async () => (await Promise.all(CPS.map((h) => labExec(h, "pgrep -x etcd")))).every((r) => r.code === 1),
      20_000,
      200,
    );
    expect(stopped).toBe(true);
    const cluster = CPS.map((h) => `${h}=https://${ADDR[h]}:2380`).join(",");
    await Promise.all(
      CPS.map((h) =>
        sh(
          h,
          `ETCDCTL_API=3 etcdctl snapshot restore /root/snap.db --name ${h} --initial-cluster ${cluster} ` +
            `--initial-advertise-peer-urls https://${ADDR[h]}:2380 --data-dir /var/lib/etcd-restored >/dev/null 2>&1 && ` +
            "sed -i -e 's#--data-dir=/var/lib/etcd$#--data-dir=/var/lib/etcd-restored#' " +
            "-e 's#path: /var/lib/etcd$#path: /var/lib/etcd-restored#' " +
            // the mount too, as the toolkit patches it: else etcd would not see the restored dir in its container
            "-e 's#mountPath: /var/lib/etcd$#mountPath: /var/lib/etcd-restored#' /etc/kubernetes/etcd.yaml && " +
            "mv /etc/kubernetes/etcd.yaml /etc/kubernetes/manifests/etcd.yaml",
        ),
      ),
    );
    const healthy = await waitFor(async () => (await labEtcdctl(["endpoint", "health"])).code === 0, 30_000, 250);
    expect(healthy).toBe(true);
    expect(await sh("cp-2", "pgrep -a -x etcd")).toContain("--data-dir=/var/lib/etcd-restored");
    expect((await labEtcdctl(["get", "lab/before", "--print-value-only"])).stdout.trim()).toBe("1");
    expect((await labEtcdctl(["get", "lab/after", "--print-value-only"])).stdout.trim()).toBe("");
    times.push(`three-member restore through the manifests: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }, 90_000);

  test("the kubelet stand-in restarts a changed manifest, stops a removed one, and SIGKILLs one that ignores SIGTERM", async () => {
    const pod = (cmd: string[]) =>
      `apiVersion: v1\nkind: Pod\nmetadata:\n  name: marker\n  namespace: kube-system\nspec:\n  hostNetwork: true\n  containers:\n  - name: marker\n    command: ${JSON.stringify(cmd)}\n  volumes:\n  - name: d\n    hostPath:\n      path: /var/lib/kha-marker\n      type: DirectoryOrCreate\n`;
    const m = "/etc/kubernetes/manifests/marker.yaml";
    const running = async (pattern: string) => (await labExec("worker-1", `pgrep -f '${pattern}'`)).code === 0;
    try {
      await labExec("worker-1", `cat > ${m}`, { input: pod(["sleep", "1111"]) });
      expect(await waitFor(() => running("^sleep 1111"), 10_000, 100)).toBe(true);
      expect(await sh("worker-1", "test -d /var/lib/kha-marker && echo yes")).toBe("yes");
      await labExec("worker-1", `cat > ${m}.tmp && mv ${m}.tmp ${m}`, { input: pod(["sleep", "2222"]) });
      expect(
        await waitFor(async () => (await running("^sleep 2222")) && !(await running("^sleep 1111")), 15_000, 100),
      ).toBe(true);

      await labExec("worker-1", `cat > ${m}.tmp && mv ${m}.tmp ${m}`, {
        input: pod(["bash", "-c", "trap '' TERM; sleep 3333"]),
      });
      expect(await waitFor(() => running("^sleep 3333"), 15_000, 100)).toBe(true);
      const t0 = Date.now();
      await sh("worker-1", `mv ${m} /root/marker.yaml`);
      expect(await waitFor(async () => !(await running("^sleep 3333")), 20_000, 100)).toBe(true);
      const s = (Date.now() - t0) / 1000;
      times.push(`process ignoring SIGTERM stopped after ${s.toFixed(1)} s`);
      expect(s).toBeGreaterThan(9);
      expect(s).toBeLessThan(14);
    } finally {
      await labExec("worker-1", `rm -f ${m} ${m}.tmp`);
    }
  }, 60_000);

  test("kubeadm, kubectl and kubelet stand-ins record their calls and leave what a real run leaves", async () => {
    expect((await ssh("cp-1", "kubeadm version -o short")).stdout.trim()).toBe("v1.31.4");
    const v = JSON.parse((await ssh("cp-1", "kubectl version -o json")).stdout) as {
      serverVersion: { gitVersion: string };
    };
    expect(v.serverVersion.gitVersion).toBe("v1.31.4");
    expect((await ssh("worker-1", "kubelet --version")).stdout.trim()).toBe("Kubernetes v1.31.4");

    const cfg = `apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nbootstrapTokens:\n- token: abcdef.0123456789abcdef\n---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\ncontrolPlaneEndpoint: "${LAB.vip}:${LAB.port}"\n`;
    await labExec("cp-1", "cat > /root/kubeadm.yaml", { input: cfg });
    const init = await ssh("cp-1", "kubeadm init --config /root/kubeadm.yaml --upload-certs");
    expect(init.code).toBe(0);
    const join = /kubeadm join (\S+) --token (\S+) --discovery-token-ca-cert-hash (sha256:[0-9a-f]{64})/.exec(
      init.stdout,
    );
    expect(join?.[1]).toBe(`${LAB.vip}:${LAB.port}`);
    expect(await sh("cp-1", "test -s /etc/kubernetes/admin.conf && stat -c %a /var/log/kubeadm-standin.log")).toBe(
      "600",
    );
    expect(await sh("cp-1", "cat /var/log/kubeadm-standin.log")).toContain("token: abcdef.0123456789abcdef");
    expect((await ssh("cp-1", "kubeadm init --config /root/kubeadm.yaml")).code).not.toBe(0);
    // The log stays inside the host.
    expect(
      existsSync("/var/log/kubeadm-standin.log") &&
        readFileSync("/var/log/kubeadm-standin.log", "utf8").includes("abcdef.0123456789abcdef"),
    ).toBe(false);

    // A worker joins with the printed CA pin; a wrong pin is refused. No load balancer runs in
    // this lab, so joins go to cp-1's API server directly (kubeadm accepts any apiserver).
    const api = "198.18.0.11:6443";
    const pin = join![3];
    const bad = await ssh(
      "worker-1",
      `kubeadm join ${api} --token ${join![2]} --discovery-token-ca-cert-hash sha256:${"0".repeat(64)}`,
    );
    expect(bad.code).not.toBe(0);
    // Tokens are checked against the cluster, as kubeadm's discovery does: unknown, wrong, expired.
    const joinWith = (token: string) =>
      ssh("worker-1", `kubeadm join ${api} --token ${token} --discovery-token-ca-cert-hash ${pin}`);
    const unknown = await joinWith("zzzzzz.zzzzzzzzzzzzzzzz");
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toContain(
      'could not find a JWS signature in the cluster-info ConfigMap for token ID "zzzzzz"',
    );
    expect((await joinWith("abcdef.zzzzzzzzzzzzzzzz")).code).not.toBe(0);
    try {
      await labSetClock(25 * 3600); // the init token's default TTL is 24 h
      const expired = await joinWith(join![2]!);
      expect(expired.code).not.toBe(0);
      expect(expired.stderr).toContain("could not find a JWS signature");
    } finally {
      await labSetClock(0);
    }
    const ok = await joinWith(join![2]!);
    expect(ok.code).toBe(0);
    expect(await sh("worker-1", "test -s /etc/kubernetes/kubelet.conf && echo yes")).toBe("yes");

    // Through a kubeconfig that names cp-1's API server: tokens made and deleted in the cluster,
    // certificates uploaded with a key and refused to a control-plane join with another key.
    await labExec(
      "cp-1",
      `sed 's#server: https://.*#server: https://${api}#' /etc/kubernetes/admin.conf > /root/local.conf`,
    );
    const upload = await ssh("cp-1", "kubeadm init phase upload-certs --upload-certs --kubeconfig /root/local.conf");
    expect(upload.code).toBe(0);
    const key = /\n([0-9a-f]{64})\n/.exec(upload.stdout)?.[1];
    expect(key).toBeDefined();
    const created = await ssh("cp-1", "kubeadm token create --print-join-command --kubeconfig /root/local.conf");
    expect(created.stdout).toMatch(
      /^kubeadm join 198\.18\.0\.11:6443 --token [a-z0-9]{6}\.[a-z0-9]{16} --discovery-token-ca-cert-hash sha256:/,
    );
    const fresh = / --token (\S+) /.exec(created.stdout)![1]!;
    const cpJoin = (k: string) =>
      ssh(
        "cp-2",
        `kubeadm join ${api} --token ${fresh} --discovery-token-ca-cert-hash ${pin} --control-plane --certificate-key ${k}`,
      );
    const wrongKey = await cpJoin("f".repeat(64));
    expect(wrongKey.code).not.toBe(0);
    expect(wrongKey.stderr).toContain("error decoding secret data with provided key");
    try {
      await labSetClock(2 * 3600 + 60); // kubeadm deletes the certificates two hours after the upload
      const late = await cpJoin(key!);
      expect(late.code).not.toBe(0);
      expect(late.stderr).toContain('Secret "kubeadm-certs" was not found');
    } finally {
      await labSetClock(0);
    }
    expect((await ssh("cp-1", `kubeadm token delete ${fresh.split(".")[0]} --kubeconfig /root/local.conf`)).code).toBe(
      0,
    );
    expect((await ssh("cp-1", "kubeadm token list --kubeconfig /root/local.conf")).stdout).not.toContain(
      fresh.split(".")[0]!,
    );
    expect(
      (
        await ssh("cp-1", "systemctl restart containerd && systemctl is-active containerd kubelet kubelet-standin")
      ).stdout
        .trim()
        .split("\n"),
    ).toEqual(["active", "active", "active"]);
    await labExec("cp-1", "kubeadm reset -f >/dev/null; rm -f /root/kubeadm.yaml /root/local.conf");
    await labExec("worker-1", "kubeadm reset -f >/dev/null");
  }, 60_000);

  // As strict as kubeadm: a config with a misplaced field, a host without a binary kubeadm's
  // preflight needs for the version, swap the kubelet is not told to accept, a control-plane join
  // while an etcd member is down: each is refused, and nothing is left that a retry would trip on.
  test("the kubeadm stand-in refuses a misplaced field, a missing mandatory binary, swap and an unhealthy etcd member", async () => {
    const api = "198.18.0.11:6443";
    const fail = (r: { code: number | null }) => expect(r.code).not.toBe(0);
    const ok = (r: { code: number | null; stderr: string }) => {
      expect(r.stderr).not.toContain("error");
      expect(r.code).toBe(0);
    };
    const joined = async (host: string) => (await labExec(host, "test -e /etc/kubernetes/kubelet.conf")).code === 0;
    const swapOn = (host: string) =>
      sh(
        host,
        "printf 'Filename\\tType\\tSize\\tUsed\\tPriority\\n/swapfile file 1048572 0 -2\\n' > /root/swaps && mount --bind /root/swaps /proc/swaps && tail -n +2 /proc/swaps",
      );
    const swapOff = (host: string) => labExec(host, "umount /proc/swaps 2>/dev/null; rm -f /root/swaps");
    const hide = (host: string, bins: string[]) =>
      labExec(host, bins.map((b) => `p=$(command -v ${b}) && mv "$p" "$p.hidden"`).join("; "));
    const unhide = (host: string) =>
      labExec(
        host,
        'for f in /usr/sbin/*.hidden /usr/bin/*.hidden; do [ -e "$f" ] && mv "$f" "${f%.hidden}"; done; true',
      );
    const init = `apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nbootstrapTokens:\n- token: ghijkl.0123456789abcdef\n---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\ncontrolPlaneEndpoint: "${api}"\n`;
    try {
      // A misplaced field: refused by `kubeadm config validate` with kubeadm's message, and by init
      // before anything changes; flags next to --config too.
      await labExec("cp-1", "cat > /root/init.yaml", { input: init });
      expect((await ssh("cp-1", "kubeadm config validate --config /root/init.yaml")).stdout.trim()).toBe("ok");
      const misplaced = init.replace("bootstrapTokens:", `controlPlaneEndpoint: "${api}"\nbootstrapTokens:`);
      await labExec("cp-1", "cat > /root/bad.yaml", { input: misplaced });
      const validate = await ssh("cp-1", "kubeadm config validate --config /root/bad.yaml");
      fail(validate);
      expect(validate.stderr).toContain('strict decoding error: unknown field "controlPlaneEndpoint"');
      fail(await ssh("cp-1", "kubeadm init --config /root/bad.yaml"));
      expect(await sh("cp-1", "ls /etc/kubernetes/admin.conf 2>/dev/null || echo none")).toBe("none");
      const mixed = await ssh("cp-1", "kubeadm init --config /root/init.yaml --pod-network-cidr 10.244.0.0/16");
      fail(mixed);
      expect(mixed.stderr).toContain("can not mix '--config' with arguments [pod-network-cidr]");
      ok(await ssh("cp-1", "kubeadm init --config /root/init.yaml"));
      await labExec(
        "cp-1",
        `sed 's#server: https://.*#server: https://${api}#' /etc/kubernetes/admin.conf > /root/local.conf`,
      );
      const printed = (await ssh("cp-1", "kubeadm token create --print-join-command --kubeconfig /root/local.conf"))
        .stdout;
      const [, token, pin] = / --token (\S+) --discovery-token-ca-cert-hash (\S+)/.exec(printed)!;
      const workerJoin = (extra = "") =>
        ssh("worker-1", `kubeadm join ${api} --token ${token} --discovery-token-ca-cert-hash ${pin} ${extra}`);

      // A mandatory binary missing: conntrack below 1.32 (not from 1.32), crictl on 1.30.
      await hide("worker-1", ["conntrack", "crictl"]);
      const noConntrack = await workerJoin();
      fail(noConntrack);
      expect(noConntrack.stderr).toContain("[ERROR FileExisting-conntrack]: conntrack not found in system path");
      expect(noConntrack.stderr).toContain("[WARNING FileExisting-crictl]: crictl not found in system path");
      expect(await joined("worker-1")).toBe(false);
      // --ignore-preflight-errors gets past preflight (to the next check: an unknown token here).
      const ignored = await ssh(
        "worker-1",
        `kubeadm join ${api} --token zzzzzz.zzzzzzzzzzzzzzzz --discovery-token-ca-cert-hash ${pin} --ignore-preflight-errors=FileExisting-conntrack`,
      );
      fail(ignored);
      expect(ignored.stderr).not.toContain("[ERROR");
      expect(ignored.stderr).toContain("could not find a JWS signature");
      await sh("worker-1", "echo v1.30.6 > /etc/kha-lab/kubernetes-version");
      const v130 = await workerJoin();
      expect(v130.stderr).toContain("[ERROR FileExisting-crictl]: crictl not found in system path");
      expect(v130.stderr).toContain("[ERROR FileExisting-conntrack]");
      await sh("worker-1", "echo v1.32.0 > /etc/kha-lab/kubernetes-version");
      expect((await ssh("worker-1", "kubeadm version -o short")).stdout.trim()).toBe("v1.32.0");
      const v132 = await ssh(
        "worker-1",
        `kubeadm join ${api} --token zzzzzz.zzzzzzzzzzzzzzzz --discovery-token-ca-cert-hash ${pin}`,
      );
      expect(v132.stderr).not.toContain("FileExisting-conntrack");
      expect(v132.stderr).toContain("could not find a JWS signature");
      await labExec("worker-1", "rm -f /etc/kha-lab/kubernetes-version");
      await unhide("worker-1");

      // Swap: the kubelet refuses it unless the cluster's kubelet configuration sets failSwapOn: false.
      await swapOn("worker-1");
      const swapJoin = await workerJoin();
      fail(swapJoin);
      expect(swapJoin.stderr).toContain("[WARNING Swap]");
      expect(swapJoin.stderr).toContain("running with swap on is not supported");
      expect(await joined("worker-1")).toBe(false);
      await swapOn("cp-1");
      await sh("cp-1", "kubeadm reset -f >/dev/null");
      const swapInit = await ssh("cp-1", "kubeadm init --config /root/init.yaml");
      fail(swapInit);
      expect(swapInit.stderr).toContain("error execution phase wait-control-plane");
      // As after kubeadm's own timeout, the kubeconfig files are written: a retry needs a reset.
      expect(await sh("cp-1", "test -e /etc/kubernetes/admin.conf && echo left")).toBe("left");
      await sh("cp-1", "kubeadm reset -f >/dev/null");
      const allowSwap = `${init.replace(/- token: \S+/, "- token: mnopqr.0123456789abcdef")}---\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nfailSwapOn: false\n`;
      await labExec("cp-1", "cat > /root/swap.yaml", { input: allowSwap });
      ok(await ssh("cp-1", "kubeadm init --config /root/swap.yaml"));
      ok(
        await ssh(
          "worker-1",
          `kubeadm join ${api} --token mnopqr.0123456789abcdef --discovery-token-ca-cert-hash ${pin}`,
        ),
      );
      await Promise.all(["cp-1", "worker-1"].map(swapOff));

      // check-etcd: a control-plane join reads the live member list and refuses while one is down.
      const tok = (await ssh("cp-1", "kubeadm token create --kubeconfig /root/local.conf")).stdout.trim();
      const up = await ssh("cp-1", "kubeadm init phase upload-certs --upload-certs --kubeconfig /root/local.conf");
      const key = /\n([0-9a-f]{64})\n/.exec(up.stdout)![1];
      const joinCfg = `apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ndiscovery:\n  bootstrapToken:\n    apiServerEndpoint: ${api}\n    token: ${tok}\n    caCertHashes: ["${pin}"]\ncontrolPlane:\n  certificateKey: "${key}"\ntimeouts:\n  etcdAPICall: 8s\n`;
      await labExec("cp-3", "cat > /root/join.yaml", { input: joinCfg });
      await sh("cp-2", "mv /etc/kubernetes/manifests/etcd.yaml /etc/kubernetes/etcd.yaml.stopped");
      expect(await waitFor(async () => (await labExec("cp-2", "pgrep -x etcd")).code === 1, 15_000, 200)).toBe(true);
      const t0 = Date.now();
      // kubeadm retries each member for timeouts.etcdAPICall (8 s here) before it gives up.
      const unhealthy = await run(sshArgv("cp-3", "kubeadm join --config /root/join.yaml", { user: "root" }), {
        timeoutMs: 60_000,
      });
      fail(unhealthy);
      expect(unhealthy.stderr).toContain("etcd cluster is not healthy: https://198.18.0.12:2379 (member cp-2)");
      expect(Date.now() - t0).toBeGreaterThan(8000);
      expect(await joined("cp-3")).toBe(false);
      await sh("cp-2", "mv /etc/kubernetes/etcd.yaml.stopped /etc/kubernetes/manifests/etcd.yaml");
      expect(await waitFor(async () => (await labEtcdctl(["endpoint", "health"])).code === 0, 30_000, 250)).toBe(true);
      const healthy = await ssh("cp-3", "kubeadm join --config /root/join.yaml");
      ok(healthy);
      expect(healthy.stdout).toContain("[check-etcd] Checking that the etcd cluster is healthy");
    } finally {
      await Promise.all(["cp-1", "worker-1"].map(swapOff));
      await unhide("worker-1");
      await labExec("worker-1", "rm -f /etc/kha-lab/kubernetes-version");
      await labExec(
        "cp-2",
        "[ -e /etc/kubernetes/etcd.yaml.stopped ] && mv /etc/kubernetes/etcd.yaml.stopped /etc/kubernetes/manifests/etcd.yaml; true",
      );
      for (const h of ["cp-1", "cp-3", "worker-1"])
        await labExec(
          h,
          "kubeadm reset -f >/dev/null; rm -f /root/init.yaml /root/bad.yaml /root/swap.yaml /root/join.yaml /root/local.conf",
        );
    }
  }, 180_000);

  test("hosts are isolated: own processes, no way out of 198.18.0.0/24, reachable link toggles", async () => {
    expect(await sh("cp-1", "pgrep -x etcd | wc -l")).toBe("1");
    await sh("cp-2", "systemd-run --unit=kha-marker sleep 4242");
    try {
      // Process names only: the shell running pgrep has the pattern in its own command line.
      const count = "pgrep -a -x sleep | grep -c ' 4242$' || true";
      expect(await waitFor(async () => (await sh("cp-2", count)) === "1", 5000, 100)).toBe(true);
      expect(await sh("cp-1", count)).toBe("0");
      expect(await sh("worker-1", count)).toBe("0");
      // ... while this machine sees it (the hosts are its children, not its peers).
      expect((await run(["pgrep", "-f", "^/usr/bin/sleep 4242$"])).code).toBe(0);
    } finally {
      await labExec("cp-2", "systemctl stop kha-marker");
    }
    for (const host of HOSTS) {
      const routes = await sh(host, "ip -4 route show; ip -6 route show");
      expect(routes).not.toMatch(/^default/m);
      // Route lookups only: no packet leaves for an address outside the lab.
      const out = await labExec(host, "ip route get 192.0.2.1");
      expect(out.code).not.toBe(0);
      expect(out.stderr).toMatch(/unreachable/i);
      expect((await labExec(host, "ip route get 198.18.0.1")).code).toBe(0);
    }
    // linkDown cuts a host off the bridge; linkUp restores it.
    await linkDown("worker-1");
    try {
      const r = await run(["ssh", "-o", "ConnectTimeout=1", ...sshArgv("worker-1", "true").slice(1)], {
        timeoutMs: 10_000,
      });
      expect(r.code).not.toBe(0);
    } finally {
      await linkUp("worker-1");
    }
    expect(await waitFor(async () => (await ssh("worker-1", "true")).code === 0, 10_000, 200)).toBe(true);
  }, 60_000);

  test("status reports every host", async () => {
    const st = await labStatus();
    expect(st.vip).toBe(LAB.vip);
    expect(st.port).toBe(LAB.port);
    expect(st.hosts.map((h) => [h.name, h.address, h.netns, h.sshOk, h.etcdHealthy, h.vipHolder])).toEqual([
      ["cp-1", "198.18.0.11", "kha-cp-1", true, true, false],
      ["cp-2", "198.18.0.12", "kha-cp-2", true, true, false],
      ["cp-3", "198.18.0.13", "kha-cp-3", true, true, false],
      ["worker-1", "198.18.0.21", "kha-worker-1", true, false, false],
    ]);
    // vipHolder follows the address.
    await sh("cp-2", `ip addr add ${LAB.vip}/24 dev eth0`);
    expect((await labStatus()).hosts.filter((h) => h.vipHolder).map((h) => h.name)).toEqual(["cp-2"]);
    await sh("cp-2", `ip addr del ${LAB.vip}/24 dev eth0`);
    // The CLI's --json: one envelope, the lab spec's path in data.
    const cli = await run([BUN, "test/lab/cli.ts", "status", "--json"], { cwd: PROJECT_ROOT });
    expect(cli.code).toBe(0);
    const e = JSON.parse(cli.stdout);
    expect(e).toMatchObject({ ok: true, command: "lab", error: null, data: { spec: labPaths.spec, vip: LAB.vip } });
    expect(e.data.hosts.map((h: { name: string }) => h.name)).toEqual(["cp-1", "cp-2", "cp-3", "worker-1"]);
  }, 60_000);

  test("down leaves nothing behind, also after the nspawn processes were killed with SIGKILL", async () => {
    const d1 = await labDown();
    times.push(`down: ${d1.seconds.toFixed(1)} s`);
    expect(await labLeftovers()).toEqual([]);
    expect(await labProcesses()).toBe("");
    expect(existsSync(labPaths.stateDir)).toBe(false);
    expect(labHolder()).toBeUndefined();
    expect((await run(["ip", "link", "show", LAB.bridge])).code).not.toBe(0);

    const up = await labUp();
    times.push(`up again: ${up.seconds.toFixed(1)} s`);
    const pids = labNspawnPids();
    expect(pids).toHaveLength(4);
    for (const pid of pids) process.kill(pid, "SIGKILL");
    const d2 = await labDown();
    times.push(`down after SIGKILL of every nspawn: ${d2.seconds.toFixed(1)} s`);
    expect(await labLeftovers()).toEqual([]);
    expect(await labProcesses()).toBe("");
    expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(labPaths.runtimeDir);
    // down on nothing is fine.
    await labDown();
    expect(await labLeftovers()).toEqual([]);
  }, 120_000);
});
