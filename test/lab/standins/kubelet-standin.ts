// LAB STAND-IN FOR THE KUBELET'S STATIC POD RUNNER — not the kubelet. Used only inside lab
// hosts (test/lab), run by kubelet-standin.service.
//
// It does the one thing of the kubelet's the lab needs: every regular file in the manifests
// directory whose name does not start with "." (as the kubelet reads it) that holds a Pod is
// "run" by starting containers[0].command + args as a plain process on the host (no
// containers, no images; hostPath paths are real paths, DirectoryOrCreate ones are created).
// A file moved away stops its process (SIGTERM, SIGKILL after the grace period); a changed
// file restarts it; a process that exits on its own is restarted with a growing back-off,
// like restartPolicy: Always. Before every start the pod is held to what a real kubelet and
// container would allow (pod-rules.ts: host network, files under mounts, hostPath types,
// capabilities); a pod that breaks one is not started, its reason logged, and retried with
// the same back-off (a hostPath File may appear a moment after its manifest).
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { parse } from "yaml";
import { type Fs, type PodDoc, podProblems } from "./pod-rules.ts";

const MANIFESTS = process.env.KUBELET_STANDIN_MANIFESTS ?? "/etc/kubernetes/manifests";
const LOGS = process.env.KUBELET_STANDIN_LOGS ?? "/var/log/kubelet-standin";
const STATUS = process.env.KUBELET_STANDIN_STATUS ?? "/run/kubelet-standin/pods.json";
const GRACE_MS = Number(process.env.KUBELET_STANDIN_GRACE_MS ?? 10_000);
const POLL_MS = Number(process.env.KUBELET_STANDIN_POLL_MS ?? 250);

interface PodSpec {
  name: string;
  doc: PodDoc;
  argv: string[];
  env: Record<string, string>;
  dirs: string[];
}

interface Pod {
  file: string;
  hash: string;
  spec?: PodSpec;
  proc?: ChildProcess;
  pid?: number;
  restarts: number;
  /** Earliest time of the next start after an exit (back-off). */
  notBefore: number;
  /** Set while a stop is in progress; reconcile waits for it. */
  busy?: Promise<void>;
}

const pods = new Map<string, Pod>();
const log = (msg: string) => process.stdout.write(`kubelet-standin: ${msg}\n`);

function parsePod(file: string, text: string): PodSpec | string {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (e) {
    return `not YAML: ${(e as Error).message.split("\n")[0]}`;
  }
  const pod = doc as {
    kind?: string;
    metadata?: { name?: string };
    spec?: {
      containers?: { command?: string[]; args?: string[]; env?: { name: string; value?: string }[] }[];
      volumes?: { hostPath?: { path?: string; type?: string } }[];
    };
  };
  if (pod?.kind !== "Pod") return "not a Pod";
  const c = pod.spec?.containers?.[0];
  const argv = [...(c?.command ?? []), ...(c?.args ?? [])].map(String);
  if (argv.length === 0) return "containers[0] has no command (the stand-in cannot run images)";
  const env: Record<string, string> = {};
  for (const e of c?.env ?? []) env[e.name] = String(e.value ?? "");
  const dirs = (pod.spec?.volumes ?? [])
    .filter((v) => v.hostPath?.type === "DirectoryOrCreate" && v.hostPath.path)
    .map((v) => v.hostPath!.path!);
  return { name: pod.metadata?.name ?? file, doc: pod as PodDoc, argv, env, dirs };
}

/** The checkout this stand-in runs from: the lab's stand-in programs in it play the images' binaries. */
const IMAGE_PATHS = [resolve(import.meta.dir, "../../..")];

const hostFs: Fs = {
  kind(path) {
    try {
      const st = statSync(path);
      return st.isDirectory() ? "dir" : st.isFile() ? "file" : undefined;
    } catch {
      return undefined;
    }
  },
  read(path) {
    try {
      return statSync(path).size < 1_000_000 ? readFileSync(path, "utf8") : undefined;
    } catch {
      return undefined;
    }
  },
};

function start(pod: Pod): void {
  const spec = pod.spec!;
  for (const d of spec.dirs) mkdirSync(d, { recursive: true, mode: 0o755 });
  const problems = podProblems(spec.doc, hostFs, IMAGE_PATHS);
  if (problems.length > 0) {
    pod.restarts++;
    const backoff = Math.min(10_000, 1000 * 2 ** Math.min(pod.restarts - 1, 4));
    pod.notBefore = Date.now() + backoff;
    log(
      `not starting ${spec.name} (a kubelet would not run it as written): ${problems.join("; ")}; retrying in ${backoff} ms`,
    );
    return;
  }
  mkdirSync(LOGS, { recursive: true });
  const out = openSync(`${LOGS}/${spec.name}.log`, "a");
  const env = { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", HOME: "/root", ...spec.env };
  const proc = spawn(spec.argv[0]!, spec.argv.slice(1), { detached: true, stdio: ["ignore", out, out], env });
  pod.proc = proc;
  pod.pid = proc.pid;
  log(`started ${spec.name} from ${pod.file} (pid ${proc.pid})`);
  proc.on("error", (e) => log(`${spec.name}: ${e.message}`));
  proc.on("exit", (code, signal) => {
    if (pod.proc !== proc) return;
    pod.proc = undefined;
    pod.pid = undefined;
    pod.restarts++;
    const backoff = Math.min(10_000, 1000 * 2 ** Math.min(pod.restarts - 1, 4));
    pod.notBefore = Date.now() + backoff;
    log(`${spec.name} exited (code ${code}, signal ${signal}); restarting in ${backoff} ms`);
  });
}

function stop(pod: Pod): Promise<void> {
  const proc = pod.proc;
  pod.proc = undefined;
  pod.pid = undefined;
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  const name = pod.spec?.name ?? pod.file;
  const t0 = Date.now();
  return new Promise<void>((resolve) => {
    const kill = (sig: NodeJS.Signals) => {
      try {
        process.kill(-proc.pid!, sig);
      } catch {
        /* already gone */
      }
    };
    const timer = setTimeout(() => {
      log(`${name} ignored SIGTERM for ${GRACE_MS} ms: SIGKILL`);
      kill("SIGKILL");
    }, GRACE_MS);
    proc.once("exit", () => {
      clearTimeout(timer);
      // Children the process left in its group go too, as with a container.
      kill("SIGKILL");
      log(`stopped ${name} in ${Date.now() - t0} ms`);
      resolve();
    });
    kill("SIGTERM");
  });
}

function readManifests(): Map<string, string> {
  const found = new Map<string, string>();
  let names: string[] = [];
  try {
    names = readdirSync(MANIFESTS);
  } catch {
    return found;
  }
  for (const name of names) {
    if (name.startsWith(".")) continue;
    const path = `${MANIFESTS}/${name}`;
    try {
      if (!statSync(path).isFile()) continue;
      found.set(name, readFileSync(path, "utf8"));
    } catch {
      /* moved away between readdir and read */
    }
  }
  return found;
}

function reconcile(): void {
  const files = readManifests();
  for (const [file, pod] of pods) {
    if (pod.busy || files.has(file)) continue;
    log(`${file} removed`);
    pod.busy = stop(pod).then(() => {
      pods.delete(file);
    });
  }
  for (const [file, text] of files) {
    const hash = createHash("sha256").update(text).digest("hex");
    let pod = pods.get(file);
    if (pod?.busy) continue;
    if (pod && pod.hash !== hash) {
      log(`${file} changed`);
      const old = pod;
      old.busy = stop(old).then(() => {
        pods.delete(file);
      });
      continue;
    }
    if (!pod) {
      const spec = parsePod(file, text);
      pod = { file, hash, restarts: 0, notBefore: 0 };
      if (typeof spec === "string") log(`ignoring ${file}: ${spec}`);
      else pod.spec = spec;
      pods.set(file, pod);
    }
    if (pod.spec && !pod.proc && Date.now() >= pod.notBefore) start(pod);
  }
  writeStatus();
}

let lastStatus = "";
function writeStatus(): void {
  const status = JSON.stringify(
    [...pods.values()].map((p) => ({ file: p.file, name: p.spec?.name, pid: p.pid ?? null, restarts: p.restarts })),
  );
  if (status === lastStatus) return;
  lastStatus = status;
  try {
    mkdirSync(STATUS.slice(0, STATUS.lastIndexOf("/")), { recursive: true });
    writeFileSync(STATUS, `${status}\n`);
  } catch {
    /* status is a convenience */
  }
}

let shuttingDown = false;
async function shutdown(): Promise<void> {
  if (shuttingDown) return;
  shuttingDown = true;
  clearInterval(timer);
  await Promise.all([...pods.values()].map((p) => p.busy ?? stop(p)));
  process.exit(0);
}

process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
log(`watching ${MANIFESTS} every ${POLL_MS} ms (grace ${GRACE_MS} ms)`);
reconcile();
const timer = setInterval(reconcile, POLL_MS);
