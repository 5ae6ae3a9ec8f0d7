// SSH to cluster nodes with ssh2: every host key checked against the spec's
// known_hosts, optional bastion hop, sudo when the user is not root, SFTP with
// explicit modes. Scripts get a `Remote` and never see ssh2 itself.
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream, existsSync, readFileSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { pipeline } from "node:stream/promises";
import { Client, type ClientChannel, type ConnectConfig, type SFTPWrapper } from "ssh2";
import { EXIT, UserError } from "../errors.ts";
import { createExclusiveFile } from "../exclusive-file.ts";
import { shq } from "../shell.ts";
import { resolveSpecPath } from "../spec/load.ts";
import type { ClusterSpec, NodeSpec } from "../spec/schema.ts";
import { fingerprint, hostKeyFor, knownHostsMatches } from "./known-hosts.ts";

export interface ConnectOptions {
  /** Directory relative key and known_hosts paths are resolved against (the spec file's directory). */
  baseDir?: string;
  /** known_hosts content to use instead of reading the spec's file (tests, trust-hosts). */
  knownHostsText?: string;
  /** Accept a host that has no entry in known_hosts (first contact; trust-hosts only). Never accepts a mismatch. */
  acceptUnknownHostKey?: boolean;
  /** Called with every verified-or-accepted host key (trust-hosts records them). */
  onHostKey?: (key: PresentedHostKey) => void;
  /** The handshake and login, until the session is ready (default 15 s). */
  readyTimeoutMs?: number;
  /**
   * How long the server may take to open a channel for a command or SFTP once asked (default
   * 20 s; the command's own run time is ExecOptions.timeoutMs). A host that accepts the
   * connection but never opens a session fails with this bound instead of hanging.
   */
  sessionTimeoutMs?: number;
}

const READY_TIMEOUT_MS = 15_000;
const SESSION_TIMEOUT_MS = 20_000;
const seconds = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;

export interface PresentedHostKey {
  /** The name the key was checked under (node address, ssh.host override or bastion host). */
  host: string;
  port: number;
  keyType: string;
  keyBase64: string;
  fingerprint: string;
  verdict: "match" | "mismatch" | "unknown";
}

export interface ExecOptions {
  /** Run as root: `sudo -n` when the SSH user is not root; nothing extra when it is. */
  sudo?: boolean;
  stdin?: string | Buffer;
  timeoutMs?: number;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface StreamOptions extends ExecOptions {
  onStdout?: (chunk: string) => void;
  onStderr?: (chunk: string) => void;
  /**
   * stdout as raw bytes, in order, for a command that streams a file: when set, stdout is
   * handed here only (not decoded, not collected; the result's stdout is empty).
   */
  onStdoutBytes?: (chunk: Buffer) => void;
}

export interface DownloadOptions {
  mode?: number;
  /** SFTP reads in flight (default 16). */
  concurrency?: number;
  /** Bytes per read (default 256 KiB). */
  chunkSize?: number;
  /** Every byte of the file, in order, once: (chunk, its offset, the file's size). */
  onData?: (chunk: Buffer, offset: number, size: number) => void;
}

export interface Remote {
  /** Node name from the spec (or the bastion's host). */
  readonly name: string;
  /** Address SSH connected to. */
  readonly host: string;
  readonly user: string;
  exec(cmd: string, opts?: ExecOptions): Promise<ExecResult>;
  /** exec that throws a UserError naming the host and command when the exit code is not 0. */
  run(cmd: string, opts?: ExecOptions & { what?: string }): Promise<string>;
  /** exec with output handed over as it arrives (long restores, progress). */
  execStream(cmd: string, opts?: StreamOptions): Promise<ExecResult>;
  /** Download a remote file to a new local file created with `mode`; refuses to overwrite. */
  get(remotePath: string, localPath: string, mode?: number): Promise<void>;
  /**
   * Download with many SFTP reads in flight into a temp file created exclusively next to
   * `localPath`, then rename it to `localPath` (refused if that exists). `onData` sees the bytes
   * in file order as they are written (hash while downloading: no second read of the file).
   */
  download(remotePath: string, localPath: string, opts?: DownloadOptions): Promise<{ bytes: number }>;
  /**
   * Upload a local file (or content) to remotePath with `mode`. With sudo the file is written
   * into a private staging directory (withStagingDir) and installed root-owned by root.
   */
  put(
    source: { path: string } | { content: string | Buffer },
    remotePath: string,
    opts?: { mode?: number; sudo?: boolean },
  ): Promise<void>;
  /**
   * Upload a local file over an exec channel into `tee`, hashing the bytes on the node as they
   * arrive: returns the node's sha256 of what it wrote, without a second read. Needs bash on the
   * node; writes as the SSH user (no sudo) and overwrites like `put`.
   */
  putHashed(localPath: string, remotePath: string, opts?: { mode?: number }): Promise<string>;
  /** sha256 (hex) of a remote file. */
  sha256(remotePath: string, opts?: { sudo?: boolean }): Promise<string>;
  close(): void;
}

/** Quote for a POSIX shell: the renderers' shq, the one helper every script builder uses. */
export const sq = shq;

/** A spec path made absolute: against `baseDir` when the caller gives one, else against the spec file. */
function resolvePath(spec: ClusterSpec, p: string, baseDir?: string): string {
  if (baseDir === undefined || p.startsWith("~") || isAbsolute(p)) return resolveSpecPath(spec, p);
  return resolve(baseDir, p);
}

/** The SSH endpoint of a node after per-node overrides. */
export function sshTarget(
  spec: ClusterSpec,
  node: NodeSpec,
): { host: string; port: number; user: string; keyPath?: string } {
  return {
    host: node.ssh?.host ?? node.address,
    port: node.ssh?.port ?? spec.ssh.port,
    user: node.ssh?.user ?? spec.ssh.user,
    keyPath: node.ssh?.privateKeyPath ?? spec.ssh.privateKeyPath,
  };
}

export function knownHostsPath(spec: ClusterSpec, baseDir?: string): string {
  return resolvePath(spec, spec.ssh.knownHostsPath, baseDir);
}

function readKnownHosts(spec: ClusterSpec, opts: ConnectOptions): string {
  if (opts.knownHostsText !== undefined) return opts.knownHostsText;
  const path = knownHostsPath(spec, opts.baseDir);
  if (!existsSync(path)) {
    if (opts.acceptUnknownHostKey) return "";
    throw new UserError(
      `ssh.knownHostsPath: ${path} does not exist, so no host key can be verified. Run \`bun run trust-hosts\` to record each node's key (check the printed fingerprints against the hosts' consoles), then --yes to write them.`,
    );
  }
  return readFileSync(path, "utf8");
}

/** The key algorithm name inside an SSH public key blob (first length-prefixed string). */
function blobKeyType(blob: Buffer): string {
  const len = blob.readUInt32BE(0);
  return blob.subarray(4, 4 + len).toString("latin1");
}

/** Host key algorithms to ask for, so the server presents the key type we hold (if any) first. */
function hostKeyAlgorithms(known?: string): string[] | undefined {
  if (!known) return undefined;
  const type = known.split(" ")[0]!;
  const all = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
    "ssh-rsa",
  ];
  const first = type === "ssh-rsa" ? ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] : [type];
  return [...first, ...all.filter((a) => !first.includes(a))];
}

function readKey(path: string, field: string): Buffer {
  if (!existsSync(path)) {
    throw new UserError(
      `${field}: private key file ${path} does not exist. Point it at the key authorized on the hosts, or set ssh.agent: true to use $SSH_AUTH_SOCK.`,
    );
  }
  return readFileSync(path);
}

interface Hop {
  name: string;
  host: string;
  port: number;
  user: string;
  keyPath?: string;
  keyField: string;
}

function authConfig(spec: ClusterSpec, hop: Hop, baseDir: string | undefined): Partial<ConnectConfig> {
  // For Terraform Cloud-style runs the key may come from the environment instead of a file.
  const envKey = process.env.KUBEADM_HA_SSH_PRIVATE_KEY;
  if (spec.ssh.agent) {
    if (!process.env.SSH_AUTH_SOCK)
      throw new UserError(
        "ssh.agent is true but SSH_AUTH_SOCK is not set. Start an agent and add the key (ssh-add), or set ssh.privateKeyPath.",
      );
    return { agent: process.env.SSH_AUTH_SOCK };
  }
  if (hop.keyPath) return { privateKey: readKey(resolvePath(spec, hop.keyPath, baseDir), hop.keyField) };
  if (envKey) return { privateKey: Buffer.from(envKey) };
  if (process.env.SSH_AUTH_SOCK) return { agent: process.env.SSH_AUTH_SOCK };
  throw new UserError(
    `${hop.keyField}: no SSH credentials for ${hop.name}: set ssh.privateKeyPath (or the node's ssh.privateKeyPath), set ssh.agent: true, or export KUBEADM_HA_SSH_PRIVATE_KEY.`,
  );
}

function openClient(
  spec: ClusterSpec,
  hop: Hop,
  knownHosts: string,
  opts: ConnectOptions,
  sock?: NodeJS.ReadableStream,
): Promise<Client> {
  const auth = authConfig(spec, hop, opts.baseDir);
  const known = hostKeyFor(knownHosts, hop.host, hop.port);
  let refusal: UserError | undefined;
  const readyTimeout = opts.readyTimeoutMs ?? READY_TIMEOUT_MS;
  const who = `${hop.name} (${hop.user}@${hop.host}:${hop.port})`;
  return new Promise<Client>((resolveP, reject) => {
    const client = new Client();
    let settled = false;
    let banner = "";
    // ssh2's readyTimeout stops when the server closes the socket; this bound does not.
    const backstop = setTimeout(
      () =>
        fail(
          new UserError(
            `${who}: no SSH session within ${seconds(readyTimeout)}: the host accepted the connection but did not finish the login. Check that the host has finished booting and that sshd there is healthy.`,
            EXIT.failed,
          ),
        ),
      readyTimeout + 1000,
    );
    const fail = (e: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(backstop);
      client.end();
      reject(e);
    };
    client.on("ready", () => {
      if (settled) return client.end();
      settled = true;
      clearTimeout(backstop);
      resolveP(client);
    });
    client.on("banner", (message: string) => {
      banner += message;
    });
    // The server hung up before the session was ready, without an error: sshd does that when it
    // accepts the key and then refuses the login (PAM's account stack: pam_nologin while
    // /run/nologin exists, an expired account). ssh2 reports only 'close' then.
    client.on("close", () => {
      if (refusal) return fail(refusal);
      const said = banner.trim().replace(/\s+/g, " ").slice(0, 200);
      fail(
        new UserError(
          `${who}: the SSH server closed the connection before a session was open${said ? ` and said "${said}"` : ""}: it refused the login. A /run/nologin file refuses every user but root (it exists while a host boots; systemd-user-sessions removes it when boot finishes), and so do an expired or locked account and sshd's PAM account rules. Check that the host has finished booting and that ${hop.user} may log in there.`,
          EXIT.failed,
        ),
      );
    });
    client.on("error", (e: Error & { level?: string; code?: string }) => {
      if (refusal) return fail(refusal);
      const why =
        e.level === "client-authentication"
          ? `authentication as ${hop.user} failed (is the key in ~${hop.user}/.ssh/authorized_keys?)`
          : e.message;
      // A refused login is the spec's credentials (bad input); a host that does not answer is a failure.
      fail(
        new UserError(
          `${hop.name} (${hop.user}@${hop.host}:${hop.port}): cannot connect over SSH: ${why}. Check the address, port and credentials in the spec and that sshd runs there.`,
          e.level === "client-authentication" ? EXIT.usage : EXIT.failed,
        ),
      );
    });
    const algos = hostKeyAlgorithms(known);
    client.connect({
      host: sock ? undefined : hop.host,
      port: sock ? undefined : hop.port,
      sock: sock as ConnectConfig["sock"],
      username: hop.user,
      readyTimeout,
      keepaliveInterval: 10000,
      ...(algos ? { algorithms: { serverHostKey: algos as never } } : {}),
      ...auth,
      hostVerifier: (blob: Buffer) => {
        const keyType = blobKeyType(blob);
        const keyBase64 = blob.toString("base64");
        const verdict = knownHostsMatches(knownHosts, hop.host, hop.port, keyType, keyBase64);
        const presented = {
          host: hop.host,
          port: hop.port,
          keyType,
          keyBase64,
          fingerprint: fingerprint(keyBase64),
          verdict,
        };
        if (verdict === "mismatch") {
          const expected = known ? fingerprint(known.split(" ")[1] ?? "") : "(revoked key)";
          refusal = new UserError(
            `${hop.name} (${hop.host}:${hop.port}): HOST KEY MISMATCH: known_hosts expects ${known?.split(" ")[0] ?? ""} ${expected}, the host presented ${keyType} ${presented.fingerprint}. Refusing to connect: this is either a reinstalled host or someone in the middle. If the host was really reinstalled, confirm the new fingerprint on its console and run \`bun run trust-hosts --yes --replace\`.`,
          );
          return false;
        }
        if (verdict === "unknown" && !opts.acceptUnknownHostKey) {
          refusal = new UserError(
            `${hop.name} (${hop.host}:${hop.port}): host key ${keyType} ${presented.fingerprint} is not in known_hosts, so it cannot be verified. Refusing to connect. Check the fingerprint on the host's console and run \`bun run trust-hosts --yes\` to record it.`,
          );
          return false;
        }
        opts.onHostKey?.(presented);
        return true;
      },
    });
  });
}

/** The bastion hop of a spec, if any. */
function bastionHop(spec: ClusterSpec): Hop | undefined {
  const b = spec.ssh.bastion;
  if (!b) return undefined;
  return {
    name: `bastion ${b.host}`,
    host: b.host,
    port: b.port,
    user: b.user ?? spec.ssh.user,
    keyPath: b.privateKeyPath ?? spec.ssh.privateKeyPath,
    keyField: "ssh.bastion.privateKeyPath",
  };
}

function nodeHop(spec: ClusterSpec, node: NodeSpec): Hop {
  const t = sshTarget(spec, node);
  return {
    name: node.name,
    host: t.host,
    port: t.port,
    user: t.user,
    keyPath: t.keyPath,
    keyField: node.ssh?.privateKeyPath ? `nodes[${node.name}].ssh.privateKeyPath` : "ssh.privateKeyPath",
  };
}

/** Open an SSH session to a node (through the bastion when the spec has one). */
export async function connectNode(spec: ClusterSpec, node: NodeSpec, opts: ConnectOptions = {}): Promise<Remote> {
  const knownHosts = readKnownHosts(spec, opts);
  const hop = nodeHop(spec, node);
  const bastion = bastionHop(spec);
  if (!bastion) return wrap(await openClient(spec, hop, knownHosts, opts), hop, opts);
  const jump = await openClient(spec, bastion, knownHosts, opts);
  try {
    // Bounded like every channel: a bastion that never answers the forwarding request (its own
    // connect to the node hangs, say) fails naming both, instead of hanging the command.
    const bound = opts.sessionTimeoutMs ?? SESSION_TIMEOUT_MS;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stream = await new Promise<NodeJS.ReadableStream>((res, rej) => {
      timer = setTimeout(() => rej(new Error(`no answer within ${seconds(bound)}`)), bound);
      jump.forwardOut("127.0.0.1", 0, hop.host, hop.port, (err, ch) => {
        clearTimeout(timer);
        if (err) rej(err);
        else res(ch);
      });
    }).catch((e: Error) => {
      throw new UserError(
        `${node.name}: the bastion ${bastion.host} could not open a connection to ${hop.host}:${hop.port}: ${e.message}. Check that the bastion can reach the node and allows TCP forwarding.`,
        EXIT.failed,
      );
    });
    const client = await openClient(spec, hop, knownHosts, opts, stream);
    client.on("close", () => jump.end());
    return wrap(client, hop, opts, jump);
  } catch (e) {
    jump.end();
    throw e;
  }
}

/** Connect to the bastion itself (trust-hosts records its key too). */
export async function connectBastion(spec: ClusterSpec, opts: ConnectOptions = {}): Promise<Remote | undefined> {
  const hop = bastionHop(spec);
  if (!hop) return undefined;
  return wrap(await openClient(spec, hop, readKnownHosts(spec, opts), opts), hop, opts);
}

function wrap(client: Client, hop: Hop, connectOpts: ConnectOptions, jump?: Client): Remote {
  const isRoot = hop.user === "root";
  const withSudo = (cmd: string, sudo?: boolean) => (sudo && !isRoot ? `sudo -n -- sh -c ${sq(cmd)}` : cmd);
  const sessionTimeout = connectOpts.sessionTimeoutMs ?? SESSION_TIMEOUT_MS;

  /**
   * Ask for a channel (exec or SFTP) with a bound: a server that accepted the connection but
   * never answers fails with one paragraph naming the host, instead of hanging. A channel that
   * arrives after the bound is closed at once. `use` runs synchronously in ssh2's callback: a
   * channel's 'exit' is a plain event, and a fast command's exit status can arrive in the same
   * read as the channel itself, before a later (promise) callback could listen.
   */
  const openChannel = <C, T = C>(
    what: string,
    open: (cb: (err: Error | undefined, ch: C) => void) => void,
    discard: (ch: C) => void = (ch) => (ch as { close?: () => void })?.close?.(),
    use: (ch: C) => Promise<T> = (ch) => Promise.resolve(ch as unknown as T),
  ): Promise<T> =>
    new Promise<T>((res, rej) => {
      let late = false;
      const timer = setTimeout(() => {
        late = true;
        rej(
          new UserError(
            `${hop.name} (${hop.user}@${hop.host}:${hop.port}): the SSH server opened no session for ${what} within ${seconds(sessionTimeout)}; the connection is up, but the host does not start sessions (still booting, overloaded, or sshd's session limit reached). Check the host and try again.`,
            EXIT.failed,
          ),
        );
      }, sessionTimeout);
      try {
        open((err, ch) => {
          clearTimeout(timer);
          if (late) return ch && discard(ch);
          if (err)
            return rej(new UserError(`${hop.name}: cannot start ${what} over SSH: ${err.message}.`, EXIT.failed));
          use(ch).then(res, rej);
        });
      } catch (e) {
        clearTimeout(timer);
        rej(new UserError(`${hop.name}: cannot start ${what} over SSH: ${(e as Error).message}.`, EXIT.failed));
      }
    });

  let sftpP: Promise<SFTPWrapper> | undefined;
  const sftp = () => {
    sftpP ??= openChannel<SFTPWrapper>(
      "SFTP",
      (cb) => client.sftp((err, s) => cb(err, s)),
      (s) => s.end(),
    );
    return sftpP;
  };

  const execStream = (cmd: string, opts: StreamOptions = {}): Promise<ExecResult> =>
    openChannel<ClientChannel, ExecResult>(
      "a command",
      (cb) => client.exec(withSudo(cmd, opts.sudo), (err, ch) => cb(err, ch)),
      undefined,
      (ch) =>
        new Promise<ExecResult>((res, rej) => {
          const out: Buffer[] = [];
          const errOut: Buffer[] = [];
          let code = -1;
          let timer: ReturnType<typeof setTimeout> | undefined;
          let timedOut = false;
          if (opts.timeoutMs) {
            timer = setTimeout(() => {
              timedOut = true;
              // sshd keeps the channel until the command exits; do not wait for it.
              ch.signal("KILL");
              ch.close();
              rej(
                new UserError(
                  `${hop.name}: command timed out after ${((opts.timeoutMs ?? 0) / 1000).toFixed(1)} s: ${firstWords(cmd)}`,
                  EXIT.failed,
                ),
              );
            }, opts.timeoutMs);
          }
          let sinkError: unknown;
          ch.on("data", (d: Buffer) => {
            if (opts.onStdoutBytes) {
              if (sinkError) return;
              try {
                opts.onStdoutBytes(d);
              } catch (e) {
                // The receiver failed (say, the local disk is full): stop the command, report that.
                sinkError = e;
                ch.signal("KILL");
                ch.close();
              }
              return;
            }
            out.push(d);
            opts.onStdout?.(d.toString());
          });
          ch.stderr.on("data", (d: Buffer) => {
            errOut.push(d);
            opts.onStderr?.(d.toString());
          });
          ch.on("exit", (c: number | null) => {
            code = c ?? -1;
          });
          ch.on("close", () => {
            if (timer) clearTimeout(timer);
            const result = { code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(errOut).toString() };
            if (sinkError) rej(sinkError);
            else if (!timedOut) res(result);
          });
          if (opts.stdin !== undefined) ch.end(opts.stdin);
          else ch.end();
        }),
    );

  const remote: Remote = {
    name: hop.name,
    host: hop.host,
    user: hop.user,
    exec: (cmd, opts) => execStream(cmd, { ...opts }),
    execStream,
    async run(cmd, opts = {}) {
      const r = await execStream(cmd, opts);
      if (r.code !== 0) {
        const detail = (r.stderr.trim() || r.stdout.trim()).split("\n").slice(-5).join(" | ");
        const sudoHint = /sudo: a (terminal|password) is required/.test(r.stderr)
          ? ` The SSH user ${hop.user} needs passwordless sudo (NOPASSWD) on ${hop.name}.`
          : "";
        throw new UserError(
          `${hop.name}: ${opts.what ?? firstWords(cmd)} failed (exit ${r.code}): ${detail}.${sudoHint}`,
          EXIT.failed,
        );
      }
      return r.stdout;
    },
    async get(remotePath, localPath, mode = 0o600) {
      const s = await sftp();
      // "wx": never overwrite a local file (snapshots are evidence).
      const dest = createWriteStream(localPath, { flags: "wx", mode });
      await pipeline(s.createReadStream(remotePath), dest);
    },
    async download(remotePath, localPath, opts = {}) {
      const s = await sftp();
      return parallelDownload(s, remotePath, localPath, opts, hop.name);
    },
    async put(source, remotePath, opts = {}) {
      const mode = opts.mode ?? 0o600;
      if (!opts.sudo) return sftpWrite(await sftp(), source, remotePath, mode);
      // Files for root are written by root: staged in a private directory of the SSH user,
      // then installed (root-owned, with the mode) by root.
      await withStagingDir(remote, async (dir) => {
        const staged = `${dir}/upload`;
        await sftpWrite(await sftp(), source, staged, 0o600, true);
        await remote.run(
          `install -o 0 -g 0 -m ${mode.toString(8).padStart(4, "0")} -- ${sq(staged)} ${sq(remotePath)}`,
          { sudo: true, what: `installing ${remotePath}`, timeoutMs: 120_000 },
        );
      });
    },
    putHashed(localPath, remotePath, opts = {}) {
      const mode = (opts.mode ?? 0o600).toString(8).padStart(4, "0");
      const script = `set -o pipefail; umask 077; if command -v openssl >/dev/null 2>&1; then h() { openssl dgst -sha256 -r; }; else h() { sha256sum; }; fi; tee -- "$1" | h; chmod ${mode} -- "$1"`;
      const cmd = `bash -c ${sq(script)} kubeadm-ha-upload ${sq(remotePath)}`;
      return openChannel<ClientChannel, string>(
        "an upload",
        (cb) => client.exec(cmd, (err, ch) => cb(err, ch)),
        undefined,
        (ch) =>
          new Promise<string>((res, rej) => {
            const out: Buffer[] = [];
            const errOut: Buffer[] = [];
            let code = -1;
            ch.on("data", (d: Buffer) => out.push(d));
            ch.stderr.on("data", (d: Buffer) => errOut.push(d));
            ch.on("exit", (c: number | null) => {
              code = c ?? -1;
            });
            ch.on("close", () => {
              const hex = Buffer.concat(out).toString().trim().split(/\s+/)[0] ?? "";
              if (code !== 0 || !/^[0-9a-f]{64}$/.test(hex))
                return rej(
                  new UserError(
                    `${hop.name}: upload to ${remotePath} failed (exit ${code}): ${Buffer.concat(errOut).toString().trim().slice(0, 300)}`,
                    EXIT.failed,
                  ),
                );
              res(hex);
            });
            pipeline(createReadStream(localPath, { highWaterMark: 256 * 1024 }), ch).catch((e: Error) => {
              ch.close();
              rej(new UserError(`${hop.name}: upload to ${remotePath} failed: ${e.message}`, EXIT.failed));
            });
          }),
      );
    },
    async sha256(remotePath, opts = {}) {
      const out = await remote.run(`sha256sum -- ${sq(remotePath)}`, {
        sudo: opts.sudo,
        what: `sha256 of ${remotePath}`,
      });
      const hex = out.trim().split(/\s+/)[0] ?? "";
      if (!/^[0-9a-f]{64}$/.test(hex))
        throw new UserError(`${hop.name}: unexpected sha256sum output for ${remotePath}: ${out.trim()}`, EXIT.failed);
      return hex;
    },
    close() {
      client.end();
      jump?.end();
    },
  };
  return remote;
}

/** Write content or a local file over SFTP with `mode`; `exclusive` refuses an existing file. */
async function sftpWrite(
  s: SFTPWrapper,
  source: { path: string } | { content: string | Buffer },
  remotePath: string,
  mode: number,
  exclusive = false,
): Promise<void> {
  const ws = s.createWriteStream(remotePath, { mode, flags: exclusive ? "wx" : "w" });
  if ("path" in source) await pipeline(createReadStream(source.path), ws);
  else
    await pipeline(async function* () {
      yield typeof source.content === "string" ? Buffer.from(source.content) : source.content;
    }, ws);
  // The open's mode is filtered by the server's umask, and an existing file keeps its own.
  await new Promise<void>((res, rej) => s.chmod(remotePath, mode, (e) => (e ? rej(e) : res())));
}

/** Default name of staging directories: /tmp/kubeadm-ha-upload.XXXXXXXXXX on the node. */
export const STAGING_NAME = "kubeadm-ha-upload";

/**
 * The one way files are staged on a node: `mktemp -d` run as the SSH user (an exclusive
 * create, 0700, owned by that user, a name nobody can guess). Nothing of another user can
 * be waiting inside it, so what root later installs or runs from there is exactly what was
 * written. Pair with removeStagingDir in a `finally`, or use withStagingDir.
 */
export async function makeStagingDir(remote: Remote, opts: { parent?: string; name?: string } = {}): Promise<string> {
  const prefix = `${opts.parent ?? "/tmp"}/${opts.name ?? STAGING_NAME}.`;
  const dir = (
    await remote.run(`umask 077 && mktemp -d ${sq(`${prefix}XXXXXXXXXX`)}`, {
      what: "making a private staging directory (mktemp -d)",
      timeoutMs: 30_000,
    })
  ).trim();
  if (!dir.startsWith(prefix) || !/^[A-Za-z0-9]{10}$/.test(dir.slice(prefix.length)))
    throw new UserError(
      `${remote.name}: mktemp -d printed ${JSON.stringify(dir)}, not a directory under ${prefix}*.`,
      EXIT.failed,
    );
  return dir;
}

/** Remove a directory made by makeStagingDir (as the SSH user, who owns it); never throws. */
export async function removeStagingDir(remote: Remote, dir: string): Promise<void> {
  if (!/\/[A-Za-z0-9_-]+\.[A-Za-z0-9]{10}$/.test(dir)) return;
  await remote.exec(`rm -rf -- ${sq(dir)}`, { timeoutMs: 30_000 }).catch(() => undefined);
}

/** makeStagingDir, `fn` with it, and the directory removed afterwards, also when `fn` fails. */
export async function withStagingDir<T>(
  remote: Remote,
  fn: (dir: string) => Promise<T>,
  opts: { parent?: string; name?: string } = {},
): Promise<T> {
  const dir = await makeStagingDir(remote, opts);
  try {
    return await fn(dir);
  } finally {
    await removeStagingDir(remote, dir);
  }
}

const sftpCall = <T>(f: (cb: (err: Error | null | undefined, v: T) => void) => void): Promise<T> =>
  new Promise<T>((res, rej) => f((err, v) => (err ? rej(err) : res(v))));

/**
 * ssh2's fastGet idea (a window of reads in flight at increasing offsets), but written through
 * an exclusive temp file and delivered in order to `onData`, so callers hash while the bytes arrive.
 */
async function parallelDownload(
  s: SFTPWrapper,
  remotePath: string,
  localPath: string,
  opts: DownloadOptions,
  host: string,
): Promise<{ bytes: number }> {
  // Few large reads, not many small ones: every SFTP request is a packet that Bun's socket
  // writes one by one, which made 32 KiB reads cost ~1.6x scp for a 370 MB snapshot (1.05x at
  // 256 KiB, measured on a loopback sshd). OpenSSH's sftp-server answers reads up to 256 KiB
  // and ssh2 clamps a read to the server's limit; readRange asks again for what a shorter
  // answer left out, so a server with a lower limit still gets every byte.
  const concurrency = Math.max(1, opts.concurrency ?? 16);
  const chunkSize = Math.max(4096, opts.chunkSize ?? 256 * 1024);
  const out = createExclusiveFile(localPath, opts.mode ?? 0o600);
  let handle: Buffer | undefined;
  try {
    handle = await sftpCall<Buffer>((cb) => s.open(remotePath, "r", cb));
    const h = handle;
    const size = (await sftpCall<{ size: number }>((cb) => s.fstat(h, cb))).size;
    const done = new Map<number, Buffer>();
    let next = 0; // next offset to request
    let written = 0; // bytes flushed to the file, in order
    const flush = () => {
      for (let b = done.get(written); b; b = done.get(written)) {
        done.delete(written);
        out.write(b, written);
        opts.onData?.(b, written, size);
        written += b.length;
      }
    };
    /** Read [off, off+len) fully (a server may answer a read with fewer bytes). */
    const readRange = async (off: number, len: number): Promise<Buffer> => {
      const buf = Buffer.allocUnsafe(len);
      let got = 0;
      while (got < len) {
        const n = await new Promise<number>((res, rej) =>
          s.read(h, buf, got, len - got, off + got, (err, bytes) => (err ? rej(err) : res(bytes))),
        );
        if (!n)
          throw new UserError(
            `${host}: ${remotePath} ended at ${off + got} bytes, expected ${size}; it changed during the download.`,
            EXIT.failed,
          );
        got += n;
      }
      return buf;
    };
    const worker = async () => {
      while (next < size) {
        const off = next;
        const len = Math.min(chunkSize, size - off);
        next += len;
        done.set(off, await readRange(off, len));
        flush();
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, Math.ceil(size / chunkSize) || 1) }, worker));
    flush();
    if (written !== size)
      throw new UserError(`${host}: downloaded ${written} of ${size} bytes of ${remotePath}.`, EXIT.failed);
    out.commit();
    return { bytes: size };
  } finally {
    if (handle) s.close(handle, () => undefined);
    out.discard();
  }
}

const firstWords = (cmd: string): string => {
  const one = cmd.replace(/\s+/g, " ").trim();
  return one.length > 80 ? `${one.slice(0, 77)}...` : one;
};

/** sha256 (hex) of a local file, streamed. */
export async function localSha256(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest("hex");
}
