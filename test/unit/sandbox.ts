// A sandbox that runs rendered phase scripts and ops scripts for real, as root, without
// touching the machine: a private mount, PID and network namespace (unshare) with the root
// file system read-only, /etc and /var as overlays whose writes vanish, tmpfs over /tmp,
// /run, /root and /usr/local, no network but loopback, and a PATH of recording stand-ins
// (systemctl, kubeadm, kubectl, curl, apt-get, haproxy, keepalived, modprobe, sysctl, ...)
// plus a fixed list of harmless real tools. A command a script runs that is neither fails
// with "command not found", so nothing reaches the host by accident.
import { createHash } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { Step } from "../../lib/render/types.ts";

/** Where payloads point their canaries; it exists (empty) in every sandbox. */
export const CANARY_DIR = "/tmp/kha-canary";

/** The stand-ins: one script under many names. */
const STUBS = [
  "apt-cache",
  "apt-get",
  "apt-mark",
  "containerd",
  "crictl",
  "curl",
  "dpkg-query",
  "etcdctl",
  "etcdutl",
  "haproxy",
  "ip",
  "keepalived",
  "kubeadm",
  "kubectl",
  "modprobe",
  "nft",
  "python3",
  "sleep",
  "socat",
  "ss",
  "swapoff",
  "sysctl",
  "systemctl",
  "systemd-detect-virt",
  "systemd-run",
  "systemd-tmpfiles",
  "gpg",
  "timedatectl",
  "timeout",
];

/** Real tools the scripts may use: they only read, or write inside the sandbox's own trees. */
const REAL_TOOLS = [
  "awk",
  "base64",
  "basename",
  "cat",
  "chmod",
  "chown",
  "cmp",
  "cp",
  "cut",
  "date",
  "dirname",
  "env",
  "find",
  "grep",
  "head",
  "id",
  "install",
  "ln",
  "ls",
  "mkdir",
  "mktemp",
  "mv",
  "nohup",
  "openssl",
  "paste",
  "readlink",
  "rm",
  "sed",
  "seq",
  "setsid",
  "sh",
  "bash",
  "sha256sum",
  "sort",
  "stat",
  "tac",
  "tail",
  "tee",
  "touch",
  "tr",
  "uname",
  "wc",
  "xargs",
];

/**
 * The stand-in. It logs its argv (one line, %q-quoted), never evaluates an argument, refuses
 * subcommands it does not know (as the real tools do), checks that files it is told to read
 * exist, and answers the calls the scripts make the way the real tool would on a fresh host.
 */
const STUB = String.raw`#!/bin/bash
name="${"$"}{0##*/}"
{ printf '%q' "$name"; printf ' %q' "$@"; printf '\n'; } >>"${"$"}{KHA_LOG:-/dev/null}"
V="${"$"}{KHA_KUBE_VERSION:-1.31.4}"
fail() { printf '%s stand-in: %s\n' "$name" "$*" >&2; exit 1; }
# --config FILE / -f FILE / -o FILE values, for the checks below.
opt() { local want="$1"; shift; while [ $# -gt 0 ]; do if [ "$1" = "$want" ]; then printf '%s' "${"$"}{2:-}"; return 0; fi; shift; done; return 1; }
need_file() { [ -z "$1" ] || [ -r "$1" ] || fail "cannot read $1"; }
case "$name" in
  kubeadm)
    need_file "$(opt --config "$@")"
    case "${"$"}{1:-}" in
      init)
        [ "${"$"}{2:-}" = phase ] && exit 0
        mkdir -p /etc/kubernetes/manifests
        : >/etc/kubernetes/admin.conf; : >/etc/kubernetes/kubelet.conf; : >/etc/kubernetes/manifests/kube-apiserver.yaml ;;
      join) mkdir -p /etc/kubernetes; : >/etc/kubernetes/kubelet.conf ;;
      version) echo "v$V" ;;
      token | reset | config | certs | upgrade) ;;
      *) fail "unknown command ${"$"}{1:-}" ;;
    esac ;;
  kubectl)
    args=" $* "
    case "$args" in
      *" apply "*) f="$(opt -f "$@")"; case "$f" in /*) need_file "$f" ;; https://*) ;; *) fail "no manifest given" ;; esac ;;
      *" get service "*) echo 30080 ;;
      *" version "*) exit 1 ;;
      *" get "* | *" create "* | *" delete "* | *" scale "* | *" rollout "* | *" expose "* | *" describe "*) ;;
      *) fail "unknown command $*" ;;
    esac ;;
  curl)
    # A CA-pinned probe is init's "does a cluster answer already?": none does in the sandbox.
    case " $* " in *" --cacert "*) exit 7 ;; esac
    out="$(opt -o "$@")"; [ -n "$out" ] && [ "$out" != /dev/null ] && printf 'stand-in download\n' >"$out"
    fmt="$(opt -w "$@")"; [ -n "$fmt" ] && printf '%b' "${"$"}{fmt//%\{http_code\}/200}" ;;
  apt-cache) [ "${"$"}{1:-}" = madison ] && printf '   %s | %s-1.1 | https://stand-in.example/ Packages\n' "${"$"}{2:-}" "$V" ;;
  dpkg-query) exit 1 ;;
  apt-mark) [ "${"$"}{1:-}" = showhold ] && exit 0 ;;
  containerd) [ "${"$"}{1:-} ${"$"}{2:-}" = "config dump" ] && printf '          SystemdCgroup = true\n' ;;
  systemctl) case "${"$"}{1:-}" in is-enabled) exit 1 ;; esac ;;
  systemd-detect-virt) echo none; exit 1 ;;
  timedatectl) echo yes ;;
  # The key the injection spec pins (kubernetes.packages.aptKeyFingerprint).
  gpg) echo "fpr:::::::::DE15B14486CD377B9E876E1A234654DA9A296436:" ;;
  sysctl) [ "${"$"}{1:-}" = -n ] && echo 1 ;;
  ss) echo "LISTEN 0 4096 *:8443 *:*" ;;
  ip) echo "2: eth0    inet 10.0.0.10/24 scope global eth0" ;;
  etcdctl | etcdutl)
    case " $* " in
      *" snapshot save "*) for a in "$@"; do last="$a"; done; : >"$last" ;;
      *" snapshot status "*) echo '{"hash":1,"revision":2,"totalKey":3,"totalSize":4096}' ;;
      *" version "*) echo "etcdctl version: 3.5.15" ;;
      *" member list "*) echo '{"header":{"cluster_id":1},"members":[{"ID":1,"name":"cp-1","peerURLs":["https://10.0.0.11:2380"],"clientURLs":["https://10.0.0.11:2379"]}]}' ;;
      *" endpoint health "*) echo "https://127.0.0.1:2379 is healthy: successfully committed proposal: took = 1ms" ;;
      *" endpoint status "*) echo '[{"Status":{"header":{"member_id":1},"leader":1}}]' ;;
      *) fail "unknown command $*" ;;
    esac ;;
esac
exit 0
`;

/**
 * Runs inside the namespaces: builds the mounts, then each plan line in order —
 * "phase DIR" (a staged step: DIR/run.sh with DIR/root and DIR/secrets, as the Terraform
 * step stages it), "stdin FILE" (bash -s, as the ops commands run scripts), "file PATH"
 * (a rendered script installed by an earlier phase), "touch PATH" (a file the host has) —
 * and lists the canaries any of them created.
 */
const DRIVER = `#!/bin/bash
set -u
job="$1"
mount --make-rprivate /
cd "$job" || exit 90
mount -t tmpfs kha-tmp /tmp
mkdir /tmp/.kha-job && mount --bind /proc/self/cwd /tmp/.kha-job || exit 91
cd /
mount --rbind / / && mount -o remount,bind,ro / || exit 92
mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys || exit 93
mount -o remount,bind,ro /sys || exit 94
for d in etc var; do
  mkdir -p "/tmp/.ov/$d/up" "/tmp/.ov/$d/work"
  mount -t overlay "kha-$d" -o "lowerdir=/$d,upperdir=/tmp/.ov/$d/up,workdir=/tmp/.ov/$d/work" "/$d" || exit 95
done
for d in /run /root /usr/local; do mount -t tmpfs kha "$d" || exit 96; done
mkdir -p /run/systemd/system ${CANARY_DIR}
J=/tmp/.kha-job
mkdir -p "$J/results"
export PATH="$J/bin" KHA_LOG="$J/results/calls.log" HOME=/root LC_ALL=C TMPDIR=/tmp
# shellcheck disable=SC1091
. "$J/env"
n=0
while read -r kind arg; do
  n=$((n + 1))
  r="$J/results/$n"
  case "$kind" in
    phase) rm -rf /tmp/kha-stage && cp -a "$J/$arg" /tmp/kha-stage && /bin/bash /tmp/kha-stage/run.sh <&- >"$r.out" 2>"$r.err" ;;
    stdin) /bin/bash -s <"$J/$arg" >"$r.out" 2>"$r.err" ;;
    file) /bin/bash "$arg" <&- >"$r.out" 2>"$r.err" ;;
    touch) mkdir -p "$(dirname "$arg")" && : >"$arg" ;;
  esac
  echo $? >"$r.rc"
done <"$J/plan"
ls -A ${CANARY_DIR} >"$J/results/canaries"
`;

// ---- payloads ------------------------------------------------------------------------------------

/** Shell metacharacters that run `touch CANARY_DIR/<id>` when a value is not quoted. */
export function payloads(id: string): string[] {
  const c = (n: string) => `${CANARY_DIR}/${id}-${n}`;
  return [
    `$(touch ${c("a")})`,
    `\`touch ${c("b")}\``,
    `;touch ${c("c")};`,
    `"; touch ${c("d")}; echo "`,
    `'; touch ${c("e")}; echo '`,
    `\ntouch ${c("f")}\n`,
    `$(touch\${IFS}${c("g")})`,
    // Only characters an https URL may hold unencoded: what a URL field lets through.
    `$(touch$IFS${c("h")})`,
    `';touch$IFS${c("i")};'`,
    `&touch$IFS${c("j")}&`,
  ];
}

let supportCache: { ok: boolean; why: string } | undefined;

/** Whether the sandbox can run here: root, unshare, overlayfs. */
export function sandboxSupport(): { ok: boolean; why: string } {
  if (supportCache) return supportCache;
  if (process.getuid?.() !== 0) supportCache = { ok: false, why: "the sandbox needs root (mount namespaces)" };
  else if (!Bun.which("unshare")) supportCache = { ok: false, why: "unshare (util-linux) is not installed" };
  else {
    const r = runJob(new Job(), 30_000);
    supportCache = r.ok ? { ok: true, why: "" } : { ok: false, why: `the sandbox does not start: ${r.error}` };
  }
  return supportCache;
}

/** Under CI a missing prerequisite fails; elsewhere the caller skips with the reason. */
export function requireSandbox(): boolean {
  const s = sandboxSupport();
  if (s.ok) return true;
  if (process.env.CI === "true") throw new Error(`the shell-injection sandbox is required in CI: ${s.why}`);
  console.warn(`skipping: ${s.why}`);
  return false;
}

export interface Secrets {
  [name: string]: string;
}

export interface Run {
  label: string;
  rc: number;
  out: string;
  err: string;
}

export interface JobResult {
  ok: boolean;
  error?: string;
  runs: Run[];
  canaries: string[];
  calls: string;
}

let root: string | undefined;
let seq = 0;

/** Remove the (by then empty) directory that held the jobs; for a test file's afterAll. */
export function removeSandboxDir(): void {
  if (root && !process.env.KHA_KEEP_SANDBOX) rmSync(root, { recursive: true, force: true });
  root = undefined;
}

/** One sandbox run: a plan of phase steps, stdin scripts and files, executed in order. */
export class Job {
  readonly dir: string;
  private readonly plan: string[] = [];
  readonly labels: string[] = [];

  constructor(env: Record<string, string> = {}) {
    root ??= mkdtempSync(join(tmpdir(), "kha-sandbox-"));
    this.dir = join(root, `job-${++seq}`);
    mkdirSync(join(this.dir, "bin"), { recursive: true });
    writeFileSync(join(this.dir, "stub"), STUB, { mode: 0o755 });
    writeFileSync(join(this.dir, "driver"), DRIVER, { mode: 0o755 });
    for (const name of STUBS) symlinkSync("../stub", join(this.dir, "bin", name));
    for (const name of REAL_TOOLS) {
      const path = Bun.which(name, { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" });
      if (path) symlinkSync(path, join(this.dir, "bin", name));
    }
    const lines = Object.entries({ KHA_KUBE_VERSION: "1.31.4", ...env }).map(
      ([k, v]) => `export ${k}='${v.replace(/'/g, `'\\''`)}'`,
    );
    writeFileSync(join(this.dir, "env"), `${lines.join("\n")}\n`);
  }

  /** A phase step (or a run a step makes on another node) staged the way the Terraform step stages it. */
  phase(step: Pick<Step, "phase" | "node" | "files" | "secrets" | "script">, secrets: Secrets): this {
    const stage = `stage-${this.plan.length + 1}`;
    for (const f of step.files) {
      const p = join(this.dir, stage, "root", f.path);
      mkdirSync(dirname(p), { recursive: true });
      writeFileSync(p, f.content);
      chmodSync(p, Number.parseInt(f.mode, 8));
    }
    mkdirSync(join(this.dir, stage, "secrets"), { recursive: true });
    for (const name of step.secrets) writeFileSync(join(this.dir, stage, "secrets", name), secrets[name] ?? "");
    writeFileSync(join(this.dir, stage, "run.sh"), step.script);
    return this.add(`phase ${stage}`, `${step.phase} on ${step.node.name}`);
  }

  /** A script run as `bash -s` with the script on stdin (how the ops commands run theirs). */
  stdin(script: string, label: string): this {
    const file = `script-${this.plan.length + 1}.sh`;
    writeFileSync(join(this.dir, file), script);
    return this.add(`stdin ${file}`, label);
  }

  /** A script an earlier phase installed on the host, run by path. */
  file(path: string, label: string): this {
    return this.add(`file ${path}`, label);
  }

  /** A file the host is expected to have (e.g. a manifest named by an absolute path). */
  touch(path: string): this {
    return this.add(`touch ${path}`, `touch ${path}`);
  }

  private add(line: string, label: string): this {
    if (line.includes("\n")) throw new Error(`plan line with a newline: ${JSON.stringify(line)}`);
    this.plan.push(line);
    this.labels.push(label);
    return this;
  }

  /** sha256 of everything the job would run, to run identical jobs once. */
  key(): string {
    const h = createHash("sha256");
    const walk = (d: string) => {
      for (const e of new Bun.Glob("**/*").scanSync({ cwd: d, onlyFiles: true })) {
        if (e.startsWith("bin/")) continue;
        h.update(e)
          .update("\0")
          .update(readFileSync(join(d, e)))
          .update("\0");
      }
    };
    walk(this.dir);
    return h.update(this.plan.join("\n")).digest("hex");
  }

  /** Remove a job that will not run (a duplicate of one that does). */
  discard(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  writePlan(): void {
    writeFileSync(join(this.dir, "plan"), `${this.plan.join("\n")}\n`);
  }
}

function collect(job: Job, code: number | null, stderr: string): JobResult {
  try {
    return read(job, code, stderr);
  } finally {
    // KHA_KEEP_SANDBOX=1 keeps the job directories, to re-run one by hand: unshare ... bash DIR/driver DIR.
    if (!process.env.KHA_KEEP_SANDBOX) rmSync(job.dir, { recursive: true, force: true });
  }
}

function read(job: Job, code: number | null, stderr: string): JobResult {
  const read = (f: string) => {
    try {
      return readFileSync(join(job.dir, "results", f), "utf8");
    } catch {
      return undefined;
    }
  };
  const canaryList = read("canaries");
  if (canaryList === undefined)
    return {
      ok: false,
      error: `driver exit ${code}: ${stderr.trim().slice(0, 500)}`,
      runs: [],
      canaries: [],
      calls: "",
    };
  const runs = job.labels.map((label, i) => ({
    label,
    rc: Number(read(`${i + 1}.rc`) ?? "-1"),
    out: read(`${i + 1}.out`) ?? "",
    err: read(`${i + 1}.err`) ?? "",
  }));
  return { ok: true, runs, canaries: canaryList.split("\n").filter(Boolean), calls: read("calls.log") ?? "" };
}

const unshare = (job: Job) => [
  "unshare",
  "--mount",
  "--pid",
  "--net",
  "--fork",
  "--mount-proc",
  "--",
  "/bin/bash",
  join(job.dir, "driver"),
  job.dir,
];

export function runJob(job: Job, timeoutMs = 120_000): JobResult {
  job.writePlan();
  const p = Bun.spawnSync(unshare(job), { timeout: timeoutMs, stdout: "pipe", stderr: "pipe" });
  return collect(job, p.exitCode, p.stderr.toString());
}

export async function runJobAsync(job: Job, timeoutMs = 180_000): Promise<JobResult> {
  job.writePlan();
  const p = Bun.spawn(unshare(job), { stdout: "pipe", stderr: "pipe", timeout: timeoutMs });
  const [stderr, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
  return collect(job, code, stderr);
}

/** Run tasks a few at a time (sandboxes and commands are CPU-bound). */
export async function inParallel<T, R>(items: T[], run: (item: T) => Promise<R>, parallel = 4): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < items.length; i = next++) results[i] = await run(items[i]!);
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return results;
}

export const runJobs = (jobs: Job[]): Promise<JobResult[]> => inParallel(jobs, (job) => runJobAsync(job));
