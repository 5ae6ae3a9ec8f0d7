// bun run node:replace NAME: a control plane or worker whose host was lost or reinstalled; see lib/heal/replace.ts.
import { defineCommand, HEAL_FLAGS, JSON_FLAG, progress, runCommand, SPEC_FLAG, secondsFlag } from "../lib/cli.ts";
import { planText } from "../lib/heal/plan.ts";
import { nodeByName, replaceNode } from "../lib/heal/replace.ts";
import { defaultStackDir } from "../lib/heal/terraform.ts";

const command = defineCommand({
  name: "node:replace",
  usage: "bun run node:replace NAME [--spec FILE] [--stack-dir DIR] [--yes] [--dry-run] [--json]",
  description:
    "Brings back a control plane or worker whose host was lost or reinstalled (same address, or a new one from the spec: edit it, run bun run synth, then this). For a control plane: checks that the other members keep etcd's quorum without it (refuses otherwise, and when another member is down too: one control plane at a time), removes its stale etcd member by peer URL (also one that never started) through a healthy control plane, deletes its Node, resets the host (kubeadm reset -f, kubeadm-ha's state), then runs the node's Terraform steps again through the normal apply (terraform apply -replace: prepare, load balancer, join; the join gets a fresh token and certificate key) and waits until etcd has every member healthy and /readyz answers through the VIP. A worker: Node deleted, host reset, its steps replaced. The replacement host must answer SSH at the spec's address with a known host key. The first control plane (the one kubeadm init ran on) cannot be replaced this way. Asks first unless --yes.",
  positionals: [{ name: "NAME", description: "the node to replace, as named in the spec" }],
  options: {
    ...SPEC_FLAG,
    ...HEAL_FLAGS,
    yes: { type: "boolean", description: "replace without asking (needed without a terminal)" },
    ...JSON_FLAG,
  },
  spec: "hosts",
  exits: {
    0: "replaced: etcd N/N healthy and /readyz through the VIP (or --dry-run)",
    1: "a step failed or the cluster was not whole in time (running it again continues)",
    2: "bad input, unsafe (quorum, another member down), or not confirmed: nothing changed",
    130: "interrupted by SIGINT; run node:replace again to continue",
    143: "interrupted by SIGTERM; run node:replace again to continue",
  },
  jsonData:
    "{node, role, plan: [{host, phase, action}], dryRun, removedMember, clusterIdBefore, clusterIdAfter, members, terraformSeconds, seconds}",
  examples: [
    "bun run node:replace cp-2 --spec cluster.yaml --dry-run",
    "bun run node:replace worker-1 --spec cluster.yaml --yes --json",
  ],
});

await runCommand(command, async (cli) => {
  const { values } = cli;
  const timeout = secondsFlag("timeout", values.timeout, 300);
  const spec = cli.spec();
  const node = nodeByName(spec, cli.positionals[0], "node:replace");
  const onSignal = (sig: NodeJS.Signals) =>
    cli.exit(sig === "SIGTERM" ? 143 : 130, {
      error: `interrupted by ${sig}; run node:replace ${node.name} again to continue (each step is safe to repeat).`,
    });
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const r = await replaceNode(spec, node, {
    stackDir: values["stack-dir"] ?? defaultStackDir(spec),
    dryRun: !!values["dry-run"],
    timeoutSeconds: timeout,
    log: progress,
    confirm: async (plan) => {
      if (!cli.json) process.stderr.write(planText(plan));
      await cli.confirm(`replaces ${node.role} ${node.name} of "${spec.name}" (plan above)`);
    },
  });
  if (!cli.json) {
    if (r.dryRun) process.stdout.write(`node:replace ${node.name} would do:\n${planText(r.plan)}`);
    else
      process.stdout.write(
        `${node.name} replaced in ${r.seconds} s${r.members ? `: etcd ${r.members}/${r.members} healthy, cluster ${r.clusterIdAfter}` : ""}, /readyz through the VIP answers\n`,
      );
  }
  return { data: r };
});
