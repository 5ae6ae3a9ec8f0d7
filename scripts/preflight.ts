// bun run preflight: are the hosts ready? Read-only; see lib/ops/preflight.ts.
import { defineCommand, JSON_FLAG, progress, runCommand, SPEC_FLAG } from "../lib/cli.ts";
import { closeAll, connectAll } from "../lib/ops/connect.ts";
import { runPreflight } from "../lib/ops/preflight.ts";
import { type CheckRow, failedRowsMessage, formatTable, reportData, sortRows } from "../lib/ops/report.ts";

const command = defineCommand({
  name: "preflight",
  usage: "bun run preflight [--spec FILE] [--json] [--strict]",
  description:
    "Checks every host before anything is installed: the ports the topology needs (control planes: 6443, 2379, 2380, 10250, 10257, 10259, the load-balancer and stats ports; workers: 10250) are free on their host, or held by this cluster's own daemons (reported as info), and reachable from every peer that needs them (a python3 or perl listener runs for a few seconds on the target; peers connect with bash's /dev/tcp); swap; the overlay and br_netfilter modules; the cgroup driver; NTP sync and clock skew between hosts (under 2 s); passwordless sudo. Changes nothing on the hosts. One table of every finding with its fix.",
  options: {
    ...SPEC_FLAG,
    ...JSON_FLAG,
    strict: { type: "boolean", description: "warnings fail too (exit 1)" },
  },
  spec: "hosts",
  exits: { 0: "nothing failed", 1: "a check failed (--strict: or warned)", 2: "bad input" },
  jsonData: "{cluster, summary: {pass, fail, warn, info}, rows: [{host, check, status, detail, fix?}]}",
  examples: ["bun run preflight --spec cluster.yaml", "bun run preflight --spec cluster.yaml --strict --json"],
});

await runCommand(command, async (cli) => {
  const spec = cli.spec();
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
  const error = failedRowsMessage(rows, cli.values.strict);
  if (!cli.json)
    process.stdout.write(formatTable(rows, `preflight for cluster ${spec.name} (${spec.nodes.length} hosts)`));
  progress("preflight", "done", error ? "problems found: fix the FAIL rows and run again" : "ready");
  return { code: error ? 1 : 0, data: reportData(spec.name, rows), error };
});
