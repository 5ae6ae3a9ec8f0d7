// The etcd toolkit's measurements (issue 4), on the lab's three-member TLS etcd 3.4:
//   1. `etcd:backup` wall time vs the plain way on the same cluster: `etcdctl snapshot save` on the
//      control plane with kubeadm's client certificate, then `scp` of the file to this machine;
//   2. `etcd:restore FILE --yes` of all three members, from command start to "etcd healthy" and to exit;
// both for two data sizes (filled with random 512 KiB values through etcd's gRPC gateway), each run
// --runs times (median/min/max). A profile pass per size times each step of the backup and of the
// restore's upload in-process, to show where the extra time goes.
//
//   bun test/bench/etcd-backup.ts [--runs 3] [--sizes 50,300] [--json] [--md FILE] [--reuse] [--no-profile] [--restore-runs N] [--keep]
//   bun test/bench/etcd-backup.ts --render RESULTS.json [--md FILE]   (tables again from a saved --json run)
//
// Root only (the lab); contacts lab addresses only. Not part of CI.
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Client } from "ssh2";
import {
  endpointHealth,
  etcdctlFlags,
  KUBEADM_ETCD_ACCESS,
  memberList,
  probeNode,
  remoteSnapshotStatus,
} from "../../lib/etcd/remote.ts";
import { checkEmbeddedHash, fileSha256, localSnapshotStatus } from "../../lib/etcd/snapshot.ts";
import { connectNode, type Remote } from "../../lib/remote/ssh.ts";
import { loadSpec } from "../../lib/spec/load.ts";
import {
  labDown,
  labEtcdAllHealthy,
  labEtcdctl,
  labExec,
  labPaths,
  labUp,
  PROJECT_ROOT,
  sshArgv,
  waitLabEtcdHealthy,
} from "../lab/lab.ts";

const { values: args } = parseArgs({
  options: {
    runs: { type: "string", default: "3" },
    sizes: { type: "string", default: "50,300" },
    json: { type: "boolean", default: false },
    md: { type: "string" },
    reuse: { type: "boolean", default: false },
    "no-profile": { type: "boolean", default: false },
    "restore-runs": { type: "string" },
    keep: { type: "boolean", default: false },
    render: { type: "string" },
  },
});
const RUNS = Number(args.runs);
/** Restores per size (default --runs; at least 1: its numbers are part of every table). */
const RESTORE_RUNS = Math.max(1, Number(args["restore-runs"] ?? RUNS));
const SIZES_MB = String(args.sizes)
  .split(",")
  .map(Number)
  .sort((a, b) => a - b);
const BUN = `${PROJECT_ROOT}/node_modules/.bin/bun`;
const NODE = "cp-1";
const ADDRESS = "198.18.0.11";
const VALUE_BYTES = 512 * 1024;
/** etcd's default backend quota; we stop well short of it and change nothing in etcd's config. */
const QUOTA_BYTES = 2 * 1024 ** 3;
const say = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);
const sec = (ms: number) => ms / 1000;

// ---- statistics ---------------------------------------------------------------------------------

interface Stat {
  median: number;
  min: number;
  max: number;
  runs: number[];
}
const stat = (xs: number[]): Stat => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  return { median: mid, min: s[0]!, max: s[s.length - 1]!, runs: xs };
};
const f2 = (x: number) => x.toFixed(2);

// ---- running commands with timed progress lines -------------------------------------------------

interface Line {
  /** Seconds after the command was spawned at which the line arrived. */
  at: number;
  host: string;
  phase: string;
  message: string;
}
interface Timed {
  code: number;
  seconds: number;
  stdout: string;
  stderr: string;
  lines: Line[];
}

/** Spawn argv, stamp every stderr line (the tools' progress lines) with its arrival time. */
async function timed(argv: string[]): Promise<Timed> {
  const t0 = performance.now();
  const p = Bun.spawn(argv, { cwd: PROJECT_ROOT, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const lines: Line[] = [];
  let stderr = "";
  let partial = "";
  const readErr = (async () => {
    const dec = new TextDecoder();
    for await (const chunk of p.stderr) {
      const at = (performance.now() - t0) / 1000;
      const text = dec.decode(chunk, { stream: true });
      stderr += text;
      partial += text;
      const parts = partial.split("\n");
      partial = parts.pop() ?? "";
      for (const l of parts) {
        const m = /^\[\s*[\d.]+s\] (\S+)\s+(\S+)\s+(.*)$/.exec(l);
        if (m) lines.push({ at, host: m[1]!, phase: m[2]!, message: m[3]! });
      }
    }
  })();
  const [stdout, code] = await Promise.all([new Response(p.stdout).text(), p.exited, readErr]);
  return { code, seconds: (performance.now() - t0) / 1000, stdout, stderr, lines };
}

async function must(argv: string[]): Promise<Timed> {
  const r = await timed(argv);
  if (r.code !== 0) throw new Error(`${argv.slice(0, 4).join(" ")} ... exited ${r.code}: ${r.stderr.slice(-1500)}`);
  return r;
}

const firstAt = (t: Timed, pred: (l: Line) => boolean) => t.lines.find(pred)?.at;
const lastAt = (t: Timed, pred: (l: Line) => boolean) => t.lines.filter(pred).at(-1)?.at;

// ---- the lab's etcd ------------------------------------------------------------------------------

const gatewayTls = () => ({
  ca: readFileSync(labPaths.etcdCa, "utf8"),
  cert: readFileSync(labPaths.etcdCert, "utf8"),
  key: readFileSync(labPaths.etcdKey, "utf8"),
});

/** Put random values [from, to) through the gRPC gateway, `parallel` at a time (no etcdctl process per key). */
async function fill(prefix: string, from: number, to: number, parallel = 6): Promise<number> {
  const tls = gatewayTls();
  const eps = [11, 12, 13].map((i) => `https://198.18.0.${i}:2379/v3/kv/put`);
  let next = from;
  const worker = async (w: number) => {
    for (let i = next++; i < to; i = next++) {
      const body = JSON.stringify({
        key: Buffer.from(`${prefix}/${String(i).padStart(6, "0")}`).toString("base64"),
        value: randomBytes(VALUE_BYTES).toString("base64"),
      });
      const r = await fetch(eps[w % eps.length]!, { method: "POST", body, tls } as RequestInit);
      if (!r.ok) throw new Error(`put ${prefix}/${i}: HTTP ${r.status} ${(await r.text()).slice(0, 300)}`);
      await r.arrayBuffer();
    }
  };
  const t = performance.now();
  await Promise.all(Array.from({ length: parallel }, (_, w) => worker(w)));
  return sec(performance.now() - t);
}

async function keyCount(prefix: string): Promise<number> {
  const r = await labEtcdctl(["get", `${prefix}/`, "--prefix", "--keys-only", "--limit=1", "-w", "json"]);
  if (r.code !== 0) throw new Error(`etcdctl get: ${r.stderr}`);
  return Number(/"count":(\d+)/.exec(r.stdout)?.[1] ?? 0);
}

/** Largest backend size over the members, in bytes (the quota applies per member). */
async function dbSize(): Promise<number> {
  const r = await labEtcdctl(["endpoint", "status", "-w", "json"]);
  if (r.code !== 0) throw new Error(`etcdctl endpoint status: ${r.stderr}`);
  return Math.max(...[...r.stdout.matchAll(/"dbSize":(\d+)/g)].map((m) => Number(m[1])));
}

/** After a good restore: drop every etcd data dir but the one the manifest runs on, so the tmpfs does not fill. */
async function pruneOldDataDirs(): Promise<void> {
  const sh = `cur="$(sed -n 's/^ *- --data-dir=//p' /etc/kubernetes/manifests/etcd.yaml | head -n 1)"
[ -n "$cur" ] && [ -d "$cur/member" ] || { echo "no current data dir ($cur)" >&2; exit 1; }
for d in /var/lib/etcd /var/lib/etcd-restore-*; do
  if [ -d "$d" ] && [ "$d" != "$cur" ]; then rm -rf -- "$d"; fi
done
rm -f /var/lib/kubeadm-ha/etcd-restore-*/snapshot.db`;
  for (const h of ["cp-1", "cp-2", "cp-3"]) {
    const r = await labExec(h, sh);
    if (r.code !== 0) throw new Error(`${h}: pruning old data dirs: ${r.stderr}`);
  }
}

// ---- backup: the toolkit and the plain way ---------------------------------------------------------

const SSH_OPTS = sshArgv(NODE, undefined, { user: "root" }).slice(1, -1); // everything between "ssh" and "root@addr": the plain baseline runs as root

interface BackupRun {
  seconds: number;
  bytes: number;
  /** From the tool's progress lines (arrival times): where the wall time went. */
  phases: Record<string, number>;
}

async function toolBackup(dir: string): Promise<BackupRun & { file: string }> {
  const r = await must([BUN, "scripts/etcd-backup.ts", "--spec", labPaths.spec, "--out", dir, "--json"]);
  const out = (JSON.parse(r.stdout) as { data: { file: string; node: string } }).data;
  if (out.node !== NODE) throw new Error(`the backup used ${out.node}; the baseline runs on ${NODE}`);
  const probing = firstAt(r, (l) => l.phase === "connect") ?? 0;
  const picked = firstAt(r, (l) => l.phase === "connect" && /healthy/.test(l.message)) ?? probing;
  const dl = firstAt(r, (l) => l.phase === "download") ?? picked;
  const done = firstAt(r, (l) => l.phase === "done") ?? dl;
  return {
    file: out.file,
    seconds: r.seconds,
    bytes: statSync(out.file).size,
    phases: {
      "bun start + spec": probing,
      "connect + probe + health": picked - probing,
      "snapshot save, streamed here as etcd writes it (+ local sha256 and embedded hash)": dl - picked,
      "remote snapshot status + member list + sidecars": done - dl,
      "remote cleanup + exit": r.seconds - done,
    },
  };
}

async function plainBackup(dir: string): Promise<BackupRun> {
  const remote = "/var/tmp/bench-plain-snapshot.db";
  const local = join(dir, "plain.db");
  const t0 = performance.now();
  await must([
    ...sshArgv(NODE, undefined, { user: "root" }),
    `ETCDCTL_API=3 etcdctl ${etcdctlFlags(KUBEADM_ETCD_ACCESS, `https://${ADDRESS}:2379`)} snapshot save ${remote} >/dev/null`,
  ]);
  const saved = performance.now();
  await must(["scp", "-q", ...SSH_OPTS, `root@${ADDRESS}:${remote}`, local]);
  const end = performance.now();
  const bytes = statSync(local).size;
  await must([...sshArgv(NODE, undefined, { user: "root" }), `rm -f ${remote}`]);
  rmSync(local);
  return {
    seconds: sec(end - t0),
    bytes,
    phases: { "ssh etcdctl snapshot save": sec(saved - t0), scp: sec(end - saved) },
  };
}

// ---- restore -----------------------------------------------------------------------------------------

interface RestoreRun {
  /** Command start to the tool's "N/N healthy" line (members healthy, full member list, new cluster ID). */
  healthy: number;
  /** Command start to exit (apiservers back, VIP or direct answer, commit). */
  total: number;
  /** Start until every apiserver answered /healthz directly again (polled from here). */
  apisBack: number;
  /** How long the apiservers did not all answer (the cluster's outage as clients see it). */
  apisDown: number;
  apiserver: string;
  etcdStopEach: number[];
  phases: Record<string, number>;
}

/** How long etcd and the apiserver took to exit after the kubelet stand-in's SIGTERM, slowest node (s). */
async function stopTimes(): Promise<{ etcd: number; apiserver: number; etcdEach: number[] }> {
  const each = await Promise.all(
    ["cp-1", "cp-2", "cp-3"].map(async (h) => {
      const r = await labExec(
        h,
        "journalctl -u kubelet-standin.service -o cat --no-pager | grep 'stopped ' | tail -n 20",
      );
      const last = (name: string) => {
        const m = [...r.stdout.matchAll(new RegExp(`stopped ${name} in (\\d+) ms`, "g"))].at(-1);
        return m ? Number(m[1]) / 1000 : Number.NaN;
      };
      return { etcd: last("etcd"), apiserver: last("kube-apiserver") };
    }),
  );
  return {
    etcd: Math.max(...each.map((e) => e.etcd)),
    apiserver: Math.max(...each.map((e) => e.apiserver)),
    etcdEach: each.map((e) => e.etcd),
  };
}

/**
 * Poll every apiserver directly (this lab has no load balancer on the VIP) and return a stopper
 * that says when, after their last failure, all three answered /healthz again (s after t0).
 */
function watchApiservers(t0: number): () => Promise<{ back?: number; down?: number }> {
  let stop = false;
  const samples: { at: number; ok: boolean }[] = [];
  const urls = [11, 12, 13].map((i) => `https://198.18.0.${i}:6443/healthz`);
  const loop = (async () => {
    while (!stop) {
      const at = (performance.now() - t0) / 1000;
      const oks = await Promise.all(
        urls.map((u) =>
          fetch(u, { tls: { rejectUnauthorized: false }, signal: AbortSignal.timeout(1000) } as RequestInit)
            .then((r) => r.ok)
            .catch(() => false),
        ),
      );
      samples.push({ at, ok: oks.every(Boolean) });
      await Bun.sleep(200);
    }
  })();
  return async () => {
    stop = true;
    await loop;
    let lastBad = -1;
    samples.forEach((s, i) => {
      if (!s.ok) lastBad = i;
    });
    const firstBad = samples.findIndex((s) => !s.ok);
    if (lastBad < 0 || lastBad === samples.length - 1) return {};
    const back = samples[lastBad + 1]!.at;
    // Down from the last good sample before the first failure (the earliest the outage can have begun).
    const downFrom = firstBad > 0 ? samples[firstBad - 1]!.at : samples[0]!.at;
    return { back, down: back - downFrom };
  };
}

async function restore(file: string, prefix: string, expectKeys: number): Promise<RestoreRun> {
  const t0 = performance.now();
  const stopWatch = watchApiservers(t0);
  const r = await timed([BUN, "scripts/etcd-restore.ts", file, "--yes", "--json", "--spec", labPaths.spec]);
  const watched = await stopWatch();
  const apisBack = watched.back;
  // The one JSON envelope {ok, command, data, error}: the restore's report is its data.
  const envelope = JSON.parse(r.stdout || "{}") as {
    data?: { status?: string; warnings?: string[]; apiserver?: string } | null;
    error?: { message: string; code: number } | null;
  };
  const report = { ...envelope.data, error: envelope.error?.message };
  // This lab (hosts only) has no load balancer and no admin.conf: the expected warnings (exit 3) are
  // the silent VIP and the kubeadm-config that could not be read.
  const labWarning = (w: string) =>
    /answers \/healthz directly but/.test(w) || /no control plane has \/etc\/kubernetes\/admin\.conf/.test(w);
  const onlyVipWarning =
    r.code === 3 &&
    report.status === "restored-with-warnings" &&
    (report.warnings?.length ?? 0) > 0 &&
    report.warnings!.every(labWarning);
  if (!(r.code === 0 && report.status === "restored") && !onlyVipWarning)
    throw new Error(
      `restore failed (exit ${r.code}, ${report.status}): ${report.error ?? report.warnings?.join("; ") ?? ""}\n${r.stderr.slice(-2000)}`,
    );
  const upload = firstAt(r, (l) => l.phase === "upload") ?? 0;
  const stopped = lastAt(r, (l) => l.phase === "stop") ?? upload;
  const started = lastAt(r, (l) => l.phase === "start") ?? stopped;
  const healthy = firstAt(r, (l) => l.host === "cluster" && l.phase === "etcd") ?? started;
  const api = firstAt(r, (l) => l.host === "cluster" && l.phase === "apiserver") ?? healthy;
  // The outcome, checked from outside: every member healthy and the snapshot's keys there.
  if (!(await labEtcdAllHealthy()))
    throw new Error("restore said it restored but etcd is not healthy on all three members");
  const n = await keyCount(prefix);
  if (n !== expectKeys) throw new Error(`after the restore ${prefix}/ has ${n} keys, the snapshot had ${expectKeys}`);
  const stops = await stopTimes();
  return {
    healthy,
    total: r.seconds,
    apisBack: apisBack ?? Number.NaN,
    apisDown: watched.down ?? Number.NaN,
    apiserver: report.apiserver ?? "",
    etcdStopEach: stops.etcdEach,
    phases: {
      "start + verify file + connect/probe 3 nodes": upload,
      "upload x3 + stop etcd/apiserver": stopped - upload,
      "  of which etcd SIGTERM to exit (slowest node)": stops.etcd,
      "  of which apiserver SIGTERM to exit (slowest node)": stops.apiserver,
      "snapshot restore + patch manifests": started - stopped,
      "etcd start until healthy": healthy - started,
      "healthy until all apiservers answer directly": (apisBack ?? Number.NaN) - healthy,
      "apiservers + VIP wait (tool)": api - healthy,
      "commit + exit": r.seconds - api,
    },
  };
}

// ---- profile: each backup step on its own, in-process --------------------------------------------------

function knownKey(host: string): string {
  const line = readFileSync(labPaths.knownHosts, "utf8")
    .split("\n")
    .find((l) => l.startsWith(`${host} `));
  if (!line) throw new Error(`${host} not in ${labPaths.knownHosts}`);
  return line.split(" ")[2]!;
}

/** A raw ssh2 client (host key checked against the lab's known_hosts) for SFTP fastGet/fastPut. */
function rawSsh(host: string): Promise<Client> {
  const expected = knownKey(host);
  return new Promise((res, rej) => {
    const c = new Client();
    c.on("ready", () => res(c)).on("error", rej);
    c.connect({
      host,
      port: 22,
      username: "root",
      privateKey: readFileSync(labPaths.key),
      hostVerifier: (key: Buffer) => key.toString("base64") === expected,
    });
  });
}
const sftpOf = (c: Client) =>
  new Promise<import("ssh2").SFTPWrapper>((res, rej) => c.sftp((e, s) => (e ? rej(e) : res(s))));

async function clock<T>(out: Record<string, number>, name: string, fn: () => Promise<T>): Promise<T> {
  const t = performance.now();
  const v = await fn();
  out[name] = sec(performance.now() - t);
  return v;
}

async function profile(work: string): Promise<Record<string, number>> {
  const spec = loadSpec(labPaths.spec);
  const node = spec.nodes.find((n) => n.name === NODE)!;
  const p: Record<string, number> = {};
  const remoteFile = "/var/tmp/bench-profile-snapshot.db";
  const remote: Remote = await clock(p, "ssh2 connect", () => connectNode(spec, node));
  const raw = await rawSsh(ADDRESS);
  try {
    const n = await clock(p, "probe (etcd_tools + manifest)", () => probeNode(remote, node));
    await clock(p, "endpoint health", () => endpointHealth(n, KUBEADM_ETCD_ACCESS));
    await clock(p, "etcdctl snapshot save (remote)", () =>
      remote.run(
        // The lab's SSH user is not root: the kubeadm certificates need sudo, the SFTP download a readable file.
        `ETCDCTL_API=3 etcdctl ${etcdctlFlags(KUBEADM_ETCD_ACCESS, n.endpoint)} snapshot save ${remoteFile} >/dev/null && chmod 0644 ${remoteFile}`,
        { sudo: true },
      ),
    );
    await clock(p, "sha256sum (remote)", () => remote.sha256(remoteFile, { sudo: true }));
    await clock(p, "snapshot status (remote)", () => remoteSnapshotStatus(n, remoteFile));
    await clock(p, "member list", () => memberList(n, KUBEADM_ETCD_ACCESS));
    const a = join(work, "profile-stream.db");
    const b = join(work, "profile-fastget.db");
    const c = join(work, "profile-scp.db");
    await clock(p, "download: ssh2 SFTP stream (the tool)", () => remote.get(remoteFile, a, 0o600));
    const sftp = await sftpOf(raw);
    await clock(
      p,
      "download: ssh2 fastGet (64 x 32 KiB in flight)",
      () =>
        new Promise<void>((res, rej) => sftp.fastGet(remoteFile, b, { concurrency: 64 }, (e) => (e ? rej(e) : res()))),
    );
    await clock(p, "download: scp (OpenSSH)", () =>
      must(["scp", "-q", ...SSH_OPTS, `root@${ADDRESS}:${remoteFile}`, c]),
    );
    await clock(p, "sha256 (local, Bun.file stream)", () => fileSha256(a));
    await clock(p, "embedded hash check (local)", () => checkEmbeddedHash(a));
    await clock(p, "sha256 (local, one read)", async () => createHash("sha256").update(readFileSync(a)).digest("hex"));
    await clock(p, "restore verify: snapshot status (local etcdctl)", async () => localSnapshotStatus(a));
    // The restore uploads the snapshot to every member in parallel before it stops anything.
    const up = "/var/tmp/bench-profile-upload.db";
    const cps = spec.nodes.filter((x) => x.role === "control-plane");
    const remotes = await Promise.all(cps.map((x) => connectNode(spec, x)));
    try {
      await clock(p, "upload x3: ssh2 SFTP stream (the tool)", () =>
        Promise.all(remotes.map((r) => r.put({ path: a }, up, { mode: 0o600 }))),
      );
      await Promise.all(remotes.map((r) => r.run(`rm -f ${up}`)));
      const raws = await Promise.all(cps.map((x) => rawSsh(x.address)));
      try {
        const sftps = await Promise.all(raws.map(sftpOf));
        await clock(p, "upload x3: ssh2 fastPut", () =>
          Promise.all(
            sftps.map(
              (s) =>
                new Promise<void>((res, rej) => s.fastPut(a, up, { concurrency: 64 }, (e) => (e ? rej(e) : res()))),
            ),
          ),
        );
      } finally {
        for (const r of raws) r.end();
      }
      await Promise.all(remotes.map((r) => r.run(`rm -f ${up}`)));
      await clock(p, "upload x3: scp", () =>
        Promise.all(cps.map((x) => must(["scp", "-q", ...SSH_OPTS, a, `root@${x.address}:${up}`]))),
      );
      await clock(p, "sha256sum x3 (remote, parallel)", () => Promise.all(remotes.map((r) => r.sha256(up))));
      await Promise.all(remotes.map((r) => r.run(`rm -f ${up}`)));
    } finally {
      for (const r of remotes) r.close();
    }
    for (const f of [a, b, c]) rmSync(f, { force: true });
    await remote.run(`rm -f ${remoteFile}`, { sudo: true });
  } finally {
    raw.end();
    remote.close();
  }
  return p;
}

// ---- main ---------------------------------------------------------------------------------------------

interface SizeResult {
  targetMB: number;
  snapshotBytes: number;
  keys: number;
  dbSizeBytes: number;
  fillSeconds: number;
  tool: Stat;
  plain: Stat;
  ratio: Stat;
  toolPhases: Record<string, Stat>;
  plainPhases: Record<string, Stat>;
  restoreHealthy: Stat;
  restoreApis: Stat;
  restoreDown: Stat;
  restoreTotal: Stat;
  restorePhases: Record<string, Stat>;
  apiserver: string[];
  profile?: Record<string, number>;
}

const phaseStats = (runs: Record<string, number>[]): Record<string, Stat> =>
  Object.fromEntries(Object.keys(runs[0] ?? {}).map((k) => [k, stat(runs.map((r) => r[k]!))]));

function markdown(results: SizeResult[], meta: { runs: number; seconds: number; labUpSeconds: number }): string {
  const mb = (b: number) => `${(b / 1e6).toFixed(0)} MB`;
  const row = (cells: (string | number)[]) => `| ${cells.join(" | ")} |`;
  const sm = (s: Stat) => [f2(s.median), f2(s.min), f2(s.max)];
  const out: string[] = [
    "# etcd toolkit: measured on the lab",
    "",
    `\`bun test/bench/etcd-backup.ts --runs ${meta.runs}\` on the lab (3 control planes, nspawn hosts on this machine, TLS etcd 3.4.23, ` +
      `random 512 KiB values). ${meta.runs} runs per row, seconds. Whole run ${meta.seconds.toFixed(0)} s (lab up ${meta.labUpSeconds.toFixed(0)} s).`,
    "",
    "## Summary",
    "",
    row(["measurement", "snapshot", "median", "min", "max", "target"]),
    row(["---", "---", "---:", "---:", "---:", "---"]),
  ];
  for (const r of results) {
    const size = `${mb(r.snapshotBytes)} (${r.keys} keys)`;
    out.push(row([`backup: \`etcd:backup\``, size, ...sm(r.tool), ""]));
    out.push(row([`backup: ssh etcdctl snapshot save + scp`, size, ...sm(r.plain), ""]));
    out.push(
      row([
        "**backup ratio** (tool / plain, per run)",
        size,
        ...sm(r.ratio),
        r.ratio.median <= 1.1 ? "<= 1.1: met" : "<= 1.1: **missed**",
      ]),
    );
    out.push(
      row([
        "restore: start to etcd healthy (3/3)",
        size,
        ...sm(r.restoreHealthy),
        r.restoreHealthy.median <= 30 ? "<= 30 s: met" : "<= 30 s: **missed**",
      ]),
    );
    out.push(row(["restore: start to all 3 apiservers answering", size, ...sm(r.restoreApis), ""]));
    out.push(row(["restore: start to command exit", size, ...sm(r.restoreTotal), "(see note)"]));
    out.push(row(["restore: apiservers not all answering (outage)", size, ...sm(r.restoreDown), ""]));
  }
  out.push("", "## Backup phases (median s, from the tool's progress lines)", "");
  const sizes = results.map((r) => mb(r.snapshotBytes));
  out.push(row(["phase", ...sizes]), row(["---", ...sizes.map(() => "---:")]));
  for (const k of Object.keys(results[0]!.toolPhases))
    out.push(row([k, ...results.map((r) => f2(r.toolPhases[k]!.median))]));
  for (const k of Object.keys(results[0]!.plainPhases))
    out.push(row([`plain: ${k}`, ...results.map((r) => f2(r.plainPhases[k]!.median))]));
  out.push("", "## Restore phases (median s, from the tool's progress lines)", "");
  out.push(row(["phase", ...sizes]), row(["---", ...sizes.map(() => "---:")]));
  for (const k of Object.keys(results[0]!.restorePhases))
    out.push(row([k, ...results.map((r) => f2(r.restorePhases[k]!.median))]));
  out.push("", `The tool's own apiserver check said: ${[...new Set(results.flatMap((r) => r.apiserver))].join("; ")}`);
  if (results.every((r) => r.profile)) {
    out.push("", "## Profile: each step alone, in-process, one run per size (s)", "");
    out.push(row(["step", ...sizes]), row(["---", ...sizes.map(() => "---:")]));
    for (const k of Object.keys(results[0]!.profile!)) out.push(row([k, ...results.map((r) => f2(r.profile![k]!))]));
  }
  return `${out.join("\n")}\n`;
}

if (args.render) {
  // Re-render the tables from a saved --json run (no lab needed).
  const saved = JSON.parse(readFileSync(args.render, "utf8")) as {
    runs: number;
    seconds: number;
    labUpSeconds: number;
    results: SizeResult[];
  };
  const md = markdown(saved.results, saved);
  if (args.md) writeFileSync(args.md, md);
  else process.stdout.write(md);
  process.exit(0);
}

const benchStart = performance.now();
const work = mkdtempSync(join(tmpdir(), "kubeadm-ha-bench-etcd-"));
const results: SizeResult[] = [];
let labUpSeconds = 0;
try {
  const t = performance.now();
  await labUp({ fresh: !args.reuse, waitMs: 45 * 60_000 });
  labUpSeconds = sec(performance.now() - t);
  await waitLabEtcdHealthy(60, 500);
  // Warm caches (Bun's module load, etcdctl on the host) so run 1 is not a cold-start outlier.
  await must([BUN, "scripts/etcd-backup.ts", "--help"]);
  await must([BUN, "scripts/etcd-restore.ts", "--help"]);
  await must([...sshArgv(NODE, undefined, { user: "root" }), "etcdctl version >/dev/null"]);

  let keys = 0;
  for (const targetMB of SIZES_MB) {
    const want = Math.ceil((targetMB * 1e6) / VALUE_BYTES);
    say(`fill to ~${targetMB} MB: ${want - keys} more values of ${VALUE_BYTES / 1024} KiB`);
    const fillSeconds = await fill("bench", keys, want);
    keys = await keyCount("bench");
    if (keys !== want) throw new Error(`expected ${want} bench keys, etcd has ${keys}`);
    const db = await dbSize();
    say(
      `  ${keys} keys, largest member db ${(db / 1e6).toFixed(0)} MB (quota ${(QUOTA_BYTES / 1e9).toFixed(1)} GB) in ${fillSeconds.toFixed(1)} s`,
    );
    if (db > QUOTA_BYTES * 0.8) throw new Error(`db ${db} bytes is near etcd's quota; use smaller --sizes`);

    const tools: BackupRun[] = [];
    const plains: BackupRun[] = [];
    let restoreFile = "";
    for (let i = 0; i < RUNS; i++) {
      const dir = join(work, `tool-${targetMB}-${i}`);
      // Alternate which goes first so neither always gets the warmer caches.
      const runTool = async () => {
        const r = await toolBackup(dir);
        tools.push(r);
        if (!restoreFile) restoreFile = r.file;
        else rmSync(dir, { recursive: true, force: true });
      };
      const runPlain = async () => {
        mkdirSync(join(work, "plain"), { recursive: true });
        plains.push(await plainBackup(join(work, "plain")));
      };
      // Rotate the order so no variant always gets the warmest caches.
      const order = [runTool, runPlain];
      for (let k = 0; k < order.length; k++) await order[(k + i) % order.length]!();
      say(`  backup run ${i + 1}: tool ${f2(tools.at(-1)!.seconds)} s, plain ${f2(plains.at(-1)!.seconds)} s`);
    }
    const prof = args["no-profile"] ? undefined : await profile(work);
    if (prof) say(`  profile: ${JSON.stringify(prof)}`);

    const restores: RestoreRun[] = [];
    for (let i = 0; i < RESTORE_RUNS; i++) {
      const r = await restore(restoreFile, "bench", keys);
      restores.push(r);
      say(
        `  restore run ${i + 1}: healthy at ${f2(r.healthy)} s, exit at ${f2(r.total)} s (${r.apiserver.slice(0, 60)})`,
      );
      await pruneOldDataDirs();
    }
    results.push({
      targetMB,
      snapshotBytes: tools[0]!.bytes,
      keys,
      dbSizeBytes: db,
      fillSeconds,
      tool: stat(tools.map((r) => r.seconds)),
      plain: stat(plains.map((r) => r.seconds)),
      ratio: stat(tools.map((r, i) => r.seconds / plains[i]!.seconds)),
      toolPhases: phaseStats(tools.map((r) => r.phases)),
      plainPhases: phaseStats(plains.map((r) => r.phases)),
      restoreHealthy: stat(restores.map((r) => r.healthy)),
      restoreApis: stat(restores.map((r) => r.apisBack)),
      restoreDown: stat(restores.map((r) => r.apisDown)),
      restoreTotal: stat(restores.map((r) => r.total)),
      restorePhases: phaseStats(restores.map((r) => r.phases)),
      apiserver: [...new Set(restores.map((r) => r.apiserver))],
      profile: prof,
    });
    rmSync(restoreFile, { force: true });
  }
} finally {
  rmSync(work, { recursive: true, force: true });
  if (!args.keep) await labDown();
}

const meta = { runs: RUNS, seconds: sec(performance.now() - benchStart), labUpSeconds };
const md = markdown(results, meta);
process.stderr.write(`\n${md}`);
if (args.md) writeFileSync(args.md, md);
if (args.json) process.stdout.write(`${JSON.stringify({ ...meta, results }, null, 2)}\n`);
