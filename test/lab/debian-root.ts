// The root file systems lab hosts boot from. Debian 12 is this machine's own `/`; Debian 13
// (trixie) is a root built once with debootstrap from the Debian mirror this machine's apt
// already uses, cached under /var/cache/kubeadm-ha-lab keyed by what goes into it, and built
// in a temporary directory renamed into place, so a killed build never leaves a half root.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { alive, must, run, which } from "./sys.ts";

export const LAB_OSES = ["debian12", "debian13"] as const;
export type LabOs = (typeof LAB_OSES)[number];

export function isLabOs(value: string): value is LabOs {
  return (LAB_OSES as readonly string[]).includes(value);
}

/** The OS a lab test runs on: KHA_LAB_OS (debian12 or debian13), else Debian 12. */
export function labOsFromEnv(env: Record<string, string | undefined> = process.env): LabOs {
  const v = env.KHA_LAB_OS?.trim() || "debian12";
  if (!isLabOs(v)) throw new Error(`KHA_LAB_OS is "${v}"; use one of ${LAB_OSES.join(", ")}`);
  return v;
}

/**
 * What each lab OS ships (major.minor), as the hosts report it: the versions the lab proves the
 * rendered configs and the etcd toolkit on. etcdutl (snapshot status/restore) came with etcd 3.5.
 */
export const LAB_OS_VERSIONS: Record<LabOs, { haproxy: string; keepalived: string; etcd: string; etcdutl: boolean }> = {
  debian12: { haproxy: "2.6", keepalived: "2.2", etcd: "3.4", etcdutl: false },
  debian13: { haproxy: "3.0", keepalived: "2.3", etcd: "3.5", etcdutl: true },
};

export const ROOT_CACHE_DIR = "/var/cache/kubeadm-ha-lab";

/**
 * Debian 13's packages for a lab host: what the phase scripts, the ops commands and the
 * stand-ins run (bun itself comes from the checkout bound into every host). containerd is there
 * because `preinstalled` checks for it (the lab replaces its unit with an idle stand-in);
 * conntrack, iptables, ethtool and socat are binaries kubeadm's preflight looks for; gpg is what
 * prepare checks the apt signing key's fingerprint with (the lab's apt repository has only Kubernetes packages).
 */
export const DEBIAN13_PACKAGES = [
  "ca-certificates",
  "conntrack",
  "containerd",
  "curl",
  "dbus",
  "etcd-client",
  "etcd-server",
  "ethtool",
  "gpg",
  "haproxy",
  "iproute2",
  "iptables",
  "keepalived",
  "kmod",
  "libpam-systemd",
  "nftables",
  "openssh-server",
  "openssl",
  "procps",
  "socat",
  "sudo",
  "systemd",
  "systemd-sysv",
] as const;

const DEBIAN13 = { suite: "trixie", variant: "minbase", packages: DEBIAN13_PACKAGES };

/** Cache directory of the Debian 13 root: changes whenever the recipe does. */
export function debian13RootDir(): string {
  const key = createHash("sha256").update(JSON.stringify(DEBIAN13)).digest("hex").slice(0, 12);
  return `${ROOT_CACHE_DIR}/debian13-${key}`;
}

export interface AptMirror {
  uri: string;
  /** The keyring apt verifies this mirror with, when the configuration names a file. */
  keyring?: string;
}

/** The main Debian archive this machine's apt uses (not its -security or -updates suites). */
export function aptMirror(etc = "/etc/apt"): AptMirror {
  const isMain = (suite: string) => /^[a-z]+$/.test(suite);
  const dir = `${etc}/sources.list.d`;
  const files = existsSync(dir) ? readdirSync(dir).sort() : [];
  for (const f of files.filter((f) => f.endsWith(".sources"))) {
    for (const stanza of readFileSync(`${dir}/${f}`, "utf8").split(/\n\s*\n/)) {
      const field = (name: string) =>
        new RegExp(`^${name}:[ \\t]*(.*)$`, "mi").exec(stanza.replace(/^#.*$/gm, ""))?.[1]?.trim() ?? "";
      if (!field("Types").split(/\s+/).includes("deb") || /^no$/i.test(field("Enabled"))) continue;
      const uri = field("URIs").split(/\s+/)[0];
      const signedBy = field("Signed-By");
      if (uri && field("Suites").split(/\s+/).some(isMain)) {
        return { uri, keyring: signedBy.startsWith("/") ? signedBy : undefined };
      }
    }
  }
  const lists = [`${etc}/sources.list`, ...files.filter((f) => f.endsWith(".list")).map((f) => `${dir}/${f}`)];
  for (const file of lists.filter(existsSync)) {
    for (const line of readFileSync(file, "utf8").split("\n")) {
      const m = /^deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)/.exec(line.trim());
      if (m && isMain(m[3]!)) {
        const signedBy = /signed-by=(\/\S+)/.exec(m[1] ?? "")?.[1];
        return { uri: m[2]!, keyring: signedBy };
      }
    }
  }
  throw new Error(
    `no Debian archive found in ${etc}/sources.list or ${dir}: the Debian 13 lab root is built from the mirror this machine's apt uses`,
  );
}

/** Why hosts on `os` cannot boot here, or undefined when they can. */
export function rootMissing(os: LabOs): string | undefined {
  if (os === "debian12" || existsSync(debian13RootDir())) return undefined;
  if (!which("debootstrap"))
    return "debootstrap is not installed (apt-get install debootstrap); Debian 13 lab hosts boot from a root it builds";
  try {
    aptMirror();
  } catch (e) {
    return (e as Error).message;
  }
  return undefined;
}

/**
 * Delete a build directory, first unmounting what a killed debootstrap left mounted in it (proc,
 * sys, maybe a bound /dev): a recursive delete must never reach through a mount.
 */
async function removeTree(path: string): Promise<void> {
  if (!existsSync(path)) return;
  const inside = () =>
    readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .map((l) => l.split(" ")[4]?.replace(/\\040/g, " ") ?? "")
      .filter((m) => m === path || m.startsWith(`${path}/`))
      .sort((a, b) => b.length - a.length);
  for (const m of inside()) if ((await run(["umount", m])).code !== 0) await run(["umount", "-l", m]);
  const left = inside();
  if (left.length > 0) throw new Error(`cannot remove ${path}: still mounted there: ${left.join(", ")}`);
  rmSync(path, { recursive: true, force: true });
}

/** The lower dir of every host's overlay for `os`; builds (once) the Debian 13 root. */
export async function labRoot(os: LabOs, log: (message: string) => void): Promise<string> {
  if (os === "debian12") return "/";
  const dir = debian13RootDir();
  if (existsSync(dir)) return dir;
  if (!which("debootstrap")) throw new Error("debootstrap is not installed (apt-get install debootstrap)");
  mkdirSync(ROOT_CACHE_DIR, { recursive: true, mode: 0o755 });
  // Leftovers of builds whose process is gone (killed runs); a live build keeps its own.
  for (const e of readdirSync(ROOT_CACHE_DIR)) {
    const pid = /^\.build-(\d+)$/.exec(e)?.[1];
    if (pid && !alive(Number(pid))) await removeTree(`${ROOT_CACHE_DIR}/${e}`);
  }
  const tmp = `${ROOT_CACHE_DIR}/.build-${process.pid}`;
  await removeTree(tmp);
  const mirror = aptMirror();
  const start = Date.now();
  log(`building the Debian 13 root in ${dir} (debootstrap ${DEBIAN13.suite}, once per package list)`);
  try {
    // biome-ignore format: argv
    await must([
      "debootstrap", `--variant=${DEBIAN13.variant}`, `--include=${DEBIAN13.packages.join(",")}`,
      ...(mirror.keyring ? [`--keyring=${mirror.keyring}`] : []), DEBIAN13.suite, tmp, mirror.uri,
    ], { timeoutMs: 20 * 60_000 });
    // Every host gets its own host keys; none is shared through the cache.
    for (const f of readdirSync(`${tmp}/etc/ssh`)) if (f.startsWith("ssh_host_")) rmSync(`${tmp}/etc/ssh/${f}`);
    rmSync(`${tmp}/var/cache/apt/archives`, { recursive: true, force: true });
    mkdirSync(`${tmp}/var/cache/apt/archives/partial`, { recursive: true });
  } catch (e) {
    await removeTree(tmp);
    throw e;
  }
  try {
    renameSync(tmp, dir);
  } catch (e) {
    // Another process finished the same root first: use that one.
    await removeTree(tmp);
    if (!existsSync(dir)) throw e;
  }
  // Roots of older recipes are no use any more, unless a running lab still boots from one.
  const mounts = readFileSync("/proc/self/mountinfo", "utf8");
  for (const e of readdirSync(ROOT_CACHE_DIR)) {
    const old = `${ROOT_CACHE_DIR}/${e}`;
    if (e.startsWith("debian13-") && old !== dir && !mounts.includes(`lowerdir=${old}`))
      rmSync(old, { recursive: true, force: true });
  }
  log(`Debian 13 root ready in ${((Date.now() - start) / 1000).toFixed(0)} s`);
  return dir;
}
