// bun run verify: the post-install checks as a table; see lib/ops/verify.ts.
import { checkedFlag, defineCommand, JSON_FLAG, progress, runCommand, SPEC_FLAG } from "../lib/cli.ts";
import { closeAll, connectAll } from "../lib/ops/connect.ts";
import { type CheckRow, failedRowsMessage, formatTable, reportData, sortRows } from "../lib/ops/report.ts";
import { runVerify } from "../lib/ops/verify.ts";
import { imageReferenceProblem } from "../lib/spec/formats.ts";

const command = defineCommand({
  name: "verify",
  usage: "bun run verify [--spec FILE] [--json] [--workload [--image IMAGE]]",
  description:
    "Checks a built cluster over SSH: the VIP is on exactly one control plane; haproxy accepts connections on the load-balancer port of every control plane; every apiserver backend is UP in haproxy's stats (read on the host; the stats password never leaves it); GET /healthz through the VIP answers 200; etcd lists every control plane as a member and each member is healthy (etcdctl with the kubeadm certificates); every node is Ready (kubectl with /etc/kubernetes/admin.conf, when the cluster is initialized). Prints one table with the fix for each failure. Read-only, except --workload's test deployment, which it deletes again.",
  options: {
    ...SPEC_FLAG,
    ...JSON_FLAG,
    workload: {
      type: "boolean",
      description: "also run the function test: nginx scaled to 4, a NodePort fetched via the VIP and every node",
    },
    image: { type: "string", value: "IMAGE", description: "the image of --workload's deployment (default nginx)" },
  },
  spec: "hosts",
  exits: { 0: "every check passed", 1: "a check failed (the row says how to fix it)", 2: "bad input" },
  jsonData: "{cluster, summary: {pass, fail, warn, info}, rows: [{host, check, status, detail, fix?}]}",
  examples: ["bun run verify --spec cluster.yaml", "CLUSTER_SPEC=cluster.yaml bun run verify --workload --json"],
});

await runCommand(command, async (cli) => {
  // The image goes into a root script on a control plane: an image reference, nothing else.
  const image = checkedFlag("image", cli.values.image ?? "nginx", (v) => imageReferenceProblem(v, "nginx:1.27"));
  const spec = cli.spec();
  const sessions = await connectAll(spec, spec.nodes, { phase: "verify" });
  let rows: CheckRow[];
  try {
    rows = await runVerify(spec, sessions, { workload: cli.values.workload, image });
  } finally {
    closeAll(sessions);
  }
  rows = sortRows(rows, ["vip", "cluster", ...spec.nodes.map((n) => n.name)]);
  const error = failedRowsMessage(rows);
  if (!cli.json)
    process.stdout.write(
      formatTable(
        rows,
        `verify cluster ${spec.name} (${spec.controlPlaneEndpoint.vip}:${spec.controlPlaneEndpoint.port})`,
      ),
    );
  progress("verify", "done", error ? "some checks FAILED" : "all checks passed");
  return { code: error ? 1 : 0, data: reportData(spec.name, rows), error };
});
