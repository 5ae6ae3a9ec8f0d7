// bun run etcd:recover --from NODE: a new one-member etcd from a survivor's own data; see lib/heal/recover.ts.
import { defineCommand, JSON_FLAG, progress, runCommand, SPEC_FLAG, secondsFlag } from "../lib/cli.ts";
import { UserError } from "../lib/errors.ts";
import { planText, RECOVER_VS_RESTORE } from "../lib/heal/plan.ts";
import { recoverFrom } from "../lib/heal/recover.ts";
import { nodeByName } from "../lib/heal/replace.ts";

const command = defineCommand({
  name: "etcd:recover",
  usage: "bun run etcd:recover --from NODE [--spec FILE] [--timeout S] [--yes] [--dry-run] [--json]",
  description: `Quorum is lost for good (most control planes' disks or hosts are gone) but one control plane still has its etcd data: makes that member a new one-member cluster from its own data, as etcd's disaster-recovery guide says (--force-new-cluster added to its static pod manifest for one start, then removed and etcd restarted), and waits until the API answers through the VIP. Then bring the others back with node:replace, one at a time. Refuses when etcd still has a quorum (then node:replace is the way) and when another member still runs on the old data (it could form a second cluster). ${RECOVER_VS_RESTORE} Asks first unless --yes.`,
  options: {
    ...SPEC_FLAG,
    from: { type: "string", value: "NODE", description: "the control plane whose etcd data survived" },
    timeout: {
      type: "string",
      value: "SECONDS",
      description: "how long to wait for each etcd start and the API (default 120)",
    },
    yes: { type: "boolean", description: "recover without asking (needed without a terminal)" },
    "dry-run": { type: "boolean", description: "check and print the plan; change nothing" },
    ...JSON_FLAG,
  },
  spec: "hosts",
  exits: {
    0: "a one-member cluster serves the API through the VIP (or --dry-run)",
    1: "etcd or the API did not come back in time (the flag is removed again either way)",
    2: "bad input, quorum still there, another member still running, no data on NODE, or not confirmed: nothing changed",
    130: "interrupted by SIGINT; run etcd:recover again (it finishes an interrupted recovery)",
    143: "interrupted by SIGTERM; run etcd:recover again",
  },
  jsonData: "{from, plan: [{host, phase, action}], dryRun, clusterId, members, secondsToApi, backup, next}",
  examples: [
    "bun run etcd:recover --from cp-1 --spec cluster.yaml --dry-run",
    "bun run etcd:recover --from cp-1 --spec cluster.yaml --yes",
  ],
});

await runCommand(command, async (cli) => {
  const { values } = cli;
  const timeout = secondsFlag("timeout", values.timeout, 120);
  if (!values.from)
    throw new UserError(
      "etcd:recover needs --from NODE: the control plane whose etcd data survived, e.g. --from cp-1.",
    );
  const spec = cli.spec();
  const node = nodeByName(spec, values.from, "etcd:recover");
  const onSignal = (sig: NodeJS.Signals) =>
    cli.exit(sig === "SIGTERM" ? 143 : 130, {
      error: `interrupted by ${sig}; run etcd:recover --from ${node.name} again to finish.`,
    });
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const r = await recoverFrom(spec, node, {
    dryRun: !!values["dry-run"],
    timeoutSeconds: timeout,
    log: progress,
    confirm: async (plan) => {
      if (!cli.json) process.stderr.write(planText(plan));
      await cli.confirm(`makes ${node.name}'s etcd a new one-member cluster of "${spec.name}" (plan above)`);
    },
  });
  if (!cli.json) {
    if (r.dryRun) process.stdout.write(`etcd:recover --from ${node.name} would do:\n${planText(r.plan)}`);
    else
      process.stdout.write(
        `${node.name}: one-member etcd (cluster ${r.clusterId}), API serving after ${r.secondsToApi} s. Next: ${r.next}\n`,
      );
  }
  return { data: r };
});
