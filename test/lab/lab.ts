// The lab: real test hosts on this machine. Each host is a systemd-nspawn container booted
// with real systemd on an overlayfs whose lower dir is the OS root (Debian 12: this machine's
// `/`, so every package installed here is installed there; Debian 13: a debootstrapped root,
// debian-root.ts) and whose upper dir is a tmpfs (so each host has its own /etc, /var/lib
// and /run, and nothing it writes survives `down`). The lab spec logs in as a sudo user, as
// users' hosts do; root logs in by key too, for the lab's own plumbing. Hosts sit in their own network namespace
// on the bridge kha-br0 (198.18.0.0/24, no route, NAT or forwarding to anything else).
// Control planes run a three-member TLS etcd and an apiserver stand-in from static pod
// manifests, run by the kubelet stand-in; kubeadm/kubectl/kubelet are stand-ins too
// (test/lab/standins). test/lab/README.md has the measurements behind the flags.
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  chmodSync,
  chownSync,
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { dirname, resolve } from "node:path";
import { stringify } from "yaml";
import { apiServerArgs } from "../../lib/render/kubeadm.ts";
import { ensureSecrets } from "../../lib/secrets.ts";
import { shq } from "../../lib/shell.ts";
import { parseSpec } from "../../lib/spec/load.ts";
import { aptRepoMissing, buildLabAptPackages, type LabAptRepo, startLabAptRepo, stopLabGpg } from "./apt-repo.ts";
import { type LabOs, labOsFromEnv, labRoot, rootMissing } from "./debian-root.ts";
import { apiserverManifest, etcdManifest } from "./manifests.ts";
import { makeLabPki, makeNodePki } from "./pki.ts";
import { alive, must, type RunResult, run, sleep, waitFor, which } from "./sys.ts";

export type { LabOs } from "./debian-root.ts";
export type { RunResult } from "./sys.ts";

export const PROJECT_ROOT = resolve(import.meta.dir, "../..");
const STATE_DIR = `${PROJECT_ROOT}/.kubeadm-ha/lab`;
/** tmpfs holding every host's overlay (upper, work, merged) and the lab's CA material. */
const RUNTIME_DIR = "/run/kha-lab";

export const LAB = {
  /** Every netns, machine, veth, cgroup and mount source the lab creates starts with this. */
  prefix: "kha-",
  bridge: "kha-br0",
  /** The machine's own address on the bridge, so tests here reach hosts and the VIP. */
  gateway: "198.18.0.1",
  prefixLength: 24,
  vip: "198.18.0.10",
  port: 8443,
  interface: "eth0",
  kubernetesVersion: "1.31.4",
  /** The lab spec's SSH user: not root, passwordless sudo, the lab key (what users' hosts have). */
  user: "kha",
} as const;

export const labPaths = {
  stateDir: STATE_DIR,
  spec: `${STATE_DIR}/cluster.yaml`,
  key: `${STATE_DIR}/id_ed25519`,
  publicKey: `${STATE_DIR}/id_ed25519.pub`,
  knownHosts: `${STATE_DIR}/known_hosts`,
  /** etcdctl client material for reaching the lab's etcd from this machine. */
  etcdCa: `${STATE_DIR}/etcd/ca.crt`,
  etcdCert: `${STATE_DIR}/etcd/client.crt`,
  etcdKey: `${STATE_DIR}/etcd/client.key`,
  runtimeDir: RUNTIME_DIR,
  /** The lab cluster's kubeadm-ha secrets (cluster CA, passwords, token), as `bun run secrets` keeps them. */
  secretsDir: `${STATE_DIR}/secrets`,
} as const;

export interface LabNode {
  name: string;
  address: string;
  role: "control-plane" | "worker";
}

export interface LabOptions {
  /** Control planes cp-1..cp-N at 198.18.0.11.. (default 3). */
  controlPlanes?: number;
  /** Workers worker-1..worker-N at 198.18.0.21.. (default 1). */
  workers?: number;
  /** Progress lines; default: stderr. */
  log?: (host: string, phase: string, message: string) => void;
  /** Rebuild even when a healthy lab is up (a test that needs untouched hosts). */
  fresh?: boolean;
  /** How long to wait for another process that holds the lab (default 15 min). */
  waitMs?: number;
  /**
   * "running" (default): etcd and the apiserver stand-in run from /etc/kubernetes/manifests at once.
   * "pending": hosts as before kubeadm: the manifests wait in /etc/kha-lab/pending-manifests and the
   * kubeadm stand-in starts them on init/join, growing etcd one member at a time as kubeadm does
   * (what the end-to-end apply needs).
   */
  kubeadm?: "running" | "pending";
  /** The hosts' OS: "debian12" (this machine's root) or "debian13" (built once); default KHA_LAB_OS, else debian12. */
  os?: LabOs;
  /**
   * The lab spec's kubernetes.packages.source. "apt" (default, the product's default): the spec
   * installs from the lab's signed apt repository on 198.18.0.1, and "pending" hosts have no
   * kubeadm, kubelet or kubectl until prepare installs them from it. "preinstalled": the stand-ins
   * sit in /usr/local/bin from the start and the spec checks them. "running" hosts always carry
   * the stand-ins in /usr/local/bin (hosts after a deploy; lab tests set their version with
   * /etc/kha-lab/kubernetes-version).
   */
  packages?: LabPackages;
  /** The lab spec's loadBalancer.mode; default KHA_LAB_LB, else keepalived-haproxy. */
  lb?: LabLb;
}

export type LabPackages = "apt" | "preinstalled";

/** Load-balancer modes the lab runs (kube-vip cannot: no kube-vip binary, no real API to hold its lease in). */
export const LAB_LBS = ["keepalived-haproxy", "static-pod"] as const;
export type LabLb = (typeof LAB_LBS)[number];
export const isLabLb = (v: string): v is LabLb => (LAB_LBS as readonly string[]).includes(v);
export function labLbFromEnv(env: Record<string, string | undefined> = process.env): LabLb {
  const v = env.KHA_LAB_LB?.trim() || "keepalived-haproxy";
  if (!isLabLb(v)) throw new Error(`KHA_LAB_LB is "${v}"; use one of ${LAB_LBS.join(", ")}`);
  return v;
}
/** The keepalived image the lab spec names in static-pod mode: never pulled (the kubelet stand-in runs the host's keepalived). */
export const LAB_KEEPALIVED_IMAGE = "registry.example.com/keepalived:2.2.8";

export interface LabUpResult {
  nodes: LabNode[];
  os: LabOs;
  /** Seconds until every host answered SSH with a verified host key. */
  sshReadySeconds: number;
  /** Seconds until etcd reported every member healthy (= the whole `up`). */
  seconds: number;
  alreadyUp: boolean;
}

export interface LabHostStatus {
  name: string;
  address: string;
  netns: string;
  vipHolder: boolean;
  sshOk: boolean;
  etcdHealthy: boolean;
}

export interface LabStatus {
  vip: string;
  port: number;
  /** The hosts' OS (absent when the lab is down). */
  os?: LabOs;
  hosts: LabHostStatus[];
}

/** `lab status --json`'s data: the status and the lab spec's absolute path, for --spec or CLUSTER_SPEC. */
export function labStatusData(st: LabStatus): LabStatus & { spec: string } {
  return { spec: labPaths.spec, ...st };
}

/** `lab env`'s one line: every command then targets the lab (`eval "$(bun run lab env)"`). */
export function specExport(): string {
  return `export CLUSTER_SPEC=${shq(labPaths.spec)}`;
}

/** The last line of `lab up`: how to point the commands at the lab. */
export function labTargetHint(): string {
  return `target the lab: eval "$(bun run lab env)" (sets CLUSTER_SPEC), or pass --spec ${labPaths.spec} to each command`;
}

/** Thrown when the lab cannot run here (not root, a tool missing ...). */
export class LabUnavailable extends Error {
  override name = "LabUnavailable";
}

const t0 = Date.now();
function defaultLog(host: string, phase: string, message: string): void {
  const s = ((Date.now() - t0) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`[${s}s] ${host.padEnd(12)} ${phase.padEnd(10)} ${message}\n`);
}

export function labNodes(opts: Pick<LabOptions, "controlPlanes" | "workers"> = {}): LabNode[] {
  const cps = opts.controlPlanes ?? 3;
  const ws = opts.workers ?? 1;
  if (!Number.isInteger(cps) || cps < 1 || cps > 9) {
    throw new RangeError(`controlPlanes must be a whole number from 1 to 9 (got ${cps})`);
  }
  if (!Number.isInteger(ws) || ws < 0 || ws > 9) {
    throw new RangeError(`workers must be a whole number from 0 to 9 (got ${ws})`);
  }
  const nodes: LabNode[] = [];
  for (let i = 1; i <= cps; i++) nodes.push({ name: `cp-${i}`, address: `198.18.0.${10 + i}`, role: "control-plane" });
  for (let i = 1; i <= ws; i++) nodes.push({ name: `worker-${i}`, address: `198.18.0.${20 + i}`, role: "worker" });
  return nodes;
}

const netnsOf = (name: string) => `${LAB.prefix}${name}`;
const bareName = (host: string) => (host.startsWith(LAB.prefix) ? host.slice(LAB.prefix.length) : host);
const hostDir = (name: string) => `${RUNTIME_DIR}/hosts/${name}`;
const cgroupDirs = (name: string) => [
  `/sys/fs/cgroup/systemd/${netnsOf(name)}`,
  `/sys/fs/cgroup/unified/${netnsOf(name)}`,
];

/**
 * Where this checkout appears inside every lab host (bound read-only). Not its own path: a
 * checkout under /tmp would be hidden by the /tmp that systemd in each host mounts.
 */
const HOST_PROJECT = "/opt/kubeadm-ha-lab";

/** Bun inside a host: the checkout's own binary, seen through HOST_PROJECT. */
function bunPath(): string {
  const real = realpathSync(`${PROJECT_ROOT}/node_modules/.bin/bun`);
  const root = realpathSync(PROJECT_ROOT);
  return real.startsWith(`${root}/`) ? `${HOST_PROJECT}${real.slice(root.length)}` : real;
}

// ---------------------------------------------------------------------------------------------
// Prerequisites

/** Why the lab cannot run here (on `os`, default KHA_LAB_OS), or undefined when it can. */
export function labMissing(os: LabOs = labOsFromEnv()): string | undefined {
  if (process.getuid?.() !== 0) return "the lab needs root (network namespaces, overlay mounts, systemd-nspawn)";
  for (const tool of ["systemd-nspawn", "ip", "nsenter", "etcd", "etcdctl", "openssl", "ssh", "ssh-keygen", "sshd"]) {
    if (!which(tool))
      return `${tool} is not installed (apt-get install systemd-container iproute2 etcd-server etcd-client openssl openssh-server openssh-client)`;
  }
  for (const dir of ["/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"]) {
    if (!existsSync(`${dir}/cgroup.procs`))
      return `${dir} is not mounted (the lab expects the cgroup v1 hybrid layout)`;
  }
  if (!readFileSync("/proc/filesystems", "utf8").includes("overlay")) return "the kernel has no overlayfs";
  if (!existsSync(`${PROJECT_ROOT}/node_modules/.bin/bun`)) return "node_modules/.bin/bun is missing (run npm ci)";
  return aptRepoMissing() ?? rootMissing(os);
}

/**
 * Guard for lab tests. When the lab can run: { skip: false }. When it cannot: throws if
 * CI=true (a CI run must not pass by skipping), else returns { skip: true, reason }.
 */
export function requireLab(): { skip: boolean; reason: string } {
  const missing = labMissing();
  if (!missing) return { skip: false, reason: "" };
  if (process.env.CI === "true") throw new LabUnavailable(`lab tests cannot run: ${missing}`);
  process.stderr.write(`skipping lab tests: ${missing}\n`);
  return { skip: true, reason: missing };
}

// ---------------------------------------------------------------------------------------------
// Host file system

/** Write a file inside a host's overlay, refusing to follow a symlink out of it. */
function put(root: string, path: string, content: string | Uint8Array, mode = 0o644): void {
  const full = `${root}${path}`;
  mkdirSync(dirname(full), { recursive: true });
  const parent = realpathSync(dirname(full));
  if (parent !== root && !parent.startsWith(`${root}/`)) {
    throw new Error(`refusing to write ${path}: its directory resolves outside the host (${parent})`);
  }
  rmSync(full, { force: true });
  writeFileSync(full, content, { mode });
  chmodSync(full, mode);
}

function remove(root: string, path: string): void {
  rmSync(`${root}${path}`, { force: true, recursive: true });
}

/** Services installed on this machine that must not start in hosts (our phases enable what they need). */
const DISABLED_UNITS = [
  "multi-user.target.wants/etcd.service",
  "multi-user.target.wants/postgresql.service",
  "multi-user.target.wants/haproxy.service",
  "multi-user.target.wants/keepalived.service",
  "multi-user.target.wants/e2scrub_reap.service",
  "timers.target.wants/apt-daily-upgrade.timer",
  "timers.target.wants/apt-daily.timer",
  "timers.target.wants/dpkg-db-backup.timer",
  "timers.target.wants/e2scrub_all.timer",
  "timers.target.wants/fstrim.timer",
  "timers.target.wants/man-db.timer",
];

interface HostContext {
  nodes: LabNode[];
  kubeadm: "running" | "pending";
  /** The stand-ins go to /usr/local/bin (else the packages from the lab's apt repository provide them). */
  standinsPreinstalled: boolean;
  /** The lab CA the apt repository's certificate is signed by (PEM, subject hash): every host trusts it. */
  labCa: { pem: string; hash: string };
  publicKey: string;
  bun: string;
  pkiDir?: string;
  clusterCa: string;
  /** The apiserver flags kubeadm writes from the lab spec (apiServer.extraArgs), for hosts it "ran" on. */
  apiServerArgs: Record<string, string>;
}

/**
 * A login user with passwordless sudo and the lab key, as cloud images have (the spec's
 * `ssh.user`): written into the host's passwd/shadow/group directly, with a uid free in its root.
 */
function addSudoUser(root: string, user: string, publicKey: string): void {
  const table = (file: string) =>
    readFileSync(`${root}${file}`, "utf8")
      .split("\n")
      .filter((l) => l && !l.startsWith(`${user}:`));
  const passwd = table("/etc/passwd");
  const group = table("/etc/group");
  const taken = new Set([...passwd, ...group].map((l) => Number(l.split(":")[2])));
  let id = 1000;
  while (taken.has(id)) id++;
  put(
    root,
    "/etc/passwd",
    `${[...passwd, `${user}:x:${id}:${id}:lab sudo user:/home/${user}:/bin/bash`].join("\n")}\n`,
  );
  put(root, "/etc/group", `${[...group, `${user}:x:${id}:`].join("\n")}\n`);
  // "*": no password and not locked, so sshd lets the key in.
  put(root, "/etc/shadow", `${[...table("/etc/shadow"), `${user}:*:20000:0:99999:7:::`].join("\n")}\n`, 0o640);
  put(root, "/etc/gshadow", `${[...table("/etc/gshadow"), `${user}:!::`].join("\n")}\n`, 0o640);
  for (const f of ["/etc/shadow", "/etc/gshadow"]) chownSync(`${root}${f}`, 0, shadowGid(root));
  put(
    root,
    `/etc/sudoers.d/kha-lab`,
    `# lab host: the spec's SSH user runs the phases with sudo -n\n${user} ALL=(ALL:ALL) NOPASSWD: ALL\n`,
    0o440,
  );
  const home = `/home/${user}`;
  remove(root, home);
  put(root, `${home}/.ssh/authorized_keys`, publicKey, 0o600);
  put(root, `${home}/.bashrc`, "# lab host\n");
  put(root, `${home}/.profile`, "# lab host\n");
  chmodSync(`${root}${home}`, 0o750);
  chmodSync(`${root}${home}/.ssh`, 0o700);
  for (const p of [home, `${home}/.ssh`, `${home}/.ssh/authorized_keys`, `${home}/.bashrc`, `${home}/.profile`])
    chownSync(`${root}${p}`, id, id);
}

/** Name of the lab CA in every host's system CA store. */
const LAB_CA_NAME = "kubeadm-ha-lab-ca";

/**
 * apt on a host knows only the lab's repository (the prepare phase adds it): the OS root's own
 * sources, package lists and caches are hidden in the host's upper layer, so apt never tries
 * another address. The lab CA joins the system CA store in update-ca-certificates' layout
 * (the certificate under /usr/local/share/ca-certificates, its link and hash link in
 * /etc/ssl/certs, appended to the bundle), so apt and curl check the repository's certificate
 * as they would a real mirror's.
 */
function useLabAptOnly(root: string, labCa: { pem: string; hash: string }): void {
  remove(root, "/etc/apt/sources.list");
  for (const dir of ["/etc/apt/sources.list.d", "/var/lib/apt/lists"]) {
    const entries = existsSync(`${root}${dir}`) ? readdirSync(`${root}${dir}`) : [];
    for (const e of entries) if (e !== "partial" && e !== "lock") remove(root, `${dir}/${e}`);
  }
  for (const f of ["pkgcache.bin", "srcpkgcache.bin"]) remove(root, `/var/cache/apt/${f}`);
  const local = `/usr/local/share/ca-certificates/${LAB_CA_NAME}.crt`;
  put(root, local, labCa.pem);
  const bundlePath = "/etc/ssl/certs/ca-certificates.crt";
  const bundle = existsSync(`${root}${bundlePath}`) ? readFileSync(`${root}${bundlePath}`, "utf8") : "";
  put(root, bundlePath, `${bundle}${bundle === "" || bundle.endsWith("\n") ? "" : "\n"}${labCa.pem}`);
  for (const [link, target] of [
    [`/etc/ssl/certs/${LAB_CA_NAME}.pem`, local],
    [`/etc/ssl/certs/${labCa.hash}.0`, `${LAB_CA_NAME}.pem`],
  ] as const) {
    remove(root, link);
    symlinkSync(target, `${root}${link}`);
  }
}

/** The host's `shadow` group (owns /etc/shadow on Debian), from its own /etc/group. */
function shadowGid(root: string): number {
  const line = readFileSync(`${root}/etc/group`, "utf8")
    .split("\n")
    .find((l) => l.startsWith("shadow:"));
  return line ? Number(line.split(":")[2]) : 0;
}

async function prepareHost(node: LabNode, root: string, ctx: HostContext): Promise<string> {
  const standins = `${HOST_PROJECT}/test/lab/standins`;
  const standinsHere = `${PROJECT_ROOT}/test/lab/standins`;
  put(root, "/etc/hostname", `${node.name}\n`);
  put(root, "/etc/machine-id", `${randomBytes(16).toString("hex")}\n`, 0o444);
  const hosts = ctx.nodes.map((n) => `${n.address}\t${n.name}`).join("\n");
  put(root, "/etc/hosts", `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n${hosts}\n`);
  put(root, "/etc/resolv.conf", "");
  remove(root, "/usr/sbin/policy-rc.d");
  for (const unit of DISABLED_UNITS) remove(root, `/etc/systemd/system/${unit}`);

  // SSH: a fresh ed25519 host key (the lower dir's keys are this machine's), root by key only.
  for (const f of readdirSync(`${root}/etc/ssh`)) if (f.startsWith("ssh_host_")) remove(root, `/etc/ssh/${f}`);
  await must([
    "ssh-keygen",
    "-q",
    "-t",
    "ed25519",
    "-N",
    "",
    "-C",
    `root@${node.name}`,
    "-f",
    `${root}/etc/ssh/ssh_host_ed25519_key`,
  ]);
  put(
    root,
    "/etc/ssh/sshd_config.d/kha-lab.conf",
    `# lab host: ${LAB.user} (the lab spec's user, sudo) and root (lab plumbing) log in with the lab key only\nHostKey /etc/ssh/ssh_host_ed25519_key\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nAuthorizedKeysFile .ssh/authorized_keys\n`,
  );
  remove(root, "/root/.ssh");
  mkdirSync(`${root}/root/.ssh`, { mode: 0o700 });
  put(root, "/root/.ssh/authorized_keys", ctx.publicKey, 0o600);
  // A host's root gets its own plain shell start-up files: the machine's (version managers and
  // the like, which bash runs for every ssh command) would otherwise leak in from the lower layer
  // and can block on locks shared between hosts.
  put(root, "/root/.bashrc", "# lab host\n");
  put(root, "/root/.profile", "# lab host\n");
  addSudoUser(root, LAB.user, ctx.publicKey);

  useLabAptOnly(root, ctx.labCa);

  // Stand-ins for the Kubernetes binaries (unless the lab's apt repository is to provide them), and
  // facts they need about the lab.
  if (ctx.standinsPreinstalled) {
    for (const bin of ["kubeadm", "kubectl", "kubelet"]) {
      put(root, `/usr/local/bin/${bin}`, readFileSync(`${standinsHere}/${bin}`), 0o755);
    }
  }
  remove(root, "/var/log/kubeadm-standin.log");
  put(root, "/etc/kha-lab/nodes", `${ctx.nodes.map((n) => `${n.name} ${n.role}`).join("\n")}\n`);
  put(root, LAB_CNI_MANIFEST_PATH, LAB_CNI_MANIFEST);
  // Where the stand-ins find bun and their TypeScript helpers (kubeadm-api.ts) inside the host.
  put(root, "/etc/kha-lab/env", `BUN=${ctx.bun}\nSTANDINS=${standins}\n`);
  put(root, "/etc/kha-lab/cluster-ca.crt", ctx.clusterCa);
  const unit = (description: string, exec: string, extra = "") =>
    `[Unit]\nDescription=${description}\n\n[Service]\n${extra}ExecStart=${exec}\nRestart=always\nRestartSec=1\n\n[Install]\nWantedBy=multi-user.target\n`;
  put(
    root,
    "/etc/systemd/system/kubelet-standin.service",
    unit(
      "LAB STAND-IN: runs /etc/kubernetes/manifests static pods as plain processes (test/lab/standins/kubelet-standin.ts)",
      `${ctx.bun} ${standins}/kubelet-standin.ts`,
      "Environment=HOME=/root BUN_RUNTIME_TRANSPILER_CACHE_PATH=0\nKillMode=mixed\nTimeoutStopSec=15\n",
    ),
  );
  // The kubelet package brings its own unit (and kubeadm's drop-in); the preinstalled stand-in needs one.
  if (ctx.standinsPreinstalled) {
    put(
      root,
      "/etc/systemd/system/kubelet.service",
      unit("LAB STAND-IN: kubelet (records its arguments, then idles)", "/usr/local/bin/kubelet"),
    );
  }
  // Real containerd cannot do anything useful here; this unit lets `systemctl restart containerd` succeed.
  put(
    root,
    "/etc/systemd/system/containerd.service",
    unit("LAB STAND-IN: containerd (idles; the lab runs no containers)", "/bin/sleep infinity"),
  );
  const units = ["kubelet-standin.service", "containerd.service"];
  if (ctx.standinsPreinstalled) units.push("kubelet.service");
  for (const u of units) {
    const link = `${root}/etc/systemd/system/multi-user.target.wants/${u}`;
    rmSync(link, { force: true });
    await must(["ln", "-s", `/etc/systemd/system/${u}`, link]);
  }

  // kubeadm's directories; control planes get the lab's certificates and static pods.
  remove(root, "/etc/kubernetes");
  mkdirSync(`${root}/etc/kubernetes/manifests`, { recursive: true, mode: 0o755 });
  remove(root, "/var/lib/etcd");
  mkdirSync(`${root}/var/lib/etcd`, { mode: 0o700 });
  if (node.role === "control-plane" && ctx.pkiDir) {
    await must(["cp", "-a", `${ctx.pkiDir}/${node.name}/pki`, `${root}/etc/kubernetes/pki`]);
    chmodSync(`${root}/etc/kubernetes/pki`, 0o755);
    const members = ctx.nodes.filter((n) => n.role === "control-plane");
    const dir = ctx.kubeadm === "pending" ? "/etc/kha-lab/pending-manifests" : "/etc/kubernetes/manifests";
    put(root, `${dir}/etcd.yaml`, etcdManifest(node, members), 0o600);
    put(
      root,
      `${dir}/kube-apiserver.yaml`,
      // A pending host gets the flags from kubeadm's config at init/join (the kubeadm stand-in).
      apiserverManifest(
        node,
        ctx.bun,
        `${standins}/apiserver-standin.ts`,
        ctx.kubeadm === "running" ? ctx.apiServerArgs : {},
      ),
      0o600,
    );
  }
  const pub = readFileSync(`${root}/etc/ssh/ssh_host_ed25519_key.pub`, "utf8").trim().split(/\s+/);
  return `${node.address} ${pub[0]} ${pub[1]}`;
}

// ---------------------------------------------------------------------------------------------
// Processes in a host

function cgroupPids(dir: string): number[] {
  const pids: number[] = [];
  const walk = (d: string) => {
    let entries: string[];
    try {
      entries = readdirSync(d);
    } catch {
      return;
    }
    try {
      for (const l of readFileSync(`${d}/cgroup.procs`, "utf8").split("\n")) if (l) pids.push(Number(l));
    } catch {
      /* gone */
    }
    for (const e of entries) {
      try {
        if (statSync(`${d}/${e}`).isDirectory()) walk(`${d}/${e}`);
      } catch {
        /* gone */
      }
    }
  };
  walk(dir);
  return [...new Set(pids)];
}

/** PID (in this namespace) of the host's init, or undefined when the host is not running. */
export function leaderPid(host: string): number | undefined {
  const name = bareName(host);
  for (const pid of cgroupPids(cgroupDirs(name)[0]!)) {
    try {
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      const ns = /^NSpid:\s+(.*)$/m.exec(status)?.[1]?.trim().split(/\s+/) ?? [];
      if (ns.length >= 2 && ns[ns.length - 1] === "1") return pid;
    } catch {
      /* exited */
    }
  }
  return undefined;
}

function nspawnPids(name: string): number[] {
  return cgroupPids(cgroupDirs(name)[0]!).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "systemd-nspawn";
    } catch {
      return false;
    }
  });
}

/** PIDs of the nspawn supervisors of every running lab host (for failure tests). */
export function labNspawnPids(): number[] {
  return labCgroupNames().flatMap((n) => nspawnPids(bareName(n)));
}

const HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/**
 * Run a shell command inside a host (all of its namespaces, as root), without SSH.
 * The command runs in the host's cgroup, so `down` also ends anything it leaves running.
 */
export async function labExec(
  host: string,
  cmd: string,
  opts: { timeoutMs?: number; input?: string } = {},
): Promise<RunResult> {
  const name = bareName(host);
  const pid = leaderPid(name);
  if (!pid) throw new Error(`lab host ${name} is not running (run: bun test/lab/cli.ts up)`);
  const [systemdCg, unifiedCg] = cgroupDirs(name);
  const enter = `echo $$ > ${systemdCg}/cgroup.procs 2>/dev/null; echo $$ > ${unifiedCg}/cgroup.procs 2>/dev/null; exec nsenter -t ${pid} -a -r -w -- /usr/bin/env -i PATH=${HOST_PATH} HOME=/root LANG=C.UTF-8 /bin/bash -c "$0"`;
  return run(["sh", "-c", enter, cmd], { timeoutMs: opts.timeoutMs ?? 120_000, input: opts.input });
}

/**
 * The SSH command line that reaches a host as the lab spec does (its sudo user, key only, host
 * key verified); `user: "root"` for lab plumbing that needs root without sudo.
 */
export function sshArgv(host: string, cmd?: string, opts: { user?: string } = {}): string[] {
  const node = labState()?.nodes.find((n) => n.name === bareName(host));
  const address = node?.address ?? host;
  // biome-ignore format: option pairs
  const argv = [
    "ssh", "-F", "/dev/null", "-i", labPaths.key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
    "-o", "StrictHostKeyChecking=yes", "-o", `UserKnownHostsFile=${labPaths.knownHosts}`,
    "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=3", "-o", "LogLevel=ERROR",
    `${opts.user ?? LAB.user}@${address}`,
  ];
  if (cmd !== undefined) argv.push(cmd);
  return argv;
}

export const linkDown = (host: string) => must(["ip", "link", "set", netnsOf(bareName(host)), "down"]).then(() => {});
export const linkUp = (host: string) => must(["ip", "link", "set", netnsOf(bareName(host)), "up"]).then(() => {});

// ---------------------------------------------------------------------------------------------
// etcd from this machine

export function etcdctlArgv(args: string[], endpoints?: string[]): string[] {
  const eps =
    endpoints ??
    (labState()?.nodes ?? []).filter((n) => n.role === "control-plane").map((n) => `https://${n.address}:2379`);
  // biome-ignore format: flag list
  return [
    "etcdctl", `--endpoints=${eps.join(",")}`, `--cacert=${labPaths.etcdCa}`, `--cert=${labPaths.etcdCert}`,
    `--key=${labPaths.etcdKey}`, ...args,
  ];
}

/** etcdctl against the lab cluster through the bridge, with the lab's client certificate. */
export function labEtcdctl(
  args: string[],
  opts: { endpoints?: string[]; timeoutMs?: number } = {},
): Promise<RunResult> {
  return run(etcdctlArgv(args, opts.endpoints), { env: { ETCDCTL_API: "3" }, timeoutMs: opts.timeoutMs ?? 30_000 });
}

/**
 * Moves the lab clock the apiserver stand-ins judge token and certificate expiry by (seconds
 * ahead of this machine's clock; 0 puts it back), so a test can be "hours later" at once.
 */
export async function labSetClock(offsetSeconds: number): Promise<void> {
  const r = await labEtcdctl(["put", "kubeadm-ha-lab/clock-offset-seconds", String(offsetSeconds)]);
  if (r.code !== 0) throw new Error(`could not set the lab clock: ${r.stderr}`);
}

/** Whether all three lab etcd members answer healthy. */
export async function labEtcdAllHealthy(): Promise<boolean> {
  const r = await labEtcdctl(["endpoint", "health"]);
  return r.code === 0 && (r.stdout + r.stderr).split("is healthy").length - 1 === 3;
}

/** Wait until all three lab etcd members are healthy; throws after `seconds`. */
export async function waitLabEtcdHealthy(seconds: number, pollMs = 1000): Promise<void> {
  const end = Date.now() + seconds * 1000;
  while (!(await labEtcdAllHealthy())) {
    if (Date.now() > end) throw new Error(`etcd not healthy on all three members after ${seconds} s`);
    await Bun.sleep(pollMs);
  }
}

// ---------------------------------------------------------------------------------------------
// State

interface LabState {
  nodes: LabNode[];
  /** Absent in state written before hosts had a choice of OS: Debian 12. */
  os?: LabOs;
  /** Absent in state written before the lab had an apt repository: preinstalled. */
  packages?: LabPackages;
  apt?: LabAptRepo;
  /** Absent: keepalived-haproxy. */
  lb?: LabLb;
  upAt: string;
}

/** The lab's apt repository (URL, key fingerprint, served directory, access log) while the lab is up. */
export function labAptRepo(): LabAptRepo | undefined {
  return labState()?.apt;
}

/** The OS of the lab that is up, if one is. */
export function labOs(): LabOs | undefined {
  const st = labState();
  return st ? (st.os ?? "debian12") : undefined;
}

function labState(): LabState | undefined {
  try {
    return JSON.parse(readFileSync(`${RUNTIME_DIR}/state.json`, "utf8")) as LabState;
  } catch {
    return undefined;
  }
}

function labCgroupNames(): string[] {
  const names = new Set<string>();
  for (const root of ["/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"]) {
    try {
      for (const e of readdirSync(root)) if (e.startsWith(LAB.prefix)) names.add(e);
    } catch {
      /* hierarchy missing */
    }
  }
  return [...names];
}

// ---------------------------------------------------------------------------------------------
// Status

export async function labStatus(): Promise<LabStatus> {
  const nodes = labState()?.nodes ?? [];
  const hosts = await Promise.all(
    nodes.map(async (n): Promise<LabHostStatus> => {
      const netns = netnsOf(n.name);
      const [addr, ssh, etcd] = await Promise.all([
        run(["ip", "-n", netns, "-o", "-4", "addr", "show"]),
        leaderPid(n.name)
          ? run(sshArgv(n.name, "true"), { timeoutMs: 5000 })
          : Promise.resolve({ code: 1 } as RunResult),
        n.role === "control-plane"
          ? labEtcdctl(["endpoint", "health", "--command-timeout=2s"], {
              endpoints: [`https://${n.address}:2379`],
              timeoutMs: 5000,
            })
          : Promise.resolve({ code: 1 } as RunResult),
      ]);
      return {
        name: n.name,
        address: n.address,
        netns,
        vipHolder: addr.code === 0 && addr.stdout.includes(` ${LAB.vip}/`),
        sshOk: ssh.code === 0,
        etcdHealthy: etcd.code === 0,
      };
    }),
  );
  return { vip: LAB.vip, port: LAB.port, os: labOs(), hosts };
}

// ---------------------------------------------------------------------------------------------
// One `up` or `down` at a time on this machine (several test files and commands share the lab).

const LOCK_DIR = "/run/kha-lab.lock";
let lockDepth = 0;

async function withLabLock<T>(fn: () => Promise<T>): Promise<T> {
  if (lockDepth > 0) return fn();
  const deadline = Date.now() + 180_000;
  for (;;) {
    try {
      mkdirSync(LOCK_DIR, { mode: 0o700 });
      writeFileSync(`${LOCK_DIR}/pid`, String(process.pid));
      break;
    } catch {
      let holder = 0;
      try {
        holder = Number(readFileSync(`${LOCK_DIR}/pid`, "utf8"));
      } catch {
        /* being written or removed */
      }
      // A holder that died (crashed run) does not keep the lab locked.
      if (holder > 0 && !alive(holder)) rmSync(LOCK_DIR, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error(`another lab up/down (pid ${holder}) holds ${LOCK_DIR} for too long`);
      await sleep(200);
    }
  }
  lockDepth++;
  try {
    return await fn();
  } finally {
    lockDepth--;
    rmSync(LOCK_DIR, { recursive: true, force: true });
  }
}

// One user of the lab at a time: lab tests change hosts (VIP, kubeadm state, etcd data), so a
// process that brings the lab up holds it until it tears it down or exits. Another process's
// up/down waits for that; `down --force` does not.
const LEASE = "/run/kha-lab.lease";

export interface LabHolder {
  pid: number;
  cmd: string;
}

/** The live process holding the lab, if any (a dead holder does not count). */
export function labHolder(): LabHolder | undefined {
  try {
    const h = JSON.parse(readFileSync(LEASE, "utf8")) as LabHolder;
    return h.pid > 0 && alive(h.pid) ? h : undefined;
  } catch {
    return undefined;
  }
}

export class LabBusy extends Error {
  override name = "LabBusy";
}

async function acquireLease(
  waitMs: number,
  log: (host: string, phase: string, message: string) => void,
): Promise<void> {
  const deadline = Date.now() + waitMs;
  let told = false;
  for (;;) {
    const holder = await withLabLock(async () => {
      const h = labHolder();
      if (h && h.pid !== process.pid) return h;
      const cmd = process.argv.map((a) => a.split("/").pop()).join(" ");
      writeFileSync(LEASE, JSON.stringify({ pid: process.pid, cmd } satisfies LabHolder));
      return undefined;
    });
    if (!holder) return;
    if (Date.now() >= deadline) {
      throw new LabBusy(
        `the lab is in use by pid ${holder.pid} (${holder.cmd}); wait for it to finish or tear it down with --force`,
      );
    }
    if (!told)
      log("lab", "wait", `in use by pid ${holder.pid} (${holder.cmd}); waiting up to ${Math.round(waitMs / 1000)} s`);
    told = true;
    await sleep(1000);
  }
}

function releaseLease(): void {
  const h = labHolder();
  if (!h || h.pid === process.pid) rmSync(LEASE, { force: true });
}

// ---------------------------------------------------------------------------------------------
// Up

function sameNodes(a: LabNode[], b: LabNode[]): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** The pod network manifest every lab host carries (the kubectl stand-in records what it applies). */
export const LAB_CNI_MANIFEST_PATH = "/etc/kha-lab/cni/calico.yaml";
const LAB_CNI_MANIFEST =
  "# LAB STAND-IN pod network manifest: applied by the CNI step, recorded by the kubectl stand-in.\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kha-lab-cni\n  namespace: kube-system\n";
export const LAB_CNI_MANIFEST_SHA256 = createHash("sha256").update(LAB_CNI_MANIFEST).digest("hex");

/** The cgroup (in both hierarchies) the apt repository's server runs in: `down` ends it with the hosts. */
const APT_REPO_CGROUP = `${LAB.prefix}apt-repo`;

function labSpecYaml(nodes: LabNode[], packages: LabPackages, repo: LabAptRepo, lb: LabLb): string {
  const spec = {
    name: "lab",
    kubernetes: {
      version: LAB.kubernetesVersion,
      // The product's default: pinned and held packages from a signed apt repository (the lab's).
      packages:
        packages === "apt"
          ? { source: "apt", aptRepository: repo.url, aptKeyUrl: repo.keyUrl, aptKeyFingerprint: repo.fingerprint }
          : { source: "preinstalled" },
    },
    ssh: { user: LAB.user, privateKeyPath: "id_ed25519", knownHostsPath: "known_hosts" },
    controlPlaneEndpoint: { vip: LAB.vip, port: LAB.port, interface: LAB.interface, prefix: LAB.prefixLength },
    nodes: nodes.map((n) => ({ name: n.name, address: n.address, role: n.role })),
    terraform: { resources: "builtin" },
    // The lab's hosts are containers: kernel modules and sysctls are the machine's to set.
    hosts: { containers: true },
    // A pod network from a file on the first control plane (what an air-gapped site does), pinned by
    // its sha256: the lab reaches nothing outside 198.18.0.0/15, so no manifest is downloaded.
    networking: { cni: { name: "calico", manifest: LAB_CNI_MANIFEST_PATH, sha256: LAB_CNI_MANIFEST_SHA256 } },
    ...(lb === "static-pod"
      ? { loadBalancer: { mode: "static-pod", staticPod: { keepalivedImage: LAB_KEEPALIVED_IMAGE } } }
      : {}),
  };
  return `# The lab cluster, written by \`bun test/lab/cli.ts up\`; paths are relative to this file.\n${stringify(spec)}`;
}

async function startHost(node: LabNode): Promise<void> {
  const name = netnsOf(node.name);
  for (const d of cgroupDirs(node.name)) mkdirSync(d, { recursive: true });
  const [systemdCg, unifiedCg] = cgroupDirs(node.name);
  const out = openSync(`${hostDir(node.name)}/console.log`, "a");
  // Each nspawn in its own cgroup in both hierarchies before it starts: without that, hosts
  // see each other's processes and `systemctl kill` fails (lab-notes.md).
  // biome-ignore format: flag list
  const nspawn = [
    "systemd-nspawn", "-b", "-D", `${hostDir(node.name)}/merged`, "-M", name, "--keep-unit", "--register=no",
    `--network-namespace-path=/run/netns/${name}`, "--capability=CAP_NET_ADMIN,CAP_NET_RAW", "--console=pipe",
  ];
  // `setsid -f` double-forks: the host is not a child of this process, so a test runner that
  // kills its leftover children (or this process exiting) does not power the host off.
  const child = spawn(
    "setsid",
    [
      "-f",
      "sh",
      "-c",
      `echo $$ > ${systemdCg}/cgroup.procs && echo $$ > ${unifiedCg}/cgroup.procs && exec "$@"`,
      "sh",
      ...nspawn,
    ],
    // SYSTEMD_NSPAWN_LOCK=0: the lab owns these directories; nspawn's lock files would outlive a killed run.
    { stdio: ["ignore", out, out], env: { ...process.env, SYSTEMD_NSPAWN_LOCK: "0" } },
  );
  await new Promise<void>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code) =>
      code === 0 ? resolve() : reject(new Error(`starting ${name}: setsid exited ${code}`)),
    );
  });
  closeSync(out);
}

/** Bring the lab up (idempotent: a healthy lab with the same hosts is left as it is). */
export async function labUp(opts: LabOptions = {}): Promise<LabUpResult> {
  const missing = labMissing();
  if (missing) throw new LabUnavailable(`the lab cannot run here: ${missing}`);
  labNodes(opts);
  const log = opts.log ?? defaultLog;
  const os = opts.os ?? labOsFromEnv();
  // Built (once) before taking the lab: a first build takes minutes, longer than others wait for the lock.
  const lowerDir = await labRoot(os, (m) => log("lab", "root", m));
  await buildLabAptPackages((m) => log("lab", "apt", m));
  await acquireLease(opts.waitMs ?? 15 * 60_000, log);
  return withLabLock(() => up(opts, os, lowerDir));
}

async function up(opts: LabOptions, os: LabOs, lowerDir: string): Promise<LabUpResult> {
  const log = opts.log ?? defaultLog;
  const start = Date.now();
  const nodes = labNodes(opts);
  const kubeadmMode = opts.kubeadm ?? "running";
  const packages = opts.packages ?? "apt";
  const lb = opts.lb ?? labLbFromEnv();

  const state = labState();
  // A pending lab is always new: its point is hosts that kubeadm has not touched yet.
  if (
    !opts.fresh &&
    kubeadmMode === "running" &&
    state &&
    sameNodes(state.nodes, nodes) &&
    (state.os ?? "debian12") === os &&
    (state.packages ?? "preinstalled") === packages &&
    (state.lb ?? "keepalived-haproxy") === lb &&
    existsSync(labPaths.spec)
  ) {
    const st = await labStatus();
    const cps = st.hosts.filter((h) => nodes.find((n) => n.name === h.name)?.role === "control-plane");
    if (st.hosts.every((h) => h.sshOk) && cps.every((h) => h.etcdHealthy)) {
      log("lab", "up", `already up (${nodes.length} hosts, SSH and etcd healthy); nothing to do`);
      const s = (Date.now() - start) / 1000;
      return { nodes, os, sshReadySeconds: s, seconds: s, alreadyUp: true };
    }
    log("lab", "up", "a lab exists but is not healthy: tearing it down first");
  }
  await down({ log, quiet: true });

  // Network: the bridge with this machine's address, one namespace + veth per host.
  log("lab", "network", `bridge ${LAB.bridge} ${LAB.gateway}/${LAB.prefixLength}, ${nodes.length} namespaces`);
  await must(["ip", "link", "add", LAB.bridge, "type", "bridge"]);
  await must(["ip", "addr", "add", `${LAB.gateway}/${LAB.prefixLength}`, "dev", LAB.bridge]);
  await must(["ip", "link", "set", LAB.bridge, "up"]);
  await Promise.all(
    nodes.map(async (n) => {
      const ns = netnsOf(n.name);
      await must(["ip", "netns", "add", ns]);
      await must(["ip", "link", "add", ns, "type", "veth", "peer", "name", LAB.interface, "netns", ns]);
      await must(["ip", "link", "set", ns, "master", LAB.bridge, "up"]);
      await must(["ip", "-n", ns, "addr", "add", `${n.address}/${LAB.prefixLength}`, "dev", LAB.interface]);
      await must(["ip", "-n", ns, "link", "set", LAB.interface, "up"]);
      await must(["ip", "-n", ns, "link", "set", "lo", "up"]);
    }),
  );

  // Keys and certificates.
  mkdirSync(labPaths.stateDir, { recursive: true, mode: 0o700 });
  chmodSync(labPaths.stateDir, 0o700);
  mkdirSync(RUNTIME_DIR, { recursive: true, mode: 0o700 });
  await must(["mount", "-t", "tmpfs", "-o", "mode=0700", `${LAB.prefix}lab`, RUNTIME_DIR]);
  rmSync(labPaths.key, { force: true });
  rmSync(labPaths.publicKey, { force: true });
  // The apt repository (signed with a key made now, served on the bridge) while the lab key is made.
  const [repo] = await Promise.all([
    startLabAptRepo({
      runtimeDir: RUNTIME_DIR,
      address: LAB.gateway,
      cgroup: APT_REPO_CGROUP,
      bun: realpathSync(`${PROJECT_ROOT}/node_modules/.bin/bun`),
      log: (m) => log("lab", "apt", m),
    }),
    must(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kubeadm-ha-lab", "-f", labPaths.key]),
  ]);
  chmodSync(labPaths.key, 0o600);
  const publicKey = readFileSync(labPaths.publicKey, "utf8");
  const controlPlanes = nodes.filter((n) => n.role === "control-plane");
  const specYaml = labSpecYaml(nodes, packages, repo, lb);
  const labSpec = parseSpec(specYaml, labPaths.spec);
  const secrets = ensureSecrets(labSpec, { dir: labPaths.secretsDir });
  const pki = await makeLabPki(`${RUNTIME_DIR}/pki`, controlPlanes, LAB.vip, {
    cert: secrets.caCert,
    key: secrets.caKey,
  });
  mkdirSync(`${labPaths.stateDir}/etcd`, { recursive: true, mode: 0o700 });
  copyFileSync(pki.etcdCa, labPaths.etcdCa);
  copyFileSync(pki.clientCert, labPaths.etcdCert);
  copyFileSync(pki.clientKey, labPaths.etcdKey);
  chmodSync(labPaths.etcdKey, 0o600);
  log("lab", "pki", `lab key, etcd CA and ${controlPlanes.length} control planes' certificates ready`);

  // Hosts: overlay of / with a tmpfs upper layer, then the host's own files.
  const ctx: HostContext = {
    nodes,
    kubeadm: kubeadmMode,
    standinsPreinstalled: packages === "preinstalled" || kubeadmMode === "running",
    labCa: {
      pem: repo.caCert,
      hash: (await must(["openssl", "x509", "-noout", "-subject_hash"], { input: repo.caCert })).trim(),
    },
    publicKey,
    bun: bunPath(),
    pkiDir: `${RUNTIME_DIR}/pki`,
    clusterCa: readFileSync(`${RUNTIME_DIR}/pki/kubernetes-ca.crt`, "utf8"),
    apiServerArgs: apiServerArgs(labSpec),
  };
  const knownHosts = await Promise.all(
    nodes.map(async (n) => {
      const d = hostDir(n.name);
      for (const sub of ["upper", "work", "merged"]) mkdirSync(`${d}/${sub}`, { recursive: true });
      // biome-ignore format: mount options
      await must(["mount", "-t", "overlay", netnsOf(n.name), "-o", `lowerdir=${lowerDir},upperdir=${d}/upper,workdir=${d}/work`, `${d}/merged`]);
      // The stand-ins run from this checkout, bound read-only at HOST_PROJECT in every host.
      const target = `${d}/merged${HOST_PROJECT}`;
      mkdirSync(target, { recursive: true });
      await must(["mount", "--bind", PROJECT_ROOT, target]);
      await must(["mount", "-o", "remount,bind,ro", target]);
      return prepareHost(n, `${d}/merged`, ctx);
    }),
  );
  writeFileSync(labPaths.knownHosts, `${knownHosts.join("\n")}\n`, { mode: 0o644 });
  writeFileSync(labPaths.spec, specYaml, { mode: 0o644 });
  writeFileSync(
    `${RUNTIME_DIR}/state.json`,
    JSON.stringify({ nodes, os, packages, apt: repo, lb, upAt: new Date().toISOString() } satisfies LabState),
  );
  log("lab", "hosts", `overlays of ${lowerDir} (${os}) ready; booting ${nodes.length} hosts`);

  await Promise.all(nodes.map(startHost));

  // Ready = SSH with the lab key, host key verified against the known_hosts just written.
  await Promise.all(
    nodes.map(async (n) => {
      const ok = await waitFor(
        async () => (await run(sshArgv(n.name, "true"), { timeoutMs: 5000 })).code === 0,
        60_000,
        100,
      );
      if (!ok) throw new Error(`${n.name} did not answer SSH within 60 s; see ${hostDir(n.name)}/console.log`);
      log(n.name, "ssh", `reachable at ${n.address} (${((Date.now() - start) / 1000).toFixed(1)} s)`);
    }),
  );
  const sshReadySeconds = (Date.now() - start) / 1000;

  if (controlPlanes.length > 0 && kubeadmMode === "running") {
    const healthy = await waitFor(
      async () => (await labEtcdctl(["endpoint", "health", "--command-timeout=2s"], { timeoutMs: 5000 })).code === 0,
      60_000,
      200,
    );
    if (!healthy) {
      const r = await labEtcdctl(["endpoint", "health", "--command-timeout=2s"]);
      throw new Error(`etcd did not become healthy within 60 s: ${r.stderr.trim() || r.stdout.trim()}`);
    }
    log(
      "lab",
      "etcd",
      `${controlPlanes.length} members healthy over TLS (${((Date.now() - start) / 1000).toFixed(1)} s)`,
    );
  }

  // ===========================================================================================
  // HOOK (lead): apply the lab spec end to end with terraform here — hosts are reachable over
  // SSH and etcd is healthy. Do not add the apply anywhere else in this file.
  // ===========================================================================================

  const seconds = (Date.now() - start) / 1000;
  log(
    "lab",
    "up",
    `${nodes.length} ${os} hosts up in ${seconds.toFixed(1)} s (SSH ready at ${sshReadySeconds.toFixed(1)} s); spec ${labPaths.spec}`,
  );
  return { nodes, os, sshReadySeconds, seconds, alreadyUp: false };
}

// ---------------------------------------------------------------------------------------------
// Down

function labMounts(): string[] {
  const mounts: string[] = [];
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const f = line.split(" ");
    const point = f[4]?.replace(/\\040/g, " ");
    const dash = f.indexOf("-");
    const source = dash > 0 ? f[dash + 2] : undefined;
    if (!point) continue;
    if (point === RUNTIME_DIR || point.startsWith(`${RUNTIME_DIR}/`) || source?.startsWith(LAB.prefix))
      mounts.push(point);
  }
  // Deepest first.
  return mounts.sort((a, b) => b.length - a.length);
}

function rmdirTree(dir: string): void {
  let entries: string[] = [];
  try {
    entries = readdirSync(dir);
  } catch {
    return;
  }
  for (const e of entries) {
    try {
      if (statSync(`${dir}/${e}`).isDirectory()) rmdirTree(`${dir}/${e}`);
    } catch {
      /* gone */
    }
  }
  try {
    rmdirSync(dir);
  } catch {
    /* reported by the leftover check */
  }
}

export interface LabDownOptions {
  log?: (host: string, phase: string, message: string) => void;
  /** Milliseconds to let hosts shut down after SIGTERM before SIGKILL (default 3000). */
  graceMs?: number;
  quiet?: boolean;
  /** Tear down even while another live process holds the lab. */
  force?: boolean;
  /** How long to wait for another process that holds the lab (default 15 min). */
  waitMs?: number;
  /**
   * "running" (default): etcd and the apiserver stand-in run from /etc/kubernetes/manifests at once.
   * "pending": hosts as before kubeadm: the manifests wait in /etc/kha-lab/pending-manifests and the
   * kubeadm stand-in starts them on init/join, growing etcd one member at a time as kubeadm does
   * (what the end-to-end apply needs).
   */
  kubeadm?: "running" | "pending";
}

/**
 * Tear the lab down and clean leftovers of crashed runs by the kha- prefix: processes in
 * kha-* cgroups, overlays and the tmpfs, network namespaces, links, cgroups and the state dir.
 * Idempotent. Throws if something could not be removed.
 */
export async function labDown(opts: LabDownOptions = {}): Promise<{ seconds: number }> {
  if (!opts.force) await acquireLease(opts.waitMs ?? 15 * 60_000, opts.log ?? defaultLog);
  const r = await withLabLock(() => down(opts));
  if (opts.force) rmSync(LEASE, { force: true });
  else releaseLease();
  return r;
}

async function down(opts: LabDownOptions): Promise<{ seconds: number }> {
  const log = opts.log ?? defaultLog;
  const start = Date.now();
  const cgroups = labCgroupNames();

  // 1. Processes: SIGTERM to each nspawn asks its host to power off; a second one ends it at
  // once; then SIGKILL anything left in the hosts' cgroups (there is nothing to keep: the
  // hosts' disks are tmpfs).
  const allPids = () =>
    cgroups.flatMap((c) => [
      ...cgroupPids(`/sys/fs/cgroup/systemd/${c}`),
      ...cgroupPids(`/sys/fs/cgroup/unified/${c}`),
    ]);
  const supervisors = cgroups.flatMap((c) => nspawnPids(bareName(c)));
  if (allPids().length > 0) {
    if (!opts.quiet) log("lab", "down", `stopping ${cgroups.length} hosts`);
    for (const pid of supervisors) signal(pid, "SIGTERM");
    const grace = opts.graceMs ?? 3000;
    await waitFor(() => supervisors.every((p) => !alive(p)), grace / 2, 50);
    for (const pid of supervisors) if (alive(pid)) signal(pid, "SIGTERM");
    await waitFor(() => supervisors.every((p) => !alive(p)), grace / 2, 50);
    for (let i = 0; i < 50 && allPids().some(alive); i++) {
      for (const pid of allPids()) signal(pid, "SIGKILL");
      await sleep(100);
    }
  }
  // Processes that entered a lab namespace from outside a lab cgroup (crashed helpers).
  const netnsList = (await run(["ip", "netns", "list"])).stdout
    .split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter((n) => n.startsWith(LAB.prefix));
  for (const ns of netnsList) {
    const pids = (await run(["ip", "netns", "pids", ns])).stdout.split("\n").filter(Boolean).map(Number);
    for (const pid of pids) signal(pid, "SIGKILL");
  }

  // 2. Mounts (deepest first), then cgroups, namespaces and links.
  for (const m of labMounts()) {
    const r = await run(["umount", m]);
    if (r.code !== 0) await run(["umount", "-l", m]);
  }
  for (const c of cgroups)
    for (const root of ["/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"]) rmdirTree(`${root}/${c}`);
  for (const ns of netnsList) await run(["ip", "netns", "del", ns]);
  const links = (await run(["ip", "-o", "link", "show"])).stdout
    .split("\n")
    .map((l) => l.split(": ")[1]?.split("@")[0] ?? "")
    .filter((n) => n.startsWith(LAB.prefix));
  for (const l of links) await run(["ip", "link", "del", l]);
  try {
    for (const e of readdirSync("/run/systemd/nspawn/propagate")) {
      if (e.startsWith(LAB.prefix)) rmSync(`/run/systemd/nspawn/propagate/${e}`, { recursive: true, force: true });
    }
  } catch {
    /* nothing there */
  }

  // 3. Files: only once nothing is mounted under the runtime dir (never delete through a mount).
  await stopLabGpg(RUNTIME_DIR);
  const still = labMounts();
  if (still.length === 0) {
    rmSync(RUNTIME_DIR, { recursive: true, force: true });
  }
  rmSync(labPaths.stateDir, { recursive: true, force: true });

  const left = await labLeftovers();
  if (left.length > 0) throw new Error(`lab down left things behind: ${left.join("; ")}`);
  const seconds = (Date.now() - start) / 1000;
  if (!opts.quiet || cgroups.length > 0) log("lab", "down", `done in ${seconds.toFixed(1)} s`);
  return { seconds };
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* already gone */
  }
}

/** Everything of the lab still present on this machine (empty after a clean `down`). */
export async function labLeftovers(): Promise<string[]> {
  const left: string[] = [];
  const ns = (await run(["ip", "netns", "list"])).stdout.split("\n").filter((l) => l.startsWith(LAB.prefix));
  if (ns.length) left.push(`netns: ${ns.join(", ")}`);
  const links = (await run(["ip", "-o", "link", "show"])).stdout
    .split("\n")
    .map((l) => l.split(": ")[1]?.split("@")[0] ?? "")
    .filter((n) => n.startsWith(LAB.prefix));
  if (links.length) left.push(`links: ${links.join(", ")}`);
  const mounts = labMounts();
  if (mounts.length) left.push(`mounts: ${mounts.join(", ")}`);
  const cgs = labCgroupNames();
  if (cgs.length) left.push(`cgroups: ${cgs.join(", ")}`);
  const procs = (await run(["pgrep", "-f", `systemd-nspawn .*-M ${LAB.prefix}`])).stdout.trim();
  if (procs) left.push(`nspawn processes: ${procs.split("\n").join(", ")}`);
  if (existsSync(RUNTIME_DIR)) left.push(`directory ${RUNTIME_DIR}`);
  if (existsSync(labPaths.stateDir)) left.push(`directory ${labPaths.stateDir}`);
  return left;
}

// ---------------------------------------------------------------------------------------------
// Permanent loss

/** The lab's own material a host needs to join again after `labBreakDisk` (see the README). */
export const LAB_JOIN_PKI = "/etc/kha-lab/join-pki";
const PENDING_MANIFESTS = "/etc/kha-lab/pending-manifests";

/**
 * What the stand-in kubeadm's control-plane join finds on a host with no kubeadm state, for the
 * node's address: etcd's and the apiserver's pending manifests, and the node's certificates (what
 * the real one downloads as kubeadm-certs and generates for its own address).
 */
async function layJoinMaterial(root: string, node: LabNode, nodes: LabNode[]): Promise<void> {
  for (const p of [PENDING_MANIFESTS, LAB_JOIN_PKI]) rmSync(`${root}${p}`, { recursive: true, force: true });
  const members = nodes.filter((n) => n.role === "control-plane");
  put(root, `${PENDING_MANIFESTS}/etcd.yaml`, etcdManifest(node, members), 0o600);
  const standins = `${HOST_PROJECT}/test/lab/standins`;
  put(
    root,
    `${PENDING_MANIFESTS}/kube-apiserver.yaml`,
    apiserverManifest(node, bunPath(), `${standins}/apiserver-standin.ts`),
    0o600,
  );
  await must(["cp", "-a", `${RUNTIME_DIR}/pki/${node.name}/pki`, `${root}${LAB_JOIN_PKI}`]);
}

/**
 * A host's disk destroyed and the host reinstalled: it keeps running and answering SSH (same
 * address, same host key, the lab's image files), but everything a deploy put on it is gone. Stops
 * the kubelet stand-in (and with it etcd and the apiserver stand-in), keepalived and haproxy, and
 * deletes the etcd data dir, /etc/kubernetes, kubeadm-ha's state (/etc/kubeadm-ha,
 * /var/lib/kubeadm-ha) and the stand-ins' log. For a control plane it lays the lab's pending
 * manifests and certificates back, where the stand-in kubeadm's next join finds what the real one
 * downloads (kubeadm-certs) and generates (etcd's own certificates).
 */
export async function labBreakDisk(host: string): Promise<void> {
  const name = bareName(host);
  const state = labState();
  const node = state?.nodes.find((n) => n.name === name);
  if (!state || !node) throw new Error(`lab host ${name} is not part of the lab that is up`);
  const stop = await labExec(
    name,
    `systemctl stop kubelet-standin.service kubelet.service keepalived.service haproxy.service 2>&1
systemctl disable keepalived.service haproxy.service >/dev/null 2>&1 || true
for i in $(seq 1 100); do
  ss -Hltn '( sport = :2379 or sport = :2380 or sport = :6443 )' | grep -q . || exit 0
  sleep 0.1
done
echo "etcd or the apiserver stand-in still listens after 10 s" >&2; exit 1`,
  );
  if (stop.code !== 0) throw new Error(`lab break --disk ${name}: stopping failed: ${stop.stderr || stop.stdout}`);
  const root = `${hostDir(name)}/merged`;
  for (const p of [
    "/var/lib/etcd",
    "/etc/kubernetes",
    "/etc/kubeadm-ha",
    "/var/lib/kubeadm-ha",
    "/var/log/kubeadm-standin.log",
    PENDING_MANIFESTS,
    LAB_JOIN_PKI,
  ])
    rmSync(`${root}${p}`, { recursive: true, force: true });
  mkdirSync(`${root}/etc/kubernetes/manifests`, { recursive: true, mode: 0o755 });
  if (node.role === "control-plane") await layJoinMaterial(root, node, state.nodes);
  // The kubelet stand-in runs again, as a reinstalled host's kubelet would (with nothing to run).
  const start = await labExec(name, "systemctl start kubelet-standin.service 2>&1");
  if (start.code !== 0)
    throw new Error(`lab break --disk ${name}: restarting the kubelet stand-in failed: ${start.stdout}`);
}

/**
 * What a hypervisor does for a host that rebooted itself: systemd-nspawn exits when the container
 * reboots (`systemctl reboot` inside; nspawn's exit status 133 means "start me again"), so the lab
 * starts the host again, on the same disk and network, once its nspawn is gone.
 */
export async function labBootAfterReboot(host: string, timeoutMs = 120_000): Promise<void> {
  const name = bareName(host);
  const node = labState()?.nodes.find((n) => n.name === name);
  if (!node) throw new Error(`lab host ${name} is not part of the lab that is up`);
  const end = Date.now() + timeoutMs;
  while (nspawnPids(name).length > 0) {
    if (Date.now() > end) throw new Error(`lab host ${name} did not go down within ${timeoutMs} ms`);
    await Bun.sleep(100);
  }
  await startHost(node);
}

/** Why `address` cannot be `name`'s new address in the lab, or undefined: lab addresses only, free ones. */
export function labAddressProblem(
  name: string,
  address: string,
  nodes: Pick<LabNode, "name" | "address">[],
): string | undefined {
  const m = /^198\.18\.0\.(\d{1,3})$/.exec(address);
  const last = m ? Number(m[1]) : -1;
  if (!m || String(last) !== m[1] || last < 2 || last > 254)
    return `${address} is not a lab host address: use 198.18.0.2-254 (e.g. 198.18.0.14)`;
  if (address === LAB.vip) return `${address} is the lab's VIP`;
  const holder = nodes.find((n) => n.address === address);
  if (holder)
    return holder.name === name ? `${address} is ${name}'s address already` : `${address} is ${holder.name}'s address`;
  return undefined;
}

/**
 * A reinstalled host that came back at a new address (lab addresses only): after `labBreakDisk`,
 * its eth0 moves to `address` inside its network namespace, the lab state (labExec, labStatus,
 * sshArgv, etcdctl's endpoints), every host's /etc/hosts and the lab's known_hosts follow (the same
 * host key at the new address: the machine is the same; the old address is trusted no more), and a
 * control plane's join material is made again for the new address (certificates with its IP,
 * pending manifests advertising it). The lab spec is not touched: editing it is the user's step.
 */
export async function labReaddress(host: string, address: string): Promise<void> {
  const name = bareName(host);
  const state = labState();
  const node = state?.nodes.find((n) => n.name === name);
  if (!state || !node) throw new Error(`lab host ${name} is not part of the lab that is up`);
  const problem = labAddressProblem(name, address, state.nodes);
  if (problem) throw new Error(`lab readdress ${name}: ${problem}`);
  const root = `${hostDir(name)}/merged`;
  // Only a destroyed disk: etcd data or kubeadm's state would still carry the old address.
  const left = ["/var/lib/etcd/member", "/etc/kubernetes/admin.conf", "/etc/kubernetes/kubelet.conf"].filter((p) =>
    existsSync(`${root}${p}`),
  );
  if (left.length)
    throw new Error(`lab readdress ${name}: ${left.join(", ")} still there; break its disk first (labBreakDisk)`);
  const old = node.address;
  const ns = netnsOf(name);
  // The old one goes first: deleting an interface's primary address deletes its secondaries too.
  await must(["ip", "-n", ns, "addr", "del", `${old}/${LAB.prefixLength}`, "dev", LAB.interface]);
  await must(["ip", "-n", ns, "addr", "add", `${address}/${LAB.prefixLength}`, "dev", LAB.interface]);
  node.address = address;
  writeFileSync(`${RUNTIME_DIR}/state.json`, JSON.stringify(state));
  const known = readFileSync(labPaths.knownHosts, "utf8")
    .split("\n")
    .map((l) => (l.startsWith(`${old} `) ? `${address}${l.slice(old.length)}` : l));
  writeFileSync(labPaths.knownHosts, known.join("\n"), { mode: 0o644 });
  for (const n of state.nodes) {
    const hosts = `${hostDir(n.name)}/merged/etc/hosts`;
    if (!existsSync(hosts)) continue;
    const lines = readFileSync(hosts, "utf8").split("\n");
    put(
      `${hostDir(n.name)}/merged`,
      "/etc/hosts",
      lines.map((l) => (l === `${old}\t${name}` ? `${address}\t${name}` : l)).join("\n"),
    );
  }
  if (node.role === "control-plane") {
    rmSync(`${RUNTIME_DIR}/pki/${name}`, { recursive: true, force: true });
    await makeNodePki(`${RUNTIME_DIR}/pki`, node, LAB.vip);
    await layJoinMaterial(root, node, state.nodes);
  }
}
