// A throwaway OpenSSH server on 127.0.0.1 for tests: its own host key, one
// authorized client key, root login by key only. Lets the remote layer and the
// etcd commands be tested against a real sshd without lab hosts. On request it
// also knows a non-root user with passwordless sudo, who exists only inside the
// server's private mount namespace (copies of passwd/group/shadow/sudoers.d bound
// over /etc there), so the host's accounts are never touched.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface LoopbackSshd {
  port: number;
  /** The listening sshd's pid (each connection is served by a child of it). */
  pid: number;
  dir: string;
  /** Client private key path authorized for root. */
  clientKeyPath: string;
  /** Host public key as "type base64". */
  hostKey: string;
  /** A known_hosts line for this server. */
  knownHostsLine: string;
  /** The non-root sudo user, when one was asked for (same client key as root). */
  sudoUser?: { name: string; uid: number; home: string };
  stop(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      s.close(() => res(port));
    });
  });
}

function keygen(path: string): void {
  const r = spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "kubeadm-ha-test", "-f", path]);
  if (r.status !== 0) throw new Error(`ssh-keygen failed: ${r.stderr}`);
}

/** Whether this process can run a test sshd (root, /usr/sbin/sshd present). */
export function canRunSshd(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root";
  const r = spawnSync("/usr/sbin/sshd", ["-V"]);
  if (r.error) return "no /usr/sbin/sshd (install openssh-server)";
  return undefined;
}

/** Whether this process can also run the sudo user (sudo and unshare present). */
export function canRunSudoUserSshd(): string | undefined {
  const sshd = canRunSshd();
  if (sshd) return sshd;
  if (spawnSync("sudo", ["-V"]).error) return "no sudo (install sudo)";
  if (spawnSync("unshare", ["--mount", "--propagation", "private", "true"]).status !== 0)
    return "unshare --mount does not work here";
  return undefined;
}

/** A uid no account on this machine uses. */
function unusedUid(): number {
  const used = new Set(
    readFileSync("/etc/passwd", "utf8")
      .split("\n")
      .map((l) => Number(l.split(":")[2])),
  );
  let uid = 64201;
  while (used.has(uid)) uid++;
  return uid;
}

/**
 * Account files for a sudo user, to be bound over /etc inside the server's namespace. The
 * shadow entry is "*" (no password, not locked): sshd without PAM refuses locked accounts
 * even for keys, and sudo's PAM account check needs an entry.
 */
function sudoUserFiles(dir: string, name: string): { uid: number; home: string; binds: [string, string][] } {
  const uid = unusedUid();
  const home = join(dir, "home");
  mkdirSync(home, { mode: 0o700 });
  chownSync(home, uid, uid);
  const add = (file: string, line: string, mode: number) => {
    const copy = join(dir, file.replaceAll("/", "_"));
    writeFileSync(copy, `${readFileSync(file, "utf8").trimEnd()}\n${line}\n`, { mode });
    return copy;
  };
  const sudoers = join(dir, "sudoers.d");
  mkdirSync(sudoers, { mode: 0o755 });
  writeFileSync(join(sudoers, "kubeadm-ha-test"), `${name} ALL=(ALL:ALL) NOPASSWD: ALL\n`, { mode: 0o440 });
  return {
    uid,
    home,
    binds: [
      [add("/etc/passwd", `${name}:x:${uid}:${uid}::${home}:/bin/bash`, 0o644), "/etc/passwd"],
      [add("/etc/group", `${name}:x:${uid}:`, 0o644), "/etc/group"],
      [add("/etc/shadow", `${name}:*:19000:0:99999:7:::`, 0o640), "/etc/shadow"],
      [sudoers, "/etc/sudoers.d"],
    ],
  };
}

/**
 * sshd's PAM stack for `nologin`: pam_nologin in the account stack, as Debian's /etc/pam.d/sshd
 * has it, reading a nologin file of the test's own (a stand-in for /run/nologin while a host
 * boots). Bound over /etc/pam.d/sshd inside the server's mount namespace only.
 */
function pamWithNologin(dir: string): [string, string] {
  const file = join(dir, "pam.d-sshd");
  writeFileSync(
    file,
    `${[
      "auth     required pam_permit.so",
      `account  required pam_nologin.so file=${join(dir, "nologin")}`,
      "account  required pam_permit.so",
      "session  required pam_permit.so",
      "password required pam_deny.so",
    ].join("\n")}\n`,
    { mode: 0o644 },
  );
  writeFileSync(join(dir, "nologin"), "System is booting up. Unprivileged users are not permitted to log in yet.\n");
  return [file, "/etc/pam.d/sshd"];
}

export async function startLoopbackSshd(
  opts: {
    clientKeyPath?: string;
    allowForwarding?: boolean;
    sudoUser?: string;
    /**
     * With sudoUser: sshd uses PAM, and a nologin file (as /run/nologin while a host boots) exists,
     * so the non-root user's key is accepted and the login then refused by PAM's account stack.
     */
    nologin?: boolean;
  } = {},
): Promise<LoopbackSshd> {
  if (opts.nologin && !opts.sudoUser) throw new Error("nologin applies to the sudo user (root is exempt)");
  const dir = mkdtempSync(join(tmpdir(), "kubeadm-ha-sshd-"));
  // The sudo user reads authorized_keys with its own rights: the directory must be passable.
  if (opts.sudoUser) chmodSync(dir, 0o711);
  const hostKeyPath = join(dir, "host_ed25519");
  keygen(hostKeyPath);
  let clientKeyPath = opts.clientKeyPath;
  if (!clientKeyPath) {
    clientKeyPath = join(dir, "client_ed25519");
    keygen(clientKeyPath);
  }
  writeFileSync(join(dir, "authorized_keys"), readFileSync(`${clientKeyPath}.pub`), {
    mode: opts.sudoUser ? 0o644 : 0o600,
  });
  const user = opts.sudoUser ? sudoUserFiles(dir, opts.sudoUser) : undefined;
  if (user && opts.nologin) user.binds.push(pamWithNologin(dir));
  mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
  const port = await freePort();
  const config = [
    `Port ${port}`,
    "ListenAddress 127.0.0.1",
    `HostKey ${hostKeyPath}`,
    `PidFile ${join(dir, "sshd.pid")}`,
    `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
    "PermitRootLogin prohibit-password",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    `UsePAM ${opts.nologin ? "yes" : "no"}`,
    "StrictModes no",
    `AllowTcpForwarding ${opts.allowForwarding === false ? "no" : "yes"}`,
    "Subsystem sftp internal-sftp",
    "LogLevel ERROR",
  ].join("\n");
  writeFileSync(join(dir, "sshd_config"), `${config}\n`);
  const sshdArgv = ["/usr/sbin/sshd", "-D", "-e", "-f", join(dir, "sshd_config")];
  // unshare execs the shell, which execs sshd: the child's pid is sshd's.
  const argv = user
    ? [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        'while [ "$1" != -- ]; do mount --bind "$1" "$2" || exit 1; shift 2; done; shift; exec "$@"',
        "loopback-sshd",
        ...user.binds.flat(),
        "--",
        ...sshdArgv,
      ]
    : sshdArgv;
  const proc: ChildProcess = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  proc.stderr?.on("data", (d) => {
    stderr += d.toString();
  });
  // Wait until it accepts connections.
  const deadline = Date.now() + 5000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`sshd exited: ${stderr}`);
    const ok = await new Promise<boolean>((res) => {
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        res(true);
      });
      s.once("error", () => res(false));
    });
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`sshd did not listen on ${port}: ${stderr}`);
    await Bun.sleep(30);
  }
  const hostKey = readFileSync(`${hostKeyPath}.pub`, "utf8").trim().split(/\s+/).slice(0, 2).join(" ");
  return {
    port,
    pid: proc.pid!,
    dir,
    clientKeyPath,
    hostKey,
    knownHostsLine: `[127.0.0.1]:${port} ${hostKey}`,
    sudoUser: user && opts.sudoUser ? { name: opts.sudoUser, uid: user.uid, home: user.home } : undefined,
    async stop() {
      if (proc.exitCode === null) {
        proc.kill("SIGTERM");
        await new Promise((res) => proc.once("exit", res));
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
