// A throwaway OpenSSH server on 127.0.0.1 for tests: its own host key, one
// authorized client key, root login by key only. Lets the remote layer and the
// etcd commands be tested against a real sshd without lab hosts.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface LoopbackSshd {
  port: number;
  dir: string;
  /** Client private key path authorized for root. */
  clientKeyPath: string;
  /** Host public key as "type base64". */
  hostKey: string;
  /** A known_hosts line for this server. */
  knownHostsLine: string;
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

export async function startLoopbackSshd(
  opts: { clientKeyPath?: string; allowForwarding?: boolean } = {},
): Promise<LoopbackSshd> {
  const dir = mkdtempSync(join(tmpdir(), "kubeadm-ha-sshd-"));
  const hostKeyPath = join(dir, "host_ed25519");
  keygen(hostKeyPath);
  let clientKeyPath = opts.clientKeyPath;
  if (!clientKeyPath) {
    clientKeyPath = join(dir, "client_ed25519");
    keygen(clientKeyPath);
  }
  writeFileSync(join(dir, "authorized_keys"), readFileSync(`${clientKeyPath}.pub`), { mode: 0o600 });
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
    "UsePAM no",
    "StrictModes no",
    `AllowTcpForwarding ${opts.allowForwarding === false ? "no" : "yes"}`,
    "Subsystem sftp internal-sftp",
    "LogLevel ERROR",
  ].join("\n");
  writeFileSync(join(dir, "sshd_config"), `${config}\n`);
  const proc: ChildProcess = spawn("/usr/sbin/sshd", ["-D", "-e", "-f", join(dir, "sshd_config")], {
    stdio: ["ignore", "ignore", "pipe"],
  });
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
    dir,
    clientKeyPath,
    hostKey,
    knownHostsLine: `[127.0.0.1]:${port} ${hostKey}`,
    async stop() {
      if (proc.exitCode === null) {
        proc.kill("SIGTERM");
        await new Promise((res) => proc.once("exit", res));
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
