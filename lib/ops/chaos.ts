// The seed's section 8 failure matrix against a real cluster: for k = 1..maxDown control
// planes down, inject the fault over SSH, watch the API through the VIP, VIP placement, etcd
// quorum (and pods when kubectl exists), restore, wait for recovery, and compare with what
// the seed expects. The SSH sessions opened at the start drive everything, so an isolated
// node stays reachable through its own session and can always be restored.
import { connect } from "node:net";
import { ETCD_TOOLS_SH, etcdctlFlags, KUBEADM_ETCD_ACCESS } from "../etcd/remote.ts";
import { progress } from "../progress.ts";
import type { Remote } from "../remote/ssh.ts";
import { sq } from "../remote/ssh.ts";
import type { ClusterSpec, NodeSpec } from "../spec/schema.ts";
import {
  ISOLATE_PREFLIGHT,
  isolateScript,
  parseSshConnection,
  RESTORE_ISOLATION,
  RESTORE_STOPPED,
  stopScript,
} from "./chaos-fault.ts";
import type { Timeline } from "./timeline-svg.ts";
import { holdersOf } from "./verify.ts";

export type ChaosMode = "isolate" | "stop";

export interface ChaosOptions {
  maxDown: number;
  mode: ChaosMode;
  /** Seconds to watch the cluster with the fault in place. */
  observeSeconds: number;
  /** Seconds to wait for full health after the restore. */
  recoverTimeoutSeconds: number;
  /** The host restores itself after this many seconds if the command cannot. */
  rollbackSeconds: number;
  stopUnits: string[];
  /** The VIP's interface (its ARP is filtered on egress too). */
  vipInterface?: string;
  /** Milliseconds between API probes during the observation. */
  probeIntervalMs?: number;
}

export interface Live {
  node: NodeSpec;
  remote: Remote;
}

export interface Snapshot {
  /** Control planes whose interface carries the VIP and that are not cut off (isolated ones listed apart). */
  vipOn: string[];
  vipOnIsolated: string[];
  tcp: boolean;
  /** HTTP status of GET /healthz through the VIP; 0 = no HTTP answer. */
  healthzStatus: number;
  /** Control planes whose local etcd member answers a quorum read. */
  etcdHealthy: string[];
  quorum: boolean;
  /** Running pods by kubectl on a reachable control plane; null when there is no kubectl or no API. */
  runningPods: number | null;
}

export interface Expectation {
  tcp: boolean;
  healthz: boolean;
  quorum: boolean;
  /** "none" (no answer on the VIP), "moves" (to a survivor), "stays:NAME", or "one" (any one control plane). */
  vip: string;
  text: string;
}

export interface CaseResult {
  down: number;
  nodes: string[];
  mode: ChaosMode;
  holderBefore: string;
  expected: Expectation;
  observed: Snapshot & {
    /** Share of GET /healthz through the VIP answered 200 during the observation. */
    availability: number;
    probes: number;
    /** ms from the fault to the last failed probe (0 when none failed). */
    lastFailureMs: number;
  };
  match: boolean;
  mismatches: string[];
  restored: boolean;
  recoverySeconds: number | null;
  /** Every probe, VIP and etcd sample from before the fault to recovery: what the case's SVG shows. */
  timeline: Timeline;
}

// ---- probes from the machine running the command -----------------------------------------------

export function tcpOpen(host: string, port: number, timeoutMs = 1500): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port, timeout: timeoutMs });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.once("connect", () => done(true));
    s.once("timeout", () => done(false));
    s.once("error", () => done(false));
  });
}

/** GET /healthz on a fresh connection (curl: no connection reuse hides a dead backend). */
export async function healthzStatus(host: string, port: number, timeoutMs = 2000, path = "/healthz"): Promise<number> {
  const p = Bun.spawn(
    [
      "curl",
      "-sk",
      "--noproxy",
      "*",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      "--max-time",
      String(timeoutMs / 1000),
      `https://${host}:${port}${path}`,
    ],
    { stdout: "pipe", stderr: "ignore" },
  );
  const text = await new Response(p.stdout).text();
  await p.exited;
  return Number(text.trim()) || 0;
}

// ---- probes over SSH -------------------------------------------------------------------------

/** Whether the node's local etcd member serves a quorum read (etcdctl endpoint health). */
async function etcdLocalHealthy(s: Live): Promise<boolean> {
  const flags = etcdctlFlags(KUBEADM_ETCD_ACCESS, "https://127.0.0.1:2379");
  const script = `set -u\n${ETCD_TOOLS_SH}\netcd_tools >/dev/null 2>&1 || exit 3\n"$ETCDCTL" ${flags} --command-timeout=2s endpoint health >/dev/null 2>&1`;
  const r = await s.remote.exec("bash -s", { sudo: true, stdin: script, timeoutMs: 15_000 }).catch(() => undefined);
  return r?.code === 0;
}

async function runningPods(cps: Live[]): Promise<number | null> {
  for (const s of cps) {
    const r = await s.remote
      .exec(
        "command -v kubectl >/dev/null 2>&1 && [ -r /etc/kubernetes/admin.conf ] && kubectl --kubeconfig /etc/kubernetes/admin.conf --request-timeout=5s get pods -A -o json",
        { sudo: true, timeoutMs: 15_000 },
      )
      .catch(() => undefined);
    if (r?.code !== 0 || !r.stdout.trim().startsWith("{")) continue;
    try {
      const doc = JSON.parse(r.stdout) as { items?: { status?: { phase?: string } }[] };
      if (!Array.isArray(doc.items)) continue;
      return doc.items.filter((p) => p.status?.phase === "Running").length;
    } catch {
      /* not a pod list */
    }
  }
  return null;
}

export async function snapshot(spec: ClusterSpec, cps: Live[], isolated: string[] = []): Promise<Snapshot> {
  const { vip, port } = spec.controlPlaneEndpoint;
  const [holders, tcp, code, etcd] = await Promise.all([
    holdersOf(spec, cps),
    tcpOpen(vip, port),
    healthzStatus(vip, port),
    Promise.all(cps.map(async (s) => ((await etcdLocalHealthy(s)) ? s.node.name : undefined))),
  ]);
  const reachable = cps.filter((s) => !isolated.includes(s.node.name));
  const etcdHealthy = etcd.filter((x): x is string => !!x);
  return {
    vipOn: holders.filter((h) => !isolated.includes(h)),
    vipOnIsolated: holders.filter((h) => isolated.includes(h)),
    tcp,
    healthzStatus: code,
    etcdHealthy,
    quorum: etcdHealthy.length > 0,
    runningPods: code === 200 ? await runningPods(reachable) : null,
  };
}

/** Healthy = VIP on exactly one control plane, /healthz 200 through it, every etcd member healthy. */
export function healthProblems(s: Snapshot, cpCount: number): string[] {
  const p: string[] = [];
  if (s.vipOn.length !== 1)
    p.push(s.vipOn.length === 0 ? "the VIP is on no control plane" : `the VIP is on ${s.vipOn.join(", ")} at once`);
  if (s.healthzStatus !== 200) p.push(`GET /healthz through the VIP -> ${s.healthzStatus || "no answer"}`);
  if (s.etcdHealthy.length !== cpCount)
    p.push(
      `etcd healthy on ${s.etcdHealthy.length} of ${cpCount} control planes (${s.etcdHealthy.join(", ") || "none"})`,
    );
  return p;
}

// ---- the plan ----------------------------------------------------------------------------------

export interface PlannedCase {
  down: number;
  nodes: string[];
  expected: Expectation;
}

/**
 * Which control planes go down for each k, and what the seed says should happen. k = 1 takes
 * the VIP holder (the VIP must move); k > 1 takes the others first, so the holder survives and
 * the seed's "the VIP stays put" is what is checked; k = all takes every control plane.
 */
export function planCases(cpNames: string[], holder: string, maxDown: number, mode: ChaosMode): PlannedCase[] {
  const n = cpNames.length;
  const others = cpNames.filter((c) => c !== holder);
  const cases: PlannedCase[] = [];
  for (let k = 1; k <= Math.min(maxDown, n); k++) {
    const nodes = k === 1 ? [holder] : k === n ? [...cpNames] : others.slice(0, k);
    const quorum = n - k > n / 2;
    let exp: Expectation;
    if (mode === "isolate" && k === n) {
      exp = { tcp: false, healthz: false, quorum: false, vip: "none", text: "VIP gone: no TCP answer" };
    } else if (mode === "stop") {
      // Stopped services, hosts up: keepalived and haproxy still run everywhere.
      exp = {
        tcp: true,
        healthz: quorum,
        quorum,
        vip: "one",
        text: quorum ? "API answers through the VIP (quorum kept)" : "VIP answers TCP, /healthz fails (no etcd quorum)",
      };
    } else if (nodes.includes(holder)) {
      exp = { tcp: true, healthz: quorum, quorum, vip: "moves", text: "VIP moves to a survivor; API answers" };
    } else {
      exp = {
        tcp: true,
        healthz: quorum,
        quorum,
        vip: `stays:${holder}`,
        text: quorum
          ? `VIP stays on ${holder}; API answers`
          : `VIP stays on ${holder} and answers TCP; /healthz fails (no etcd quorum)`,
      };
    }
    cases.push({ down: k, nodes, expected: exp });
  }
  return cases;
}

export function compare(exp: Expectation, obs: Snapshot, nodes: string[]): string[] {
  const m: string[] = [];
  if (obs.tcp !== exp.tcp)
    m.push(`TCP on the VIP: expected ${exp.tcp ? "open" : "no answer"}, got ${obs.tcp ? "open" : "no answer"}`);
  if ((obs.healthzStatus === 200) !== exp.healthz)
    m.push(`/healthz: expected ${exp.healthz ? "200" : "a failure"}, got ${obs.healthzStatus || "no answer"}`);
  if (obs.quorum !== exp.quorum)
    m.push(`etcd quorum: expected ${exp.quorum ? "kept" : "lost"}, got ${obs.quorum ? "kept" : "lost"}`);
  if (exp.vip === "none" && obs.vipOn.length > 0)
    m.push(`VIP: expected on no reachable host, got ${obs.vipOn.join(", ")}`);
  if (exp.vip === "moves" && !(obs.vipOn.length === 1 && !nodes.includes(obs.vipOn[0]!)))
    m.push(`VIP: expected on one survivor, got ${obs.vipOn.join(", ") || "none"}`);
  if (exp.vip === "one" && obs.vipOn.length !== 1)
    m.push(`VIP: expected on one control plane, got ${obs.vipOn.join(", ") || "none"}`);
  if (exp.vip.startsWith("stays:") && !(obs.vipOn.length === 1 && obs.vipOn[0] === exp.vip.slice(6)))
    m.push(`VIP: expected to stay on ${exp.vip.slice(6)}, got ${obs.vipOn.join(", ") || "none"}`);
  return m;
}

// ---- faults ----------------------------------------------------------------------------------

export interface Injected {
  node: string;
  restore: () => Promise<void>;
}

/** Preflight per control plane for the chosen mode: undefined when fine, else why not. */
export async function faultPreflight(s: Live, mode: ChaosMode): Promise<string | undefined> {
  if (mode === "stop") {
    const r = await s.remote.exec("command -v systemctl >/dev/null && echo ok", { sudo: true, timeoutMs: 10_000 });
    return r.stdout.trim() === "ok" ? undefined : "systemctl is missing (stop mode needs systemd)";
  }
  const r = await s.remote.exec("bash -s", { sudo: true, stdin: ISOLATE_PREFLIGHT, timeoutMs: 10_000 });
  const conn = await s.remote.exec("printf '%s' \"$SSH_CONNECTION\"", { timeoutMs: 10_000 });
  if (!parseSshConnection(conn.stdout))
    return `cannot read this session's $SSH_CONNECTION (got "${conn.stdout.trim()}")`;
  return r.stdout.trim() === "ok" ? undefined : r.stdout.trim() || r.stderr.trim();
}

export async function inject(s: Live, opts: ChaosOptions): Promise<Injected> {
  if (opts.mode === "isolate") {
    // $SSH_CONNECTION of a new channel on the same connection: the 4-tuple to keep open.
    const conn = await s.remote.exec("printf '%s' \"$SSH_CONNECTION\"", { timeoutMs: 10_000 });
    const peer = parseSshConnection(conn.stdout);
    if (!peer) throw new Error(`${s.node.name}: cannot read $SSH_CONNECTION`);
    await s.remote.run("bash -s", {
      sudo: true,
      stdin: isolateScript(peer, opts.rollbackSeconds, opts.vipInterface),
      timeoutMs: 20_000,
      what: "isolating the node",
    });
    return {
      node: s.node.name,
      restore: async () => {
        await s.remote.run("bash -s", {
          sudo: true,
          stdin: RESTORE_ISOLATION,
          timeoutMs: 20_000,
          what: "lifting the isolation",
        });
      },
    };
  }
  await s.remote.run("bash -s", {
    sudo: true,
    stdin: stopScript(opts.stopUnits, opts.rollbackSeconds),
    timeoutMs: 120_000,
    what: `stopping ${opts.stopUnits.join(", ")}`,
  });
  return {
    node: s.node.name,
    restore: async () => {
      await s.remote.run("bash -s", {
        sudo: true,
        stdin: RESTORE_STOPPED,
        timeoutMs: 120_000,
        what: "starting the stopped units",
      });
    },
  };
}

// ---- one case --------------------------------------------------------------------------------

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Faults in place right now (the SIGINT handler restores these). */
export const active = new Map<string, Injected>();

export async function restoreActive(): Promise<string[]> {
  const failed: string[] = [];
  await Promise.all(
    [...active.values()].map(async (inj) => {
      try {
        await inj.restore();
        active.delete(inj.node);
      } catch (e) {
        failed.push(`${inj.node}: ${(e as Error).message}`);
      }
    }),
  );
  return failed;
}

export async function runCase(
  spec: ClusterSpec,
  cps: Live[],
  plan: PlannedCase,
  holderBefore: string,
  opts: ChaosOptions,
): Promise<CaseResult> {
  const { vip, port } = spec.controlPlaneEndpoint;
  const victims = cps.filter((s) => plan.nodes.includes(s.node.name));
  const isolated = opts.mode === "isolate" ? plan.nodes : [];
  progress("chaos", `k=${plan.down}`, `${opts.mode} ${plan.nodes.join(", ")}; expect: ${plan.expected.text}`);

  // Probe the API through the VIP from before the fault until the case ends (recovery included),
  // and sample where the VIP is and how many etcd members answer: the case's picture.
  const probes: { at: number; status: number }[] = [];
  const vipSamples: Timeline["vip"] = [];
  const etcdSamples: Timeline["etcd"] = [];
  let probing = true;
  const t0 = performance.now();
  const prober = (async () => {
    while (probing) {
      const at = performance.now() - t0;
      const status = await healthzStatus(vip, port, 1000);
      probes.push({ at, status });
      await sleep(Math.max(0, (opts.probeIntervalMs ?? 200) - (performance.now() - t0 - at)));
    }
  })();
  const sampler = (async () => {
    while (probing) {
      const at = performance.now() - t0;
      const [holders, etcd] = await Promise.all([
        holdersOf(spec, cps),
        Promise.all(cps.map((s) => etcdLocalHealthy(s))),
      ]);
      vipSamples.push({ at, holders });
      etcdSamples.push({ at, up: etcd.filter(Boolean).length });
      await sleep(Math.max(0, 500 - (performance.now() - t0 - at)));
    }
  })();
  const stopSampling = async () => {
    probing = false;
    await Promise.all([prober, sampler]);
  };

  let obs: Snapshot | undefined;
  await sleep(1000); // a second of the healthy cluster in the picture
  const faultAt = performance.now() - t0;
  let restoreAt = faultAt;
  let failed: string[];
  try {
    try {
      // Each fault is registered as soon as it is in place, so a failure on another node still restores it.
      await Promise.all(victims.map(async (s) => active.set(s.node.name, await inject(s, opts))));
      progress("chaos", `k=${plan.down}`, `fault in place; observing for ${opts.observeSeconds} s`);
      await sleep(opts.observeSeconds * 1000);
      obs = await snapshot(spec, cps, isolated);
    } catch (e) {
      await stopSampling();
      throw e;
    }
    restoreAt = performance.now() - t0;
    progress("chaos", `k=${plan.down}`, "restoring");
    failed = await restoreActive();
  } catch (e) {
    await stopSampling();
    throw e;
  }
  const after = probes.filter((p) => p.at >= faultAt && p.at < restoreAt);
  const failedProbes = after.filter((p) => p.status !== 200);
  const lastFailureMs = failedProbes.length ? Math.round(failedProbes.at(-1)!.at - faultAt) : 0;

  const restored = failed.length === 0;
  if (!restored) progress("chaos", `k=${plan.down}`, `restore FAILED: ${failed.join("; ")}`);

  let recoverySeconds: number | null = null;
  if (restored) {
    const start = performance.now();
    const deadline = start + opts.recoverTimeoutSeconds * 1000;
    let lastLog = 0;
    for (;;) {
      const s = await snapshot(spec, cps);
      if (healthProblems(s, cps.length).length === 0) {
        recoverySeconds = Math.round((performance.now() - start) / 100) / 10;
        break;
      }
      const waited = performance.now() - start;
      if (Math.floor(waited / 5000) > Math.floor((waited - lastLog) / 5000) || lastLog === 0) {
        lastLog = waited || 1;
        progress(
          "chaos",
          `k=${plan.down}`,
          `recovering (${(waited / 1000).toFixed(0)} s): ${healthProblems(s, cps.length).join("; ")}`,
        );
      }
      if (performance.now() > deadline) {
        progress(
          "chaos",
          `k=${plan.down}`,
          `not healthy after ${opts.recoverTimeoutSeconds} s: ${healthProblems(s, cps.length).join("; ")}`,
        );
        break;
      }
      await sleep(500);
    }
  }
  const recoveredAt = performance.now() - t0;
  await stopSampling();
  const timeline: Timeline = {
    title: `k=${plan.down}: ${opts.mode} ${plan.nodes.join(", ")} (VIP on ${holderBefore} before)`,
    hosts: cps.map((s) => s.node.name),
    requests: probes.map((p) => ({ at: Math.round(p.at), ok: p.status === 200 })),
    vip: vipSamples.map((v) => ({ ...v, at: Math.round(v.at) })),
    etcd: etcdSamples.map((e) => ({ ...e, at: Math.round(e.at) })),
    etcdMembers: cps.length,
    events: [
      { at: Math.round(faultAt), label: `fault: ${opts.mode} ${plan.nodes.join(", ")}` },
      { at: Math.round(restoreAt), label: "restore" },
      ...(recoverySeconds === null ? [] : [{ at: Math.round(recoveredAt), label: "healthy again" }]),
    ],
    endMs: Math.round(recoveredAt),
  };
  const mismatches = compare(plan.expected, obs!, plan.nodes);
  if (recoverySeconds === null) mismatches.push("did not recover");
  progress(
    "chaos",
    `k=${plan.down}`,
    `${mismatches.length ? `MISMATCH: ${mismatches.join("; ")}` : "as expected"}; recovered ${recoverySeconds === null ? "NO" : `in ${recoverySeconds} s`}`,
  );
  return {
    down: plan.down,
    nodes: plan.nodes,
    mode: opts.mode,
    holderBefore,
    expected: plan.expected,
    observed: {
      ...obs!,
      availability: after.length ? Math.round((1000 * (after.length - failedProbes.length)) / after.length) / 1000 : 0,
      probes: after.length,
      lastFailureMs,
    },
    match: mismatches.length === 0,
    mismatches,
    restored,
    recoverySeconds,
    timeline,
  };
}

// ---- output ----------------------------------------------------------------------------------

const yes = (b: boolean) => (b ? "yes" : "no");

export function markdownMatrix(results: CaseResult[]): string {
  const head = [
    "| down | nodes | expected | VIP on | TCP | /healthz | etcd quorum | pods running | API ok during fault | recovered in | result |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
  ];
  const rows = results.map((r) => {
    const o = r.observed;
    const vipText = o.vipOn.length ? o.vipOn.join(", ") : "none";
    const iso = o.vipOnIsolated.length ? ` (also on isolated ${o.vipOnIsolated.join(", ")})` : "";
    return `| ${r.down} | ${r.nodes.join(", ")} | ${r.expected.text} | ${vipText}${iso} | ${yes(o.tcp)} | ${o.healthzStatus || "no answer"} | ${o.quorum ? `yes (${o.etcdHealthy.length})` : "no"} | ${o.runningPods ?? "n/a"} | ${(o.availability * 100).toFixed(0)}% (last failure ${(o.lastFailureMs / 1000).toFixed(1)} s) | ${r.recoverySeconds === null ? "NOT recovered" : `${r.recoverySeconds} s`} | ${r.match ? "as expected" : `MISMATCH: ${r.mismatches.join("; ")}`} |`;
  });
  return `${[...head, ...rows].join("\n")}\n`;
}

export const planText = (cases: PlannedCase[], mode: ChaosMode, holder: string): string =>
  `${[
    `plan (${mode}; VIP holder now: ${holder}):`,
    ...cases.map(
      (c) =>
        `  k=${c.down}: ${mode === "isolate" ? "isolate" : "stop services on"} ${c.nodes.join(", ")} -> expect: ${c.expected.text}; then restore and wait for full health`,
    ),
  ].join("\n")}\n`;

export { sq };
