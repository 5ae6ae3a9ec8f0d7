// bun run preflight: are the hosts ready? Read-only; see lib/ops/preflight.ts.
import { parseCommand, progress, runCommand } from "../lib/cli.ts";
import { closeAll, connectAll } from "../lib/ops/connect.ts";
import { runPreflight } from "../lib/ops/preflight.ts";
import { type CheckRow, formatTable, jsonReport, sortRows } from "../lib/ops/report.ts";
import { loadSpec, specPath } from "../lib/spec/load.ts";

await runCommand(async () => {
  const { values, positionals } = parseCommand({
    name: "preflight",
    usage: "bun run preflight [--json] [--strict] [SPEC]",
    description:
      "Checks every host before anything is installed: the ports the topology needs (control planes: 6443, 2379, 2380, 10250, 10257, 10259, the load-balancer and stats ports; workers: 10250) are free on their host, or held by this cluster's own daemons (reported as info), and reachable from every peer that needs them (a python3 or perl listener runs for a few seconds on the target; peers connect with bash's /dev/tcp); swap; the overlay and br_netfilter modules; the cgroup driver; NTP sync and clock skew between hosts (under 2 s); passwordless sudo. Changes nothing on the hosts. One table of every finding with its fix. Exit 0 when nothing failed, 1 when something did (--strict: warnings too), 2 on bad input.",
    options: { json: { type: "boolean" }, strict: { type: "boolean" } },
    allowPositionals: true,
  });
  const spec = loadSpec(specPath(positionals[0]));
  const sessions = await connectAll(spec, spec.nodes, { phase: "preflight" });
  let rows: CheckRow[];
  try {
    ({ rows } = await runPreflight(spec, sessions));
  } finally {
    closeAll(sessions);
  }
  rows = sortRows(
    rows,
    spec.nodes.map((n) => n.name),
  );
  const failed = rows.some((r) => r.status === "fail" || (values.strict && r.status === "warn"));
  if (values.json) process.stdout.write(jsonReport("preflight", rows));
  else process.stdout.write(formatTable(rows, `preflight for cluster ${spec.name} (${spec.nodes.length} hosts)`));
  progress("preflight", "done", failed ? "problems found: fix the FAIL rows and run again" : "ready");
  return failed ? 1 : 0;
});
