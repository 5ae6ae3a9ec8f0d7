// bun run chaos: the seed's section 8 failure matrix against the spec's cluster; see lib/ops/chaos.ts.
import { createInterface } from "node:readline";
import { parseCommand, progress, runCommand } from "../lib/cli.ts";
import { UserError } from "../lib/errors.ts";
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
import { closeAll, connectAll } from "../lib/ops/connect.ts";
import { loadSpec, specPath } from "../lib/spec/load.ts";
import { controlPlanes } from "../lib/spec/topology.ts";

function wholeNumber(flag: string, value: string | undefined, def: number, min: number, max: number): number {
  if (value === undefined) return def;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new UserError(`--${flag} ${value} is not a whole number from ${min} to ${max}. Example: --${flag} ${def}.`);
  return n;
}

async function confirm(question: string): Promise<boolean> {
  if (!process.stdin.isTTY) return false;
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  const answer = await new Promise<string>((res) => rl.question(question, res));
  rl.close();
  return answer.trim().toLowerCase() === "yes";
}

await runCommand(async () => {
  const { values, positionals } = parseCommand({
    name: "chaos",
    usage: "bun run chaos [--max-down N] [--mode isolate|stop] [--yes] [--json] [--dry-run] [SPEC]",
    description:
      "Runs the runbook's failure matrix against the cluster: for k = 1 .. --max-down control planes (default 1), takes them down, watches GET /healthz through the VIP (from this machine), where the VIP is, etcd quorum (etcdctl on every control plane) and running pods (kubectl, when the cluster has one), restores them, waits until the cluster is healthy again and prints expected vs observed with the time to recover. --mode isolate (default) drops every packet of the node except the SSH connection this command drives it through (nft, in tables named kubeadm_ha_chaos; ARP too, so an isolated node cannot keep attracting VIP traffic); --mode stop stops --stop-units (default kubelet,containerd,etcd; running containers are stopped with crictl first). Every fault arms a timer on the node (--rollback-after, default 120 s) that undoes it if this command dies or loses the connection; Ctrl-C restores at once. More than one node down needs --yes or typing yes at the prompt. Refuses to start when the cluster is not healthy (VIP on exactly one control plane, /healthz 200, every etcd member healthy). --dry-run prints the plan and the health check only. Exit 0 when every case matched and recovered, 1 when one did not, 2 on bad input, 3 when the cluster was not healthy to begin with.",
    options: {
      "max-down": { type: "string" },
      mode: { type: "string" },
      yes: { type: "boolean" },
      json: { type: "boolean" },
      "dry-run": { type: "boolean" },
      observe: { type: "string" },
      "recover-timeout": { type: "string" },
      "rollback-after": { type: "string" },
      "stop-units": { type: "string" },
    },
    allowPositionals: true,
  });
  const spec = loadSpec(specPath(positionals[0]));
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

  if (maxDown > 1 && !values.yes && !values["dry-run"]) {
    const ok = await confirm(
      `This takes up to ${maxDown} of ${cpNodes.length} control planes of "${spec.name}" down at once${maxDown * 2 >= cpNodes.length ? ", which stops the Kubernetes API (no etcd quorum) until they are restored" : ""}. Type yes to go on: `,
    );
    if (!ok)
      throw new UserError(
        `--max-down ${maxDown} takes the API down for a while: confirm at the prompt (type yes) or pass --yes. Nothing was changed.`,
      );
  }

  const sessions = await connectAll(spec, cpNodes, { phase: "chaos" });
  const unreachable = sessions.filter((s) => !s.remote);
  if (unreachable.length) {
    closeAll(sessions);
    throw new UserError(
      `cannot reach ${unreachable.map((s) => `${s.node.name} (${s.error})`).join("; ")} over SSH: the matrix needs every control plane. Nothing was changed.`,
      3,
    );
  }
  const cps = sessions as Live[];

  let interrupted = false;
  const onSigint = async () => {
    if (interrupted) {
      process.stderr.write(
        `second Ctrl-C: leaving now; each node restores itself within ${rollbackSeconds} s (rollback timer)\n`,
      );
      process.exit(130);
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
    process.exit(130);
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
      process.stdout.write(planText(cases, mode, holder));
      process.stdout.write(
        problems.length || preflight.length
          ? `would refuse to run: ${[...problems, ...preflight.map((p) => `${p.s.node.name}: ${p.why}`)].join("; ")}\n`
          : "cluster healthy: the plan can run\n",
      );
      return 0;
    }
    if (problems.length)
      throw new UserError(
        `refusing to inject failures into a cluster that is not healthy: ${problems.join("; ")}. Fix it first (bun run verify names the broken piece), then run chaos again. Nothing was changed.`,
        3,
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
    if (values.json)
      process.stdout.write(
        `${JSON.stringify({ command: "chaos", cluster: spec.name, ok, mode, holderBefore: holder, cases: results }, null, 2)}\n`,
      );
    else process.stdout.write(`failure matrix for ${spec.name} (${mode})\n\n${markdownMatrix(results)}`);
    progress("chaos", "done", ok ? "every case as expected and recovered" : "some cases did NOT match or recover");
    return ok ? 0 : 1;
  } finally {
    if (active.size) await restoreActive();
    process.off("SIGINT", onSigint);
    process.off("SIGTERM", onSigint);
    closeAll(sessions);
  }
});
