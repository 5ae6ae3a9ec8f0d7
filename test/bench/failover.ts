// Load-balancer failover, measured on the lab with the applied stack. A client polls
// https://VIP:8443/healthz every 50 ms, each request on a fresh connection with a 0.3 s limit
// (--client-timeout-ms); a fault is injected only once the VIP holder has been the same, and
// every request answered, for 5 s (--stable-s). The figure is the ms from the fault to the END
// of the last failed request (its error or the client's timeout: what a user sees), plus the
// number of failed requests; each scenario runs --runs times and the table gives median / worst.
//
//   bun test/bench/failover.ts [--runs 3] [--lb keepalived-haproxy|static-pod] [--variant defaults|tuned|both]
//                         [--scenarios 1,2,k,3,4a,4b,5] [--idle-max 120 | --long] [--json FILE]
//
// Variants: "defaults" = the spec's schema defaults; "tuned" = the same with VRRPv3 and 0.1 s
// adverts (applied with terraform, a rolling change). Root only; contacts lab addresses only.
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { renderTimelineSvg, type Timeline } from "../../lib/ops/timeline-svg.ts";
import type { ClusterSpec } from "../../lib/spec/schema.ts";
import { synthLab } from "../e2e/apply.ts";
import {
  applyLoadBalancers,
  CONTROL_PLANES,
  ensureAppliedLab,
  etcdHealthyCount,
  etcdLeader,
  hardKill,
  hardRestore,
  healthz,
  killHaproxy,
  PORT,
  restoreAll,
  staticPods,
  until,
  VIP,
  vipHolders,
  waitHealthy,
} from "../e2e/failover-lab.ts";
import { outage, type Poller, type Sample, startPoller } from "../e2e/poller.ts";
import { labDown, labExec, labMissing, linkDown, linkUp, PROJECT_ROOT } from "../lab/lab.ts";
import { sleep } from "../lab/sys.ts";
import { MUTATE, TRACK_FILE_EDIT, TRACK_PROCESS_EDIT } from "./lb-variants.ts";

const { values: args } = parseArgs({
  options: {
    runs: { type: "string", default: "3" },
    lb: { type: "string" },
    "client-timeout-ms": { type: "string", default: "300" },
    "stable-s": { type: "string", default: "5" },
    variant: { type: "string", default: "defaults" },
    scenarios: { type: "string", default: "1,2,k,3,4a,4b,5" },
    "idle-max": { type: "string", default: "120" },
    long: { type: "boolean", default: false },
    json: { type: "string" },
    keep: { type: "boolean", default: !!process.env.KHA_KEEP_LAB },
  },
});
const RUNS = Number(args.runs);
const CLIENT_TIMEOUT_MS = Number(args["client-timeout-ms"]);
const STABLE_MS = Number(args["stable-s"]) * 1000;
// The lab spec's load-balancer mode (as `bun run lab up --lb`); read when the lab spec is written.
if (args.lb) process.env.KHA_LAB_LB = args.lb;
const IDLE_MAX_S = args.long ? 65 * 60 : Number(args["idle-max"]);
const SCENARIOS = String(args.scenarios).split(",");
const VARIANTS = args.variant === "both" ? ["defaults", "tuned"] : [String(args.variant)];
const say = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);

interface Run {
  /** ms from the fault to the end of the last failed request (scenario 5: ms until the stream was cut, or -1 = not cut). */
  lastFailureMs: number;
  /** ms from the fault to the start of the last failed request (the figure before 2026-12-02's third session). */
  lastFailureStartMs?: number;
  failed: number;
  total: number;
  note?: string;
  /** Requests, VIP holder, etcd members and the fault: written as an SVG next to --json. */
  timeline?: Timeline;
}

// ---- helpers -----------------------------------------------------------------------------------

async function healthyHolder(): Promise<string> {
  const h = await waitHealthy(90_000);
  if (!h.ok) throw new Error(`lab not healthy before a run: ${JSON.stringify(h)}`);
  return h.holders[0]!;
}

/**
 * Wait until the VIP has been on `holder` alone and every request of the poller answered 200 for
 * STABLE_MS (a fault right after a restore would also measure the restore's own settling).
 */
async function stableHolder(p: Poller, holder: string): Promise<string> {
  let since = p.now();
  let current = holder;
  const deadline = p.now() + 90_000;
  while (p.now() < deadline) {
    const h = await vipHolders();
    const bad = p.samples.some((s) => s.at >= since && s.status !== 200);
    if (h.length !== 1 || h[0] !== current || bad) {
      current = h.length === 1 ? h[0]! : current;
      since = p.now();
    } else if (p.now() - since >= STABLE_MS) return current;
    await sleep(100);
  }
  throw new Error(`the VIP holder was not stable for ${STABLE_MS} ms within 90 s`);
}

/** Stop the poller once the last failure is `quietMs` old (or after maxMs), return the outage. */
async function watch(p: Poller, faultAt: number, quietMs = 4000, maxMs = 40_000): Promise<Run & { samples: Sample[] }> {
  const end = faultAt + maxMs;
  for (;;) {
    await sleep(250);
    const failures = p.samples.filter((s) => s.at >= faultAt && s.status !== 200);
    const lastStart = failures.length ? Math.max(...failures.map((s) => s.at)) : faultAt;
    if (p.now() - lastStart > quietMs + 1000 || p.now() > end) break;
  }
  const samples = await p.stop();
  const o = outage(samples, faultAt);
  return {
    lastFailureMs: o.lastFailureEndMs,
    lastFailureStartMs: o.lastFailureAfterFaultMs,
    failed: o.failed,
    total: o.total,
    samples,
  };
}

/** VIP holders every 100 ms and etcd members up (as fast as labStatus answers) on the poller's clock, until stopped. */
function sampleLab(p: Poller) {
  let on = true;
  const vip: Timeline["vip"] = [];
  const etcd: Timeline["etcd"] = [];
  const loops = [
    (async () => {
      while (on) {
        vip.push({ at: Math.round(p.now()), holders: await vipHolders() });
        await sleep(100);
      }
    })(),
    (async () => {
      while (on) {
        const at = Math.round(p.now());
        etcd.push({ at, up: await etcdHealthyCount().catch(() => 0) });
        await sleep(500);
      }
    })(),
  ];
  return {
    vip,
    etcd,
    stop: async () => {
      on = false;
      await Promise.all(loops);
    },
  };
}

/** `inject` may return the epoch ms the fault really happened (after its own preparation). */
async function faultRun(
  inject: (holder: string) => Promise<unknown>,
  restore: (holder: string) => Promise<void>,
): Promise<Run> {
  const p = startPoller(VIP, PORT, 50, CLIENT_TIMEOUT_MS);
  const lab = sampleLab(p);
  let holder = "";
  let faultAt = 0;
  let r: Run;
  let restoreAt = 0;
  let leader = "?";
  try {
    holder = await stableHolder(p, await healthyHolder());
    leader = await etcdLeader();
    faultAt = p.now();
    restoreAt = faultAt;
    const at = await inject(holder);
    if (typeof at === "number" && at > 0) faultAt = p.now() - (Date.now() - at);
    // ms from the fault until another host was seen with the VIP (sampled every 50 ms).
    const moved = until(async () => (await vipHolders()).some((h) => h !== holder), 30_000, 50).then((ms) =>
      ms < 0 ? -1 : Math.round(p.now() - faultAt),
    );
    const w = await watch(p, faultAt);
    restoreAt = p.now();
    r = {
      ...w,
      note: `${holder} (etcd leader ${leader}): VIP moved after ${(await moved) >= 0 ? `${await moved} ms` : "NEVER"}`,
      timeline: {
        title: `${holder}: fault at ${Math.round(faultAt)} ms`,
        hosts: [...CONTROL_PLANES],
        requests: w.samples.map((x) => ({ at: Math.round(x.at), ok: x.status === 200 })),
        vip: lab.vip,
        etcd: lab.etcd,
        etcdMembers: CONTROL_PLANES.length,
        events: [
          { at: Math.round(faultAt), label: "fault" },
          { at: Math.round(restoreAt), label: "restore (after the poller stopped)" },
        ],
        endMs: Math.round(restoreAt),
      },
    };
  } finally {
    await p.stop();
    await lab.stop();
    if (holder) await restore(holder);
  }
  return r;
}

// ---- scenarios -------------------------------------------------------------------------------

const s1 = () => faultRun(linkDown, linkUp);

// Hard kill: SIGKILL of keepalived, haproxy, the apiserver and etcd, nothing restarted (a crash).
const sKill = () =>
  faultRun(
    (h) => hardKill(h),
    (h) => hardRestore(h),
  );

// haproxy dies and stays dead (Debian's unit has Restart=always, which would hide the
// tracked check: a crash loop, a bad binary or an OOM-kill loop all look like this).
const s2 = () =>
  faultRun(
    (h) => killHaproxy(h),
    (h) => hardRestore(h),
  );

const SERVER_500 = `// kha-bench-500: TLS on :6444, every request answers 500 (a sick apiserver that still speaks TLS)
Bun.serve({ port: 6444, tls: { cert: Bun.file("/etc/kubernetes/pki/apiserver.crt"), key: Bun.file("/etc/kubernetes/pki/apiserver.key") },
  fetch: () => new Response("[-]etcd failed: bench\\nhealthz check failed\\n", { status: 500 }) });
`;

/** New TCP connections to :6443 on `host` go to `toPort` from now on (atomic switch; existing ones untouched). */
const redirect6443 = (host: string, address: string, toPort: number) =>
  labExec(
    host,
    `nft -f - <<'EOF'
table ip kha_bench {
  chain pre {
    type nat hook prerouting priority -100;
    tcp dport 6443 redirect to :${toPort}
  }
  chain out {
    type nat hook output priority -100;
    ip daddr ${address} tcp dport 6443 redirect to :${toPort}
  }
}
EOF`,
  );

async function s3(): Promise<Run> {
  const holder = await healthyHolder();
  const victim = CONTROL_PLANES.find((h) => h !== holder)!;
  const address = `198.18.0.${10 + Number(victim.slice(3))}`;
  const bun = `${PROJECT_ROOT}/node_modules/.bin/bun`;
  await labExec(
    victim,
    `cat > /run/kha-bench-500.ts <<'EOF'\n${SERVER_500}EOF\nsetsid nohup ${bun} /run/kha-bench-500.ts >/dev/null 2>&1 &`,
  );
  await until(async () => (await labExec(victim, "ss -Hltn 'sport = :6444'")).stdout.trim() !== "", 10_000, 100);
  const p = startPoller(VIP, PORT, 50, CLIENT_TIMEOUT_MS);
  await sleep(1000);
  const faultAt = p.now();
  try {
    const r = await redirect6443(victim, address, 6444);
    if (r.code !== 0) throw new Error(`redirect on ${victim}: ${r.stderr}`);
    const w = await watch(p, faultAt, 4000, 30_000);
    const in10s = w.samples.filter((s) => s.at >= faultAt && s.at < faultAt + 10_000);
    const five = in10s.filter((s) => s.status === 500).length;
    return {
      ...w,
      note: `${victim}: ${five}/${in10s.length} requests got 500 in the first 10 s (${((100 * five) / Math.max(1, in10s.length)).toFixed(1)}%)`,
    };
  } finally {
    await p.stop();
    await labExec(victim, "nft delete table ip kha_bench; pkill -f kha-bench-50[0]; true");
  }
}

// Planned stop of keepalived: its unit, or (static-pod mode) its manifest moved out of the kubelet's directory.
const KEEPALIVED_POD = "/etc/kubernetes/manifests/keepalived.yaml";
const s4a = () =>
  faultRun(
    async (h) => {
      await labExec(
        h,
        staticPods ? `mv ${KEEPALIVED_POD} /etc/kubernetes/keepalived.yaml.bench` : "systemctl stop keepalived",
      );
    },
    async (h) => {
      await labExec(
        h,
        staticPods ? `mv /etc/kubernetes/keepalived.yaml.bench ${KEEPALIVED_POD}` : "systemctl start keepalived",
      );
    },
  );

let toggle = 0;
let variantMutate: (s: ClusterSpec) => void = () => {};
async function s4b(): Promise<Run> {
  await healthyHolder();
  // A haproxy setting flips on each run so every run is a real rolling change of the three hosts.
  const client = toggle++ % 2 === 0 ? "2h" : "1h";
  synthLab((s) => {
    variantMutate(s);
    s.loadBalancer.haproxy.timeouts.client = client;
  });
  const p = startPoller(VIP, PORT, 50, CLIENT_TIMEOUT_MS);
  await sleep(500);
  const r = await applyLoadBalancers();
  const samples = await p.stop();
  if (r.code !== 0) throw new Error(`rolling apply failed:\n${r.out.slice(-3000)}`);
  const o = outage(samples, 0);
  return {
    lastFailureMs: o.lastFailureEndMs,
    failed: o.failed,
    total: o.total,
    note: `apply ${r.seconds.toFixed(1)} s`,
  };
}

// A watch-like stand-in behind the VIP for the idle-stream scenario: the apiserver stand-in
// (Bun.serve) closes idle connections itself after 10 s, which would measure it, not the load
// balancer. While the scenario runs, each control plane's :6443 is redirected to this server:
// /healthz 200 (so checks pass), /stream = response headers, then silence until the client goes.
const STREAM_SERVER = `// kha-bench-stream: TLS on :6445; GET /stream holds the response open with no bytes, like kubectl logs -f on a quiet pod
Bun.serve({ port: 6445, idleTimeout: 0, tls: { cert: Bun.file("/etc/kubernetes/pki/apiserver.crt"), key: Bun.file("/etc/kubernetes/pki/apiserver.key") },
  fetch(req) {
    if (req.url.replace(/^[a-z]+:\\/\\/[^/]*/i, "").startsWith("/stream")) return new Response(new ReadableStream({ start() {} }), { headers: { "content-type": "text/plain" } });
    return new Response("ok");
  } });
`;

async function s5all(runs: number): Promise<Run[]> {
  await healthyHolder();
  const bun = `${PROJECT_ROOT}/node_modules/.bin/bun`;
  for (const h of CONTROL_PLANES) {
    await labExec(
      h,
      `cat > /run/kha-bench-stream.ts <<'EOF'\n${STREAM_SERVER}EOF\nsetsid nohup ${bun} /run/kha-bench-stream.ts >/dev/null 2>&1 &`,
    );
  }
  for (const h of CONTROL_PLANES)
    await until(async () => (await labExec(h, "ss -Hltn 'sport = :6445'")).stdout.trim() !== "", 10_000, 100);
  try {
    // Warm each server up (its first TLS handshakes are slow) so haproxy's checks, which time
    // out at \`inter\`, do not mark it DOWN and cut the streams for reasons of this bench.
    for (const h of CONTROL_PLANES)
      await labExec(
        h,
        "for i in 1 2 3 4 5; do curl -sk -o /dev/null --max-time 2 https://127.0.0.1:6445/healthz; done",
      );
    for (const h of CONTROL_PLANES) await redirect6443(h, `198.18.0.${10 + Number(h.slice(3))}`, 6445);
    // Every backend UP again and steady: 4 s of 200s through the VIP.
    let streak = 0;
    const stable = await until(
      async () => {
        streak = (await healthz()) === 200 ? streak + 1 : 0;
        return streak >= 20;
      },
      60_000,
      200,
    );
    if (stable < 0) throw new Error("the watch-like backends never became healthy behind the VIP");
    // Streams opened at once: the runs are concurrent, so --runs streams cost one idle window.
    const streams = Array.from({ length: runs }, () => idleStream(IDLE_MAX_S * 1000));
    const cut = await Promise.all(streams);
    return cut.map((ms) => ({
      lastFailureMs: ms,
      failed: ms < 0 ? 0 : 1,
      total: 1,
      note: ms < 0 ? `not cut within ${IDLE_MAX_S} s` : `cut after ${(ms / 1000).toFixed(1)} s`,
    }));
  } finally {
    for (const h of CONTROL_PLANES)
      await labExec(h, "nft delete table ip kha_bench; pkill -f kha-bench-strea[m]; true");
  }
}

/**
 * ms until the idle stream was cut, or -1 when it was still open after maxMs. curl holds the
 * request open (-N, no buffering) and ends when the connection is cut (exit 18/52/56) or at
 * --max-time (exit 28 = not cut).
 */
async function idleStream(maxMs: number): Promise<number> {
  const started = performance.now();
  const p = Bun.spawn(
    [
      "curl",
      "-skN",
      "--noproxy",
      "*",
      "-o",
      "/dev/null",
      "--max-time",
      String(maxMs / 1000),
      `https://${VIP}:${PORT}/stream`,
    ],
    { stdout: "ignore", stderr: "ignore" },
  );
  const code = await p.exited;
  const ms = Math.round(performance.now() - started);
  if (code === 28) return -1;
  say(`idle stream ended after ${ms} ms (curl exit ${code})`);
  return ms;
}

// ---- driver ----------------------------------------------------------------------------------

const NAMES: Record<string, string> = {
  "1": "(1) holder link down",
  "2": "(2) holder haproxy killed, keepalived lives",
  k: "(1k) hard kill of the holder",
  "3": "(3) one apiserver answers 500 (TLS ok)",
  "4a": "(4) planned: graceful stop of holder keepalived",
  "4b": "(4) planned: rolling haproxy change (terraform)",
  "5": "(5) idle stream through the VIP",
};
const TARGET: Record<string, string> = {
  "1": "last failure <= 1 s",
  "2": "last failure <= 1 s",
  k: "last failure <= 1 s",
  "3": "<= 1 s of 500s",
  "4a": "0 failed",
  "4b": "0 failed",
  "5": "not cut for >= 1 h",
};
const SCEN: Record<string, () => Promise<Run>> = { "1": s1, "2": s2, k: sKill, "3": s3, "4a": s4a, "4b": s4b };

const stats = (xs: number[]) => {
  const v = [...xs].sort((a, b) => a - b);
  // The median of an even count is the mean of the middle two.
  const mid = v.length % 2 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
  return { median: Math.round(mid), min: v[0]!, max: v.at(-1)! };
};

async function main(): Promise<void> {
  const missing = labMissing();
  if (missing) throw new Error(`the bench needs the lab: ${missing}`);
  const ready = await ensureAppliedLab();
  say(`lab ready in ${ready.seconds.toFixed(1)} s`);
  const results: Record<string, Record<string, Run[]>> = {};
  try {
    for (const variant of VARIANTS) {
      variantMutate = MUTATE[variant]!;
      say(`variant ${variant}: applying`);
      synthLab(variantMutate);
      const ap = await applyLoadBalancers();
      if (ap.code !== 0) throw new Error(`apply of ${variant} failed:\n${ap.out.slice(-3000)}`);
      if (variant === "candidate" || variant === "candidate+track_file")
        for (const h of CONTROL_PLANES) {
          const r = await labExec(h, variant === "candidate" ? TRACK_PROCESS_EDIT : TRACK_FILE_EDIT);
          if (r.code !== 0) throw new Error(`track_process edit on ${h}: ${r.stderr}${r.stdout}`);
        }
      results[variant] = {};
      for (const sc of SCENARIOS) {
        const runs: Run[] = [];
        if (sc === "5") runs.push(...(await s5all(RUNS)));
        else
          for (let i = 0; i < RUNS; i++) {
            const r = await SCEN[sc]!();
            await restoreAll();
            const back = await waitHealthy(120_000);
            if (!back.ok) throw new Error(`lab did not recover after ${sc}: ${JSON.stringify(back)}`);
            runs.push(r);
          }
        for (const r of runs)
          say(
            `${variant} ${NAMES[sc]}: last failure ended ${r.lastFailureMs} ms after the fault (started ${r.lastFailureStartMs ?? "-"} ms), ${r.failed}/${r.total} failed; ${r.note ?? ""}`,
          );
        results[variant][sc] = runs;
      }
    }
  } finally {
    await restoreAll();
    if (VARIANTS.some((v) => v !== "defaults")) {
      say("putting the defaults back");
      synthLab();
      await applyLoadBalancers();
    }
    if (!args.keep) await labDown();
  }
  process.stdout.write(`${table(results)}\n`);
  if (args.json) {
    writeFileSync(args.json, JSON.stringify(results, null, 2));
    // One picture per run next to the JSON: <json minus .json>-<variant>-<scenario>-<run>.svg
    const base = args.json.replace(/\.json$/, "");
    for (const [variant, byScen] of Object.entries(results))
      for (const [sc, runs] of Object.entries(byScen))
        runs.forEach((r, i) => {
          if (!r.timeline) return;
          const t = { ...r.timeline, title: `${NAMES[sc]} (${variant}, run ${i + 1}): ${r.timeline.title}` };
          writeFileSync(`${base}-${variant}-${sc}-${i + 1}.svg`, renderTimelineSvg(t));
        });
  }
}

function table(results: Record<string, Record<string, Run[]>>): string {
  const lines = [
    `| scenario | variant | end of the last failed request after the fault, ms: median / worst (best) | failed requests: median / worst | notes | target |`,
    "|---|---|---|---|---|---|",
  ];
  for (const sc of SCENARIOS)
    for (const [variant, byScen] of Object.entries(results)) {
      const runs = byScen[sc];
      if (!runs) continue;
      if (sc === "5") {
        const cut = runs.filter((r) => r.lastFailureMs >= 0);
        lines.push(
          `| ${NAMES[sc]} | ${variant} | ${cut.length ? `cut after ${stats(cut.map((r) => r.lastFailureMs / 1000)).median.toFixed(1)} s` : `not cut within ${IDLE_MAX_S} s`} | ${cut.length}/${runs.length} streams cut | ${runs.length} concurrent streams | ${TARGET[sc]} |`,
        );
        continue;
      }
      const l = stats(runs.map((r) => r.lastFailureMs));
      const f = stats(runs.map((r) => r.failed));
      const notes = runs
        .map((r) => r.note)
        .filter(Boolean)
        .join("; ");
      lines.push(
        `| ${NAMES[sc]} | ${variant} | ${l.median} / ${l.max} (${l.min}), ${runs.length} runs | ${f.median} / ${f.max} of ~${runs[0]!.total} | ${notes} | ${TARGET[sc]} |`,
      );
    }
  return lines.join("\n");
}

await main();
