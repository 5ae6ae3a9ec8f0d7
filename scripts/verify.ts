// bun run verify: the post-install checks as a table; see lib/ops/verify.ts.
import { checkedFlag, parseCommand, progress, runCommand } from "../lib/cli.ts";
import { closeAll, connectAll } from "../lib/ops/connect.ts";
import { type CheckRow, formatTable, jsonReport, sortRows } from "../lib/ops/report.ts";
import { runVerify } from "../lib/ops/verify.ts";
import { imageReferenceProblem } from "../lib/spec/formats.ts";
import { loadSpec, specPath } from "../lib/spec/load.ts";

await runCommand(async () => {
  const { values, positionals } = parseCommand({
    name: "verify",
    usage: "bun run verify [--json] [--workload [--image IMAGE]] [SPEC]",
    description:
      "Checks a built cluster over SSH: the VIP is on exactly one control plane; haproxy accepts connections on the load-balancer port of every control plane; every apiserver backend is UP in haproxy's stats (read on the host; the stats password never leaves it); GET /healthz through the VIP answers 200; etcd lists every control plane as a member and each member is healthy (etcdctl with the kubeadm certificates); every node is Ready (kubectl with /etc/kubernetes/admin.conf, when the cluster is initialized). --workload also runs the runbook's function test: an nginx deployment in its own namespace, scaled to 4, exposed as a NodePort and fetched through the VIP and every node, then deleted. Prints one table with the fix for each failure. Exit 0 when every check passes, 1 when one fails, 2 on bad input.",
    options: { json: { type: "boolean" }, workload: { type: "boolean" }, image: { type: "string" } },
    allowPositionals: true,
  });
  // The image goes into a root script on a control plane: an image reference, nothing else.
  const image = checkedFlag("image", values.image ?? "nginx", (v) => imageReferenceProblem(v, "nginx:1.27"));
  const spec = loadSpec(specPath(positionals[0]));
  const sessions = await connectAll(spec, spec.nodes, { phase: "verify" });
  let rows: CheckRow[];
  try {
    rows = await runVerify(spec, sessions, { workload: values.workload, image });
  } finally {
    closeAll(sessions);
  }
  rows = sortRows(rows, ["vip", "cluster", ...spec.nodes.map((n) => n.name)]);
  const failed = rows.some((r) => r.status === "fail");
  if (values.json) process.stdout.write(jsonReport("verify", rows));
  else
    process.stdout.write(
      formatTable(
        rows,
        `verify cluster ${spec.name} (${spec.controlPlaneEndpoint.vip}:${spec.controlPlaneEndpoint.port})`,
      ),
    );
  progress("verify", "done", failed ? "some checks FAILED" : "all checks passed");
  return failed ? 1 : 0;
});
