// The SSH layer against real sshd processes on loopback: exec, root without sudo,
// SFTP round trip with modes, host key checks, bastion hop, and uploads as a sudo
// user staged in a private directory (never at a path another user can predict).
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  lchownSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Server } from "ssh2";
import { EXIT, UserError } from "../../lib/errors.ts";
import { etcdScriptOk } from "../../lib/etcd/remote.ts";
import {
  canRunSshd,
  canRunSudoUserSshd,
  type LoopbackSshd,
  startLoopbackSshd,
} from "../../lib/remote/loopback-sshd.ts";
import { connectNode, localSha256, withStagingDir } from "../../lib/remote/ssh.ts";
import { parseSpec } from "../../lib/spec/load.ts";
import type { ClusterSpec, NodeSpec } from "../../lib/spec/schema.ts";

const missing = canRunSshd();
if (missing && process.env.CI === "true") throw new Error(`remote-ssh tests need a real sshd: ${missing}`);
const maybe = missing ? describe.skip : describe;
const sudoMissing = canRunSudoUserSshd();
if (sudoMissing && process.env.CI === "true") throw new Error(`sudo-user upload tests need sudo: ${sudoMissing}`);

function specFor(port: number, keyPath: string, extra = "", user = "root"): ClusterSpec {
  return parseSpec(`
name: t
kubernetes: { version: "1.31.4", packages: { source: preinstalled } }
allowNonHA: true
ssh: { user: ${user}, port: ${port}, privateKeyPath: ${keyPath} }
controlPlaneEndpoint: { vip: 127.0.0.100, interface: lo }
nodes:
  - { name: cp-1, address: 127.0.0.1, role: control-plane }
${extra}
`);
}
const node = (spec: ClusterSpec): NodeSpec => spec.nodes[0]!;

maybe("ssh layer on a loopback sshd", () => {
  setDefaultTimeout(30_000);
  let a: LoopbackSshd;
  let b: LoopbackSshd;
  let work: string;
  beforeAll(async () => {
    a = await startLoopbackSshd();
    b = await startLoopbackSshd({ clientKeyPath: a.clientKeyPath });
    work = mkdtempSync(join(tmpdir(), "kubeadm-ha-ssh-test-"));
  });
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  test("exec returns code, stdout, stderr and takes stdin; root needs no sudo", async () => {
    const spec = specFor(a.port, a.clientKeyPath);
    const r = await connectNode(spec, node(spec), { knownHostsText: a.knownHostsLine });
    try {
      const out = await r.exec("echo out; echo err >&2; exit 3");
      expect(out).toEqual({ code: 3, stdout: "out\n", stderr: "err\n" });
      const cat = await r.exec("tr a-z A-Z", { stdin: "hello" });
      expect(cat.stdout).toBe("HELLO");
      // sudo as root: the command runs unchanged (no sudo binary involved).
      const who = await r.exec("id -u; ps -o args= -p $$", { sudo: true });
      expect(who.stdout.split("\n")[0]).toBe("0");
      expect(who.stdout).not.toContain("sudo");
      await expect(r.run("false", { what: "the false command" })).rejects.toThrow(
        /cp-1: the false command failed \(exit 1\)/,
      );
      await expect(r.exec("sleep 5", { timeoutMs: 300 })).rejects.toThrow(/timed out/);
      const chunks: string[] = [];
      const s = await r.execStream("for i in 1 2 3; do echo $i; sleep 0.05; done", { onStdout: (c) => chunks.push(c) });
      expect(s.code).toBe(0);
      expect(chunks.join("")).toBe("1\n2\n3\n");
    } finally {
      r.close();
    }
  });

  test("sftp put and get keep content and modes, get refuses to overwrite, sha256 agrees", async () => {
    const spec = specFor(a.port, a.clientKeyPath);
    const r = await connectNode(spec, node(spec), { knownHostsText: a.knownHostsLine });
    try {
      const src = join(work, "src.bin");
      const data = Buffer.alloc(3 * 1024 * 1024 + 17);
      for (let i = 0; i < data.length; i++) data[i] = (i * 7919) & 0xff;
      writeFileSync(src, data);
      const remotePath = join(work, "remote.bin");
      await r.put({ path: src }, remotePath, { mode: 0o640 });
      expect(statSync(remotePath).mode & 0o777).toBe(0o640);
      await r.put({ content: "secret-free text\n" }, join(work, "c.txt"), { mode: 0o600, sudo: true });
      expect(readFileSync(join(work, "c.txt"), "utf8")).toBe("secret-free text\n");
      expect(statSync(join(work, "c.txt")).mode & 0o777).toBe(0o600);
      const back = join(work, "back.bin");
      await r.get(remotePath, back);
      expect(statSync(back).mode & 0o777).toBe(0o600);
      expect(Buffer.compare(readFileSync(back), data)).toBe(0);
      expect(await r.sha256(remotePath)).toBe(await localSha256(src));
      await expect(r.get(remotePath, back)).rejects.toThrow(/EEXIST|exists/);
    } finally {
      r.close();
    }
  });

  test("download: many reads in flight, bytes in order to onData, exclusive temp then the final name, 0600, never overwrites", async () => {
    const spec = specFor(a.port, a.clientKeyPath);
    const r = await connectNode(spec, node(spec), { knownHostsText: a.knownHostsLine });
    const dir = mkdtempSync(join(work, "dl-"));
    try {
      const data = Buffer.alloc(5 * 1024 * 1024 + 33);
      for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
      const remotePath = join(work, "dl-remote.bin");
      writeFileSync(remotePath, data);
      const dest = join(dir, "snap.db");
      const seen: Buffer[] = [];
      let expectOffset = 0;
      const old = process.umask(0);
      try {
        const res = await r.download(remotePath, dest, {
          // Odd sizes and a small window so replies overtake each other and the tail is short.
          chunkSize: 40_000,
          concurrency: 16,
          onData: (chunk, offset, size) => {
            expect(offset).toBe(expectOffset);
            expect(size).toBe(data.length);
            expectOffset += chunk.length;
            seen.push(Buffer.from(chunk));
          },
        });
        expect(res.bytes).toBe(data.length);
      } finally {
        process.umask(old);
      }
      expect(Buffer.compare(Buffer.concat(seen), data)).toBe(0);
      expect(Buffer.compare(readFileSync(dest), data)).toBe(0);
      expect(statSync(dest).mode & 0o777).toBe(0o600);
      expect(readdirSync(dir)).toEqual(["snap.db"]);
      // Reads larger than the server answers (OpenSSH's sftp-server: 256 KiB) come back short
      // and are asked again for the rest: the defaults and a 1 MiB read size lose no byte.
      for (const [name, opts] of [
        ["defaults.db", {}],
        ["big-reads.db", { chunkSize: 1024 * 1024, concurrency: 3 }],
      ] as const) {
        let n = 0;
        await r.download(remotePath, join(dir, name), {
          ...opts,
          onData: (c) => {
            n += c.length;
          },
        });
        expect(n).toBe(data.length);
        expect(Buffer.compare(readFileSync(join(dir, name)), data)).toBe(0);
        rmSync(join(dir, name));
      }
      // The existing file is kept byte for byte and no temp file is left behind.
      writeFileSync(remotePath, "other");
      await expect(r.download(remotePath, dest)).rejects.toThrow(/exists/);
      expect(Buffer.compare(readFileSync(dest), data)).toBe(0);
      // A missing remote file fails and leaves nothing; an empty one downloads as empty.
      await expect(r.download(join(work, "no-such.bin"), join(dir, "x.db"))).rejects.toThrow();
      writeFileSync(join(work, "empty.bin"), "");
      await r.download(join(work, "empty.bin"), join(dir, "empty.db"));
      expect(statSync(join(dir, "empty.db")).size).toBe(0);
      expect(readdirSync(dir).sort()).toEqual(["empty.db", "snap.db"]);
    } finally {
      r.close();
    }
  });

  test("putHashed: the node hashes the upload as it writes it; mode applied; a failed write is an error", async () => {
    const spec = specFor(a.port, a.clientKeyPath);
    const r = await connectNode(spec, node(spec), { knownHostsText: a.knownHostsLine });
    try {
      const src = join(work, "ph-src.bin");
      const data = Buffer.alloc(2 * 1024 * 1024 + 5);
      for (let i = 0; i < data.length; i++) data[i] = (i * 131) & 0xff;
      writeFileSync(src, data);
      const dest = join(work, "ph-dest.bin");
      const sha = await r.putHashed(src, dest, { mode: 0o640 });
      expect(sha).toBe(await localSha256(src));
      expect(Buffer.compare(readFileSync(dest), data)).toBe(0);
      expect(statSync(dest).mode & 0o777).toBe(0o640);
      await expect(r.putHashed(src, join(work, "no-such-dir", "x.bin"))).rejects.toThrow(/upload to .* failed/);
    } finally {
      r.close();
    }
  });

  test("an etcd step that fails on the host is a failed operation (exit 1), naming the host and the step", async () => {
    const spec = specFor(a.port, a.clientKeyPath);
    const r = await connectNode(spec, node(spec), { knownHostsText: a.knownHostsLine });
    try {
      const e = await etcdScriptOk(r, "echo 'snapshot broke' >&2; exit 7", "the etcd step").catch((x: unknown) => x);
      expect(e).toBeInstanceOf(UserError);
      expect((e as UserError).exitCode).toBe(EXIT.failed);
      expect((e as UserError).message).toBe("cp-1: the etcd step failed (exit 7): snapshot broke");
    } finally {
      r.close();
    }
  });

  test("a different host key is refused with both fingerprints and the fix", async () => {
    const spec = specFor(a.port, a.clientKeyPath);
    // b's key under a's name: a stands in for a reinstalled host or a man in the middle.
    const wrong = `[127.0.0.1]:${a.port} ${b.hostKey}`;
    const err = await connectNode(spec, node(spec), { knownHostsText: wrong }).catch((e) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toContain("HOST KEY MISMATCH");
    expect(err.message).toContain("cp-1");
    const fp = (k: string) =>
      `SHA256:${new Bun.CryptoHasher("sha256")
        .update(Buffer.from(k.split(" ")[1]!, "base64"))
        .digest("base64")
        .replace(/=+$/, "")}`;
    expect(err.message).toContain(fp(b.hostKey));
    expect(err.message).toContain(fp(a.hostKey));
    expect(err.message).toContain("trust-hosts");
  });

  test("an unknown host is refused unless first contact is explicitly allowed", async () => {
    const spec = specFor(a.port, a.clientKeyPath);
    const err = await connectNode(spec, node(spec), { knownHostsText: "" }).catch((e) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toMatch(/not in known_hosts/);
    const seen: string[] = [];
    const r = await connectNode(spec, node(spec), {
      knownHostsText: "",
      acceptUnknownHostKey: true,
      onHostKey: (k) => seen.push(`${k.keyType} ${k.keyBase64}`),
    });
    r.close();
    expect(seen).toEqual([a.hostKey]);
    // Even with the opt-in, a mismatch stays refused.
    const wrong = `[127.0.0.1]:${a.port} ${b.hostKey}`;
    await expect(connectNode(spec, node(spec), { knownHostsText: wrong, acceptUnknownHostKey: true })).rejects.toThrow(
      /MISMATCH/,
    );
  });

  test("a missing known_hosts file is a UserError naming the path", async () => {
    const spec = specFor(a.port, a.clientKeyPath);
    await expect(connectNode(spec, node(spec), { baseDir: work })).rejects.toThrow(/known_hosts does not exist/);
  });

  test("bastion hop: node reached through forwardOut on the jump host, both keys verified", async () => {
    const spec = specFor(b.port, a.clientKeyPath, "");
    spec.ssh.bastion = { host: "127.0.0.1", port: a.port, user: "root" };
    const known = `${a.knownHostsLine}\n${b.knownHostsLine}\n`;
    const r = await connectNode(spec, node(spec), { knownHostsText: known });
    try {
      const out = await r.run("echo $SSH_CONNECTION");
      expect(out.trim().split(" ")[2]).toBe("127.0.0.1");
      expect(out.trim().split(" ")[3]).toBe(String(b.port));
    } finally {
      r.close();
    }
    // Without the bastion's key the hop is refused before the node is tried.
    await expect(connectNode(spec, node(spec), { knownHostsText: b.knownHostsLine })).rejects.toThrow(
      /bastion 127.0.0.1.*not in known_hosts/,
    );
  });

  test("bastion that forbids forwarding: the node is not reached around it", async () => {
    const noFwd = await startLoopbackSshd({ clientKeyPath: a.clientKeyPath, allowForwarding: false });
    try {
      const spec = specFor(b.port, a.clientKeyPath);
      spec.ssh.bastion = { host: "127.0.0.1", port: noFwd.port, user: "root" };
      const known = `${noFwd.knownHostsLine}\n${b.knownHostsLine}\n`;
      await expect(connectNode(spec, node(spec), { knownHostsText: known })).rejects.toThrow(
        /bastion 127.0.0.1 could not open a connection/,
      );
    } finally {
      await noFwd.stop();
    }
  });
  test("bastion that never answers the forwarding request: fails within the session bound, naming both", async () => {
    // An SSH server (ssh2's) that logs anyone in and leaves every forwarding request unanswered,
    // as a bastion does while its own connection to the node hangs.
    const keyPath = join(work, "silent-bastion-key");
    spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", keyPath]);
    const silent = new Server({ hostKeys: [readFileSync(keyPath)] }, (c) => {
      c.on("authentication", (ctx) => ctx.accept());
      c.on("tcpip", () => undefined);
      c.on("error", () => undefined);
    });
    const port = await new Promise<number>((res) =>
      silent.listen(0, "127.0.0.1", () => res((silent.address() as { port: number }).port)),
    );
    try {
      const pub = readFileSync(`${keyPath}.pub`, "utf8").split(" ").slice(0, 2).join(" ");
      const spec = specFor(b.port, a.clientKeyPath);
      spec.ssh.bastion = { host: "127.0.0.1", port, user: "root" };
      const known = `[127.0.0.1]:${port} ${pub}\n${b.knownHostsLine}\n`;
      const t = Date.now();
      const err = await connectNode(spec, node(spec), { knownHostsText: known, sessionTimeoutMs: 1500 }).catch(
        (e) => e,
      );
      expect(err).toBeInstanceOf(UserError);
      expect(String(err.message)).toMatch(
        /cp-1: the bastion 127\.0\.0\.1 could not open a connection to 127\.0\.0\.1:\d+: no answer within 1\.5 s/,
      );
      expect(Date.now() - t).toBeLessThan(10_000);
    } finally {
      silent.close();
    }
  });
});

describe.skipIf(Boolean(sudoMissing))("uploads as a sudo user on a loopback sshd", () => {
  setDefaultTimeout(30_000);
  let s: LoopbackSshd;
  let work: string;
  let spec: ClusterSpec;
  const NOBODY = 65534;
  beforeAll(async () => {
    s = await startLoopbackSshd({ sudoUser: "kha-deploy" });
    spec = specFor(s.port, s.clientKeyPath, "", "kha-deploy");
    work = mkdtempSync(join(tmpdir(), "kubeadm-ha-sudo-test-"));
  });
  afterAll(async () => {
    await s?.stop();
    rmSync(work, { recursive: true, force: true });
  });
  const tmpEntries = () => new Set(readdirSync("/tmp"));
  /** What appeared in /tmp since `before` and belongs to the SSH user (other tests on this machine may add their own). */
  const leftBehind = (before: Set<string>) =>
    [...tmpEntries()].filter((e) => {
      if (before.has(e)) return false;
      try {
        return lstatSync(join("/tmp", e)).uid === s.sudoUser!.uid;
      } catch {
        return false;
      }
    });

  /**
   * Another local user (nobody) fills the next seconds of the old staging name,
   * /tmp/.kubeadm-ha-upload-<pid>-<ms>, with symlinks or world-writable files of its own.
   */
  function plant(kind: "symlink" | "file", target: string): string[] {
    const t0 = Date.now();
    const paths: string[] = [];
    for (let ms = t0; ms < t0 + 2000; ms++) {
      const p = `/tmp/.kubeadm-ha-upload-${process.pid}-${ms}`;
      rmSync(p, { force: true });
      if (kind === "symlink") symlinkSync(target, p);
      else {
        writeFileSync(p, "attacker\n");
        chmodSync(p, 0o666);
      }
      lchownSync(p, NOBODY, NOBODY);
      paths.push(p);
    }
    return paths;
  }

  test("put with sudo never uses a predictable /tmp name: planted symlinks and files are not followed or written, the file lands root-owned with its mode, nothing is left in /tmp", async () => {
    const user = s.sudoUser!;
    // A file of the SSH user that a followed symlink would overwrite.
    const victim = join(user.home, "victim");
    writeFileSync(victim, "victim\n", { mode: 0o644 });
    chownSync(victim, user.uid, user.uid);
    const r = await connectNode(spec, node(spec), { knownHostsText: s.knownHostsLine });
    expect((await r.run("id -un")).trim()).toBe("kha-deploy");
    const before = tmpEntries();
    const planted: string[] = [];
    try {
      planted.push(...plant("symlink", victim));
      const script = "#!/bin/sh\necho rolled back\n";
      const dest = join(work, "rollback.sh");
      await r.put({ content: script }, dest, { mode: 0o700, sudo: true });
      expect(readFileSync(victim, "utf8")).toBe("victim\n");
      expect(readFileSync(dest, "utf8")).toBe(script);
      const st = statSync(dest);
      expect([st.uid, st.gid, st.mode & 0o777]).toEqual([0, 0, 0o700]);

      for (const p of planted.splice(0)) rmSync(p, { force: true });
      planted.push(...plant("file", "/dev/null"));
      const dest2 = join(work, "etcd.yaml");
      await r.put({ content: "apiVersion: v1\n" }, dest2, { mode: 0o600, sudo: true });
      expect(readFileSync(dest2, "utf8")).toBe("apiVersion: v1\n");
      expect(statSync(dest2).mode & 0o777).toBe(0o600);
      for (const p of planted) {
        const st2 = lstatSync(p);
        expect([st2.uid, st2.size]).toEqual([NOBODY, "attacker\n".length]);
      }
      for (const p of planted.splice(0)) rmSync(p, { force: true });
      // No staging file or directory is left behind.
      expect(leftBehind(before)).toEqual([]);
    } finally {
      for (const p of planted) rmSync(p, { force: true });
      r.close();
    }
  });

  test("withStagingDir: made by mktemp -d as the SSH user, 0700, and removed after success and after a failure", async () => {
    const r = await connectNode(spec, node(spec), { knownHostsText: s.knownHostsLine });
    const before = tmpEntries();
    try {
      let seen = "";
      const got = await withStagingDir(r, async (dir) => {
        seen = dir;
        const st = lstatSync(dir);
        expect(st.isDirectory()).toBe(true);
        expect([st.uid, st.mode & 0o777]).toEqual([s.sudoUser!.uid, 0o700]);
        await r.put({ content: "x" }, `${dir}/file`);
        return "result";
      });
      expect(got).toBe("result");
      expect(seen).toMatch(/^\/tmp\/kubeadm-ha-upload\.[A-Za-z0-9]{10}$/);
      expect(() => lstatSync(seen)).toThrow(/ENOENT/);
      await expect(
        withStagingDir(r, async (dir) => {
          seen = dir;
          await r.put({ content: "x" }, `${dir}/file`);
          throw new Error("step failed");
        }),
      ).rejects.toThrow("step failed");
      expect(() => lstatSync(seen)).toThrow(/ENOENT/);
      // An install that fails (no such directory) is an error and leaves no staging behind either.
      await expect(
        r.put({ content: "x" }, join(work, "no-such-dir", "f"), { mode: 0o600, sudo: true }),
      ).rejects.toThrow(/installing .*no-such-dir/);
      expect(leftBehind(before)).toEqual([]);
    } finally {
      r.close();
    }
  });
});
