// bun run chaos: the seed's section 8 failure matrix against the spec's cluster; see lib/ops/chaos.ts.
import { defineCommand, JSON_FLAG, progress, runCommand, SPEC_FLAG } from "../lib/cli.ts";
import { EXIT, UserError } from "../lib/errors.ts";
import {
  active,
  type CaseResult,
  type ChaosMode,
  faultPreflight,
  healthProblems,
  type Live,
  markdownMatrix,
  planCases,
  planText,
  restoreActive,
  runCase,
  snapshot,
} from "../lib/ops/chaos.ts";
import { DEFAULT_STOP_UNITS } from "../lib/ops/chaos-fault.ts";
import { writeChaosReport } from "../lib/ops/chaos-report.ts";
import { closeAll, connectAll, hostProblems } from "../lib/ops/connect.ts";
import { controlPlanes } from "../lib/spec/topology.ts";

/** The cluster was not healthy (or not reachable) before anything was broken. */
const UNHEALTHY = 3;

function wholeNumber(flag: string, value: string | undefined, def: number, min: number, max: number): number {
  if (value === undefined) return def;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new UserError(`--${flag} ${value} is not a whole number from ${min} to ${max}. Example: --${flag} ${def}.`);
  return n;
}

const command = defineCommand({
  name: "chaos",
  usage: "bun run chaos [--spec FILE] [--max-down N] [--mode isolate|stop] [--yes] [--json] [--dry-run]",
  description:
    "Runs the runbook's failure matrix against the cluster: for k = 1 .. --max-down control planes, takes them down, watches GET /healthz through the VIP (from this machine), where the VIP is, etcd quorum (etcdctl on every control plane) and running pods (kubectl, when the cluster has one), restores them, waits until the cluster is healthy again and prints expected vs observed with the time to recover. isolate drops every packet of the node except the SSH connection this command drives it through (nft tables named kubeadm_ha_chaos; ARP too); stop stops --stop-units (running containers are stopped with crictl first). Every fault arms a timer on the node (--rollback-after) that undoes it if this command dies or loses the connection; Ctrl-C restores at once. Refuses to start when the cluster is not healthy (VIP on exactly one control plane, /healthz 200, every etcd member healthy). Asks first unless --yes (or --dry-run).",
  options: {
    ...SPEC_FLAG,
    "max-down": { type: "string", value: "N", description: "take up to N control planes down at once (default 1)" },
    mode: { type: "string", value: "MODE", description: "isolate (network cut, default) or stop (stop services)" },
    yes: { type: "boolean", description: "break the cluster without asking (needed without a terminal)" },
    ...JSON_FLAG,
    "dry-run": { type: "boolean", description: "print the plan and the health check only; change nothing" },
    observe: { type: "string", value: "SECONDS", description: "how long each fault is watched (default 10)" },
    "recover-timeout": {
      type: "string",
      value: "SECONDS",
      description: "how long to wait for recovery after each case (default 180)",
    },
    "rollback-after": {
      type: "string",
      value: "SECONDS",
      description: "each node undoes its fault by itself after this (default 120)",
    },
    "stop-units": {
      type: "string",
      value: "UNITS",
      description: `--mode stop: the systemd units to stop (default ${DEFAULT_STOP_UNITS.join(",")})`,
    },
    out: {
      type: "string",
      value: "DIR",
      description: "also write DIR/chaos.md, chaos.json and a picture per case, chaos-k<N>.svg",
    },
  },
  spec: "hosts",
  exits: {
    0: "every case as expected and recovered (or --dry-run)",
    1: "a case did not match or did not recover",
    2: "bad input, or not confirmed (nothing changed)",
    3: "the cluster was not healthy (or not reachable) to begin with; nothing changed",
    130: "interrupted by SIGINT (Ctrl-C); every fault undone",
    143: "interrupted by SIGTERM; every fault undone",
  },
  jsonData:
    "{cluster, mode, holderBefore, cases: [{down, nodes, expected, observed, match, mismatches, recoverySeconds, restored}]}; with --dry-run {cluster, mode, holderBefore, plan, problems}",
  examples: [
    "bun run chaos --spec cluster.yaml --dry-run",
    "bun run chaos --spec cluster.yaml --max-down 3 --yes --json",
  ],
});

await runCommand(command, async (cli) => {
  const { values } = cli;
  const spec = cli.spec();
  const cpNodes = controlPlanes(spec);
  const maxDown = wholeNumber("max-down", values["max-down"], 1, 1, cpNodes.length);
  const mode = (values.mode ?? "isolate") as ChaosMode;
  if (mode !== "isolate" && mode !== "stop")
    throw new UserError(
      `--mode ${values.mode} is not a mode: use isolate (network cut, default) or stop (stop services).`,
    );
  const observeSeconds = wholeNumber("observe", values.observe, 10, 2, 600);
  const recoverTimeoutSeconds = wholeNumber("recover-timeout", values["recover-timeout"], 180, 10, 3600);
  const rollbackSeconds = wholeNumber("rollback-after", values["rollback-after"], 120, 10, 3600);
  if (rollbackSeconds < observeSeconds + 20)
    throw new UserError(
      `--rollback-after ${rollbackSeconds} is too short for --observe ${observeSeconds}: the node would restore itself before the measurement ends. Use at least ${observeSeconds + 20}.`,
    );
  const stopUnits = (values["stop-units"] ?? DEFAULT_STOP_UNITS.join(","))
    .split(",")
    .map((u) => u.trim())
    .filter(Boolean);
  for (const u of stopUnits)
    if (!/^[A-Za-z0-9@._-]+$/.test(u))
      throw new UserError(
        `--stop-units: "${u}" is not a systemd unit name. Example: --stop-units kubelet,containerd,etcd.`,
      );

  if (!values.yes && !values["dry-run"])
    await cli.confirm(
      `takes up to ${maxDown} of ${cpNodes.length} control planes of "${spec.name}" down at once${maxDown * 2 >= cpNodes.length ? ", which stops the Kubernetes API (no etcd quorum) until they are restored" : ""}`,
    );

  const sessions = await connectAll(spec, cpNodes, { phase: "chaos" });
  const unreachable = sessions.filter((s) => !s.remote);
  if (unreachable.length) {
    closeAll(sessions);
    const problems = hostProblems(
      unreachable.map((s) => ({ host: s.node.name, error: s.error, aliases: [s.node.ssh?.host ?? s.node.address] })),
    );
    throw new UserError(
      `the matrix needs every control plane, and ${unreachable.map((s) => s.node.name).join(", ")} cannot be reached over SSH. Nothing was changed.\n\n${problems.text}`,
      UNHEALTHY,
    );
  }
  const cps = sessions as Live[];

  let interrupted = false;
  const onSigint = async (sig: NodeJS.Signals) => {
    const code = sig === "SIGTERM" ? 143 : 130;
    if (interrupted) {
      const left = `second ${sig}: leaving now; each node restores itself within ${rollbackSeconds} s (rollback timer)`;
      process.stderr.write(`${left}\n`);
      cli.exit(code, { error: left });
    }
    interrupted = true;
    progress("chaos", "interrupt", `restoring ${[...active.keys()].join(", ") || "nothing (no fault in place)"}`);
    const failed = await restoreActive();
    if (failed.length)
      process.stderr.write(
        `restore failed: ${failed.join("; ")}; the rollback timer restores within ${rollbackSeconds} s\n`,
      );
    else progress("chaos", "interrupt", "restored; stopping");
    closeAll(sessions);
    cli.exit(code, {
      error: `interrupted by ${sig}; ${failed.length ? `restore failed on ${failed.join("; ")}` : "every fault undone"}`,
    });
  };
  process.on("SIGINT", onSigint);
  process.on("SIGTERM", onSigint);

  try {
    progress("chaos", "health", "checking the cluster is healthy before breaking anything");
    const before = await snapshot(spec, cps);
    const problems = healthProblems(before, cps.length);
    const preflight = (await Promise.all(cps.map(async (s) => ({ s, why: await faultPreflight(s, mode) })))).filter(
      (p) => p.why,
    );
    const holder = before.vipOn[0] ?? "(none)";
    const cases = planCases(
      cps.map((s) => s.node.name),
      holder,
      maxDown,
      mode,
    );
    if (values["dry-run"]) {
      const refusals = [...problems, ...preflight.map((p) => `${p.s.node.name}: ${p.why}`)];
      if (!cli.json) {
        process.stdout.write(planText(cases, mode, holder));
        process.stdout.write(
          refusals.length ? `would refuse to run: ${refusals.join("; ")}\n` : "cluster healthy: the plan can run\n",
        );
      }
      return { data: { cluster: spec.name, mode, holderBefore: holder, plan: cases, problems: refusals } };
    }
    if (problems.length)
      throw new UserError(
        `refusing to inject failures into a cluster that is not healthy: ${problems.join("; ")}. Fix it first (bun run verify names the broken piece), then run chaos again. Nothing was changed.`,
        UNHEALTHY,
      );
    if (preflight.length)
      throw new UserError(
        `cannot inject the ${mode} fault: ${preflight.map((p) => `${p.s.node.name}: ${p.why}`).join("; ")}. Nothing was changed.`,
        2,
      );
    progress("chaos", "plan", planText(cases, mode, holder).trimEnd().replace(/\n/g, "\n                         "));

    const results: CaseResult[] = [];
    for (const planned of cases) {
      // The VIP may have moved in the previous case: pick this case's nodes around the holder now.
      const now = results.length ? ((await snapshot(spec, cps)).vipOn[0] ?? holder) : holder;
      const c = planCases(
        cps.map((s) => s.node.name),
        now,
        maxDown,
        mode,
      )[planned.down - 1]!;
      const r = await runCase(spec, cps, c, now, {
        maxDown,
        mode,
        observeSeconds,
        recoverTimeoutSeconds,
        rollbackSeconds,
        stopUnits,
        vipInterface: spec.controlPlaneEndpoint.interface,
      });
      results.push(r);
      if (!r.restored || r.recoverySeconds === null) {
        progress("chaos", "stop", "the cluster did not recover: no further cases");
        break;
      }
    }
    const ok = results.length === cases.length && results.every((r) => r.match && r.recoverySeconds !== null);
    if (!cli.json) process.stdout.write(`failure matrix for ${spec.name} (${mode})\n\n${markdownMatrix(results)}`);
    if (values.out) {
      const files = writeChaosReport(values.out, { cluster: spec.name, mode, holderBefore: holder, cases: results });
      progress("chaos", "report", `wrote ${files.join(", ")}`);
    }
    progress("chaos", "done", ok ? "every case as expected and recovered" : "some cases did NOT match or recover");
    const bad = results.filter((r) => !r.match || r.recoverySeconds === null).map((r) => `k=${r.down}`);
    return {
      code: ok ? EXIT.ok : EXIT.failed,
      data: { cluster: spec.name, mode, holderBefore: holder, cases: results },
      error: ok ? undefined : `cases that did not match or recover: ${bad.join(", ") || "the matrix stopped early"}`,
    };
  } finally {
    if (active.size) await restoreActive();
    process.off("SIGINT", onSigint);
    process.off("SIGTERM", onSigint);
    closeAll(sessions);
  }
});
