// Running the commands as a user does (a fresh bun process each), and the specs and files
// the command-line tests share.
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dir, "../..");
export const BUN = join(ROOT, "node_modules/.bin/bun");

export interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * `bun <args>` from `cwd` (default the checkout), with CLUSTER_SPEC and KUBEADM_HA_DEBUG unset
 * unless `env` sets them; stdin is not a terminal.
 */
export async function runBun(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string | undefined> } = {},
): Promise<Ran> {
  const env = { ...process.env, CLUSTER_SPEC: undefined, KUBEADM_HA_DEBUG: undefined, ...opts.env };
  const proc = Bun.spawn([BUN, ...args], {
    cwd: opts.cwd ?? ROOT,
    env,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr };
}

/** Run `f` over `items` a few at a time (each command is a fresh bun process). */
export async function eachLimited<T, R>(items: T[], f: (item: T) => Promise<R>, limit = 4): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < items.length; i = next++) out[i] = await f(items[i]!);
  };
  await Promise.all(Array.from({ length: limit }, worker));
  return out;
}

/** A command as the tests run it: its name after `bun run`, and the argv that makes it otherwise valid. */
export interface CommandCase {
  name: string;
  argv: string[];
  /** Contacts hosts (refuses the example spec unless named with --spec). */
  hosts: boolean;
  json: boolean;
}

/**
 * Every command, with the arguments it needs besides the spec; changes are avoided by --dry-run
 * where a command has one. `snapshot` is a real etcd snapshot (etcd:status and etcd:restore check
 * the file before anything else).
 */
export function commandCases(snapshot: string): CommandCase[] {
  const c = (name: string, argv: string[], hosts = true, json = true): CommandCase => ({ name, argv, hosts, json });
  return [
    c("synth", [join(ROOT, "main.ts")], false),
    c("validate", ["scripts/validate.ts"], false),
    c("secrets", ["scripts/secrets.ts"], false),
    c("trust-hosts", ["scripts/trust-hosts.ts"]),
    c("preflight", ["scripts/preflight.ts"]),
    c("verify", ["scripts/verify.ts"]),
    c("chaos", ["scripts/chaos.ts", "--dry-run"]),
    c("drift", ["scripts/drift.ts"]),
    c("kubeconfig", ["scripts/kubeconfig.ts"]),
    c("etcd:backup", ["scripts/etcd-backup.ts"]),
    c("etcd:status", ["scripts/etcd-status.ts", snapshot, "--node", "cp-1"]),
    c("etcd:restore", ["scripts/etcd-restore.ts", snapshot, "--dry-run"]),
    c("etcd:patch-manifest", ["scripts/etcd-patch-manifest.ts", "--data-dir", "/var/lib/etcd-restored", "--dry-run"]),
    c("etcd:recover", ["scripts/etcd-recover.ts", "--from", "cp-1", "--dry-run"]),
    c("node:replace", ["scripts/node-replace.ts", "cp-2", "--dry-run"]),
    c("node:remove", ["scripts/node-remove.ts", "cp-9", "--dry-run"]),
    c("certs:renew", ["scripts/certs-renew.ts", "--dry-run"]),
    c("node:reboot", ["scripts/node-reboot.ts", "cp-2", "--dry-run"]),
    c("deploy", ["scripts/tf.ts", "deploy"], true, false),
    c("diff", ["scripts/tf.ts", "diff"], true, false),
    c("destroy", ["scripts/tf.ts", "destroy"], true, false),
  ];
}

/**
 * A spec whose hosts are never reached: every node's SSH goes to 127.0.0.1:1 (nothing listens;
 * a refused connection at once), with a real client key and a known_hosts path that does not exist.
 */
export function deadSpec(dir: string): string {
  mkdirSync(dir, { recursive: true });
  const key = join(dir, "id_ed25519");
  const r = spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", key]);
  if (r.status !== 0) throw new Error(`ssh-keygen: ${r.stderr}`);
  const file = join(dir, "dead.yaml");
  writeFileSync(
    file,
    `name: dead
kubernetes: { version: "1.31.4", packages: { source: preinstalled } }
ssh: { user: root, port: 1, privateKeyPath: id_ed25519, knownHostsPath: missing/known_hosts }
controlPlaneEndpoint: { vip: 10.0.0.10, interface: eth0, prefix: 24 }
nodes:
  - { name: cp-1, address: 10.0.0.11, role: control-plane, ssh: { host: 127.0.0.1 } }
  - { name: cp-2, address: 10.0.0.12, role: control-plane, ssh: { host: 127.0.0.1 } }
  - { name: cp-3, address: 10.0.0.13, role: control-plane, ssh: { host: 127.0.0.1 } }
`,
  );
  return file;
}

/** A real etcd snapshot with a few keys: a one-member etcd on loopback ports, `etcdctl snapshot save`. */
export async function makeSnapshot(dir: string): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const port = 20000 + Math.floor(Math.random() * 20000);
  const endpoint = `http://127.0.0.1:${port}`;
  const etcd = Bun.spawn(
    [
      "etcd",
      "--name",
      "snap",
      "--data-dir",
      join(dir, "data"),
      "--listen-client-urls",
      endpoint,
      "--advertise-client-urls",
      endpoint,
      "--listen-peer-urls",
      `http://127.0.0.1:${port + 1}`,
      "--initial-advertise-peer-urls",
      `http://127.0.0.1:${port + 1}`,
      "--initial-cluster",
      `snap=http://127.0.0.1:${port + 1}`,
    ],
    { stdout: "ignore", stderr: "ignore" },
  );
  const ctl = (...args: string[]) =>
    spawnSync("etcdctl", ["--endpoints", endpoint, ...args], { env: { ...process.env, ETCDCTL_API: "3" } });
  try {
    for (let i = 0; ctl("endpoint", "health").status !== 0; i++) {
      if (i > 100) throw new Error("etcd did not start for the test snapshot");
      await Bun.sleep(100);
    }
    for (const k of ["a", "b", "c"]) ctl("put", `test/${k}`, k);
    const file = join(dir, "test-cp-1-20250101T000000Z.db");
    const saved = ctl("snapshot", "save", file);
    if (saved.status !== 0) throw new Error(`etcdctl snapshot save: ${saved.stderr}`);
    return file;
  } finally {
    etcd.kill();
    await etcd.exited;
  }
}

/** The JSON envelope every --json prints. */
export interface Envelope {
  ok: boolean;
  command: string;
  data: any;
  error: { message: string; code: number } | null;
}

/** stdout as the envelope; fails with what was printed when it is not one. */
export function envelopeOf(r: Ran): Envelope {
  let e: Envelope;
  try {
    e = JSON.parse(r.stdout) as Envelope;
  } catch {
    throw new Error(`not JSON (exit ${r.code}): ${r.stdout.slice(0, 300)} / ${r.stderr.slice(0, 300)}`);
  }
  if (Object.keys(e).sort().join(",") !== "command,data,error,ok")
    throw new Error(`not the envelope: ${r.stdout.slice(0, 300)}`);
  return e;
}

/** No stack trace and no internal error in `text`. */
export function clean(text: string): boolean {
  return !/^\s+at /m.test(text) && !text.includes("internal error");
}
