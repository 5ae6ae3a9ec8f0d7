// The lab's apt repository: the stand-in kubeadm, kubelet, kubectl, crictl (cri-tools) and an
// empty kubernetes-cni packaged as real .debs (dpkg-deb) at two Kubernetes versions, indexed
// with apt-ftparchive as a flat repository shaped like the Kubernetes community repository,
// signed at every `lab up` with a throwaway gpg key, and served over https on the lab bridge
// only, with a server certificate from a lab CA the hosts trust. The packages and their index
// are cached under /var/cache/kubeadm-ha-lab, keyed by what goes into them; the Release file,
// the key and the signatures are made anew each time (they live in the lab's tmpfs, so
// `lab down` removes them, gpg home included).
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  closeSync,
  cpSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { dirname, resolve } from "node:path";
import { ROOT_CACHE_DIR } from "./debian-root.ts";
import { makeLabServerTls } from "./pki.ts";
import { must, run, waitFor, which } from "./sys.ts";

const STANDINS = resolve(import.meta.dir, "standins");
/** The Debian revision the community repository gives every package ("1.31.4-1.1"). */
export const APT_REVISION = "1.1";
/** Where the repository sits on its server: a flat repository ("deb URL /"), as the community one is. */
const REPO_PATH = "/kubernetes/deb/";
const PORT = 443;

/**
 * The Kubernetes versions in the repository, each with the cri-tools and kubernetes-cni the
 * community repository carries next to it. The lab's default version and a newer one, so a
 * test proves apt installs the pinned version and not the newest.
 */
export const LAB_APT_RELEASES = [
  { kubernetes: "1.31.4", criTools: "1.31.1", cni: "1.5.1" },
  { kubernetes: "1.32.3", criTools: "1.32.0", cni: "1.6.0" },
] as const;

interface DebFile {
  path: string;
  content: string;
  mode: number;
}

interface DebPackage {
  name: string;
  /** Upstream version, without the revision. */
  version: string;
  section: string;
  depends: string[];
  recommends: string[];
  description: string;
  files: DebFile[];
  conffiles?: string[];
  postinst?: string;
}

/** A stand-in script with its version written in (each names it on one `PACKAGED_VERSION=` line). */
function packagedStandin(name: string, version: string): string {
  const text = readFileSync(`${STANDINS}/${name}`, "utf8");
  const line = /^PACKAGED_VERSION=(?=\s|$)/gm;
  const hits = text.match(line)?.length ?? 0;
  if (hits !== 1) throw new Error(`standins/${name} must have exactly one "PACKAGED_VERSION=" line (found ${hits})`);
  return text.replace(line, `PACKAGED_VERSION=v${version}`);
}

const minorOf = (version: string) => Number(version.split(".")[1]);

// What each package holds and depends on follows the community packages' recipes
// (kubernetes/release cmd/krel/templates/latest: kubeadm.spec, kubelet.spec, metadata.yaml).
const KUBELET_UNIT = `[Unit]
Description=kubelet: The Kubernetes Node Agent (LAB STAND-IN, packaged by the kubeadm-ha lab)
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/bin/kubelet
Restart=always
StartLimitInterval=0
RestartSec=10

[Install]
WantedBy=multi-user.target
`;

const KUBEADM_DROPIN = `# Note: This dropin only works with kubeadm and kubelet v1.11+
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
`;

const DAEMON_RELOAD = `#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl --system daemon-reload >/dev/null || true; fi
`;

export function labAptPackages(): DebPackage[] {
  const pkgs: DebPackage[] = [];
  for (const r of LAB_APT_RELEASES) {
    const v = r.kubernetes;
    pkgs.push(
      {
        name: "kubeadm",
        version: v,
        section: "admin",
        // 1.30 and 1.31 pull in cri-tools; from 1.32 the package depends on nothing.
        depends: minorOf(v) <= 31 ? ["cri-tools (>= 1.30.0)"] : [],
        recommends: [],
        description: "Command-line utility for administering a Kubernetes cluster (LAB STAND-IN)",
        files: [
          { path: "/usr/bin/kubeadm", content: packagedStandin("kubeadm", v), mode: 0o755 },
          { path: "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf", content: KUBEADM_DROPIN, mode: 0o644 },
        ],
        postinst: DAEMON_RELOAD,
      },
      {
        name: "kubelet",
        version: v,
        section: "net",
        depends: ["iptables (>= 1.4.21)", "kubernetes-cni (>= 1.2.0)", "mount", "util-linux"],
        recommends: [],
        description: "Node agent for Kubernetes clusters (LAB STAND-IN)",
        files: [
          { path: "/usr/bin/kubelet", content: packagedStandin("kubelet", v), mode: 0o755 },
          { path: "/usr/lib/systemd/system/kubelet.service", content: KUBELET_UNIT, mode: 0o644 },
          { path: "/etc/default/kubelet", content: "KUBELET_EXTRA_ARGS=\n", mode: 0o644 },
          { path: "/var/lib/kubelet/.kubelet-keep", content: "", mode: 0o644 },
        ],
        conffiles: ["/etc/default/kubelet"],
        postinst: DAEMON_RELOAD,
      },
      {
        name: "kubectl",
        version: v,
        section: "admin",
        depends: [],
        recommends: [],
        description: "Command-line utility for interacting with a Kubernetes cluster (LAB STAND-IN)",
        files: [{ path: "/usr/bin/kubectl", content: packagedStandin("kubectl", v), mode: 0o755 }],
      },
      {
        name: "cri-tools",
        version: r.criTools,
        section: "admin",
        depends: [],
        recommends: [],
        description: "Command-line utility for interacting with a container runtime (LAB STAND-IN)",
        files: [{ path: "/usr/bin/crictl", content: packagedStandin("crictl", r.criTools), mode: 0o755 }],
      },
      {
        name: "kubernetes-cni",
        version: r.cni,
        section: "net",
        depends: [],
        recommends: [],
        description: "Binaries required to provision kubernetes container networking (LAB STAND-IN: none)",
        files: [
          {
            path: "/opt/cni/bin/.kha-lab",
            content: "The lab runs no pods: this stand-in kubernetes-cni package installs no plugins.\n",
            mode: 0o644,
          },
        ],
      },
    );
  }
  return pkgs;
}

/** Packages with the same name and version are one .deb (cri-tools/kubernetes-cni may repeat). */
function uniquePackages(pkgs: DebPackage[]): DebPackage[] {
  const seen = new Map<string, DebPackage>();
  for (const p of pkgs) seen.set(`${p.name}_${p.version}`, p);
  return [...seen.values()];
}

function control(p: DebPackage, arch: string): string {
  const size = Math.ceil(p.files.reduce((n, f) => n + Buffer.byteLength(f.content), 0) / 1024);
  const lines = [
    `Package: ${p.name}`,
    `Version: ${p.version}-${APT_REVISION}`,
    `Architecture: ${arch}`,
    "Maintainer: kubeadm-ha lab <lab@kubeadm-ha.invalid>",
    `Installed-Size: ${size}`,
    ...(p.depends.length > 0 ? [`Depends: ${p.depends.join(", ")}`] : []),
    ...(p.recommends.length > 0 ? [`Recommends: ${p.recommends.join(", ")}`] : []),
    `Section: ${p.section}`,
    "Priority: optional",
    "Homepage: https://kubernetes.io",
    `Description: ${p.description}`,
    " Built by the kubeadm-ha lab (test/lab/apt-repo.ts) from its stand-ins; not the real program.",
  ];
  return `${lines.join("\n")}\n`;
}

/** The cache directory of the built packages and their index: changes whenever what goes in does. */
function cacheDir(arch: string, pkgs: DebPackage[]): string {
  const recipe = JSON.stringify({ arch, revision: APT_REVISION, pkgs, format: 1 });
  return `${ROOT_CACHE_DIR}/apt-${createHash("sha256").update(recipe).digest("hex").slice(0, 12)}`;
}

/** Why the lab's apt repository cannot be built here, or undefined when it can. */
export function aptRepoMissing(): string | undefined {
  for (const tool of ["dpkg-deb", "apt-ftparchive", "gpg", "gpgconf"]) {
    if (!which(tool))
      return `${tool} is not installed (apt-get install dpkg apt-utils gpg); the lab's apt repository is built with it`;
  }
  return undefined;
}

/**
 * Build (once) the .debs and their Packages index into the cache; returns the directory. Built in
 * a temporary directory renamed into place, so a killed build leaves no half repository.
 */
export async function buildLabAptPackages(log: (message: string) => void): Promise<string> {
  const arch = (await must(["dpkg", "--print-architecture"])).trim();
  const pkgs = uniquePackages(labAptPackages());
  const dir = cacheDir(arch, pkgs);
  if (existsSync(`${dir}/Packages`)) return dir;
  const start = Date.now();
  mkdirSync(ROOT_CACHE_DIR, { recursive: true, mode: 0o755 });
  const tmp = `${ROOT_CACHE_DIR}/.apt-build-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  try {
    mkdirSync(`${tmp}/repo`, { recursive: true });
    await Promise.all(
      pkgs.map(async (p) => {
        const stage = `${tmp}/stage/${p.name}_${p.version}`;
        for (const f of p.files) {
          mkdirSync(dirname(`${stage}${f.path}`), { recursive: true, mode: 0o755 });
          writeFileSync(`${stage}${f.path}`, f.content);
          chmodSync(`${stage}${f.path}`, f.mode);
        }
        mkdirSync(`${stage}/DEBIAN`, { recursive: true, mode: 0o755 });
        writeFileSync(`${stage}/DEBIAN/control`, control(p, arch));
        if (p.conffiles) writeFileSync(`${stage}/DEBIAN/conffiles`, `${p.conffiles.join("\n")}\n`);
        if (p.postinst) writeFileSync(`${stage}/DEBIAN/postinst`, p.postinst, { mode: 0o755 });
        const deb = `${tmp}/repo/${p.name}_${p.version}-${APT_REVISION}_${arch}.deb`;
        await must(["dpkg-deb", "--build", "--root-owner-group", "-Zgzip", "-z6", stage, deb]);
      }),
    );
    writeFileSync(`${tmp}/repo/Packages`, await must(["apt-ftparchive", "packages", "."], { cwd: `${tmp}/repo` }));
    await must(["gzip", "-9kn", `${tmp}/repo/Packages`]);
    rmSync(`${tmp}/stage`, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
    renameSync(`${tmp}/repo`, dir);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  // Packages of older recipes are no use any more (a running lab serves its own copy).
  for (const e of readdirSync(ROOT_CACHE_DIR)) {
    if (e.startsWith("apt-") && `${ROOT_CACHE_DIR}/${e}` !== dir)
      rmSync(`${ROOT_CACHE_DIR}/${e}`, { recursive: true, force: true });
  }
  log(`built ${pkgs.length} packages and their index in ${dir} (${((Date.now() - start) / 1000).toFixed(1)} s)`);
  return dir;
}

export interface LabAptRepo {
  /** kubernetes.packages.aptRepository */
  url: string;
  /** kubernetes.packages.aptKeyUrl */
  keyUrl: string;
  /** kubernetes.packages.aptKeyFingerprint (40 hex digits) */
  fingerprint: string;
  /** PEM of the lab CA that signed the server certificate (the hosts trust it). */
  caCert: string;
  /** The directory served as the repository (on this machine). */
  dir: string;
  /** One line per request: time, client address, method, path, status. */
  accessLog: string;
}

/** Paths of the lab's apt repository under the lab's runtime tmpfs. */
export function aptRepoPaths(runtimeDir: string) {
  const base = `${runtimeDir}/apt`;
  return {
    base,
    gnupg: `${base}/gnupg`,
    www: `${base}/www`,
    repo: `${base}/www${REPO_PATH.replace(/\/$/, "")}`,
    tls: `${base}/tls`,
    accessLog: `${base}/access.log`,
    serverLog: `${base}/server.log`,
  };
}

const gpgEnv = (home: string) => ({ GNUPGHOME: home });

/**
 * The Release file of `repo` (hashes of its indexes), signed with a new throwaway key into
 * InRelease and Release.gpg; the armored public key as Release.key. Returns the fingerprint.
 */
async function signRepo(repo: string, gnupg: string): Promise<string> {
  mkdirSync(gnupg, { recursive: true, mode: 0o700 });
  chmodSync(gnupg, 0o700);
  const env = gpgEnv(gnupg);
  const gpg = (args: string[]) => must(["gpg", "--batch", "--no-tty", "--quiet", ...args], { env });
  try {
    await gpg([
      "--pinentry-mode",
      "loopback",
      "--passphrase",
      "",
      "--quick-gen-key",
      "kubeadm-ha lab apt repository <lab@kubeadm-ha.invalid>",
      "ed25519",
      "sign",
      "never",
    ]);
    const colons = await gpg(["--with-colons", "--list-secret-keys"]);
    const fingerprint = /^fpr:+([0-9A-F]{40}):/m.exec(colons)?.[1];
    if (!fingerprint) throw new Error(`gpg made no key in ${gnupg}: ${colons}`);
    // biome-ignore format: option pairs
    const release = await must([
      "apt-ftparchive",
      "-o", "APT::FTPArchive::Release::Origin=kubeadm-ha lab",
      "-o", "APT::FTPArchive::Release::Label=kubeadm-ha lab Kubernetes stand-ins",
      "-o", `APT::FTPArchive::Release::Architectures=${(await must(["dpkg", "--print-architecture"])).trim()}`,
      "release", ".",
    ], { cwd: repo });
    writeFileSync(`${repo}/Release`, release);
    await gpg(["--local-user", fingerprint, "--clearsign", "--output", `${repo}/InRelease`, `${repo}/Release`]);
    await gpg([
      "--local-user",
      fingerprint,
      "--armor",
      "--detach-sign",
      "--output",
      `${repo}/Release.gpg`,
      `${repo}/Release`,
    ]);
    writeFileSync(`${repo}/Release.key`, await gpg(["--armor", "--export", fingerprint]));
    return fingerprint;
  } finally {
    // No agent outlives the signing: the private key is not needed again.
    await run(["gpgconf", "--kill", "all"], { env });
  }
}

/** Stop what gpg may have left running for the lab's gpg home (a run killed while signing). */
export async function stopLabGpg(runtimeDir: string): Promise<void> {
  const home = aptRepoPaths(runtimeDir).gnupg;
  if (existsSync(home)) await run(["gpgconf", "--kill", "all"], { env: gpgEnv(home) });
}

/**
 * Make the repository the lab serves (packages from the cache, a fresh signature), and start its
 * https server on `address` inside the cgroups named `cgroup` (so `lab down` ends it). The server
 * runs with this checkout's Bun.
 */
export async function startLabAptRepo(opts: {
  runtimeDir: string;
  address: string;
  cgroup: string;
  bun: string;
  log: (message: string) => void;
}): Promise<LabAptRepo> {
  const p = aptRepoPaths(opts.runtimeDir);
  const start = Date.now();
  const since = () => `${((Date.now() - start) / 1000).toFixed(1)} s`;
  const cached = await buildLabAptPackages(opts.log);
  mkdirSync(p.base, { recursive: true, mode: 0o700 });
  mkdirSync(dirname(p.repo), { recursive: true, mode: 0o755 });
  cpSync(cached, p.repo, { recursive: true });
  const [fingerprint, tls] = await Promise.all([signRepo(p.repo, p.gnupg), makeLabServerTls(p.tls, opts.address)]);
  // The server reads as root; the served tree is world-readable, the key stays 0600.
  chmodSync(p.base, 0o755);
  chmodSync(p.tls, 0o700);
  writeFileSync(p.accessLog, "", { mode: 0o600 });
  opts.log(`signed with a new key, server certificate from the lab CA (${since()})`);

  const cgroups = [`/sys/fs/cgroup/systemd/${opts.cgroup}`, `/sys/fs/cgroup/unified/${opts.cgroup}`];
  for (const d of cgroups) mkdirSync(d, { recursive: true });
  const out = openSync(p.serverLog, "a");
  const server = resolve(import.meta.dir, "apt-repo-server.ts");
  const child = spawn(
    "setsid",
    [
      "-f",
      "sh",
      "-c",
      `echo $$ > ${cgroups[0]}/cgroup.procs && echo $$ > ${cgroups[1]}/cgroup.procs && exec "$@"`,
      "sh",
      opts.bun,
      server,
      p.www,
      tls.cert,
      tls.key,
      opts.address,
      String(PORT),
      p.accessLog,
    ],
    { stdio: ["ignore", out, out], env: { ...process.env, BUN_RUNTIME_TRANSPILER_CACHE_PATH: "0" } },
  );
  await new Promise<void>((ok, fail) => {
    child.once("error", fail);
    child.once("exit", (code) =>
      code === 0 ? ok() : fail(new Error(`starting the apt repository: setsid exited ${code}`)),
    );
  });
  closeSync(out);

  const caCert = readFileSync(tls.ca, "utf8");
  const url = `https://${opts.address}${REPO_PATH}`;
  const ready = await waitFor(
    async () =>
      (await run(["curl", "-fsS", "--max-time", "2", "--cacert", tls.ca, "-o", "/dev/null", `${url}InRelease`]))
        .code === 0,
    15_000,
    50,
  );
  if (!ready) {
    const log = existsSync(p.serverLog) ? readFileSync(p.serverLog, "utf8").slice(-2000) : "";
    throw new Error(`the lab's apt repository did not answer at ${url} within 15 s: ${log}`);
  }
  opts.log(
    `apt repository at ${url} (key ${fingerprint}), ${readdirSync(p.repo).filter((f) => f.endsWith(".deb")).length} packages, ready in ${since()}`,
  );
  return { url, keyUrl: `${url}Release.key`, fingerprint, caCert, dir: p.repo, accessLog: p.accessLog };
}
