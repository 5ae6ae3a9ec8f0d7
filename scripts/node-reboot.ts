// bun run node:reboot NAME: one control plane rebooted with no failed request through the VIP; see lib/ops/node-reboot.ts.
import { defineCommand, JSON_FLAG, progress, runCommand, SPEC_FLAG, secondsFlag } from "../lib/cli.ts";
import { UserError } from "../lib/errors.ts";
import { rebootNode } from "../lib/ops/node-reboot.ts";

const command = defineCommand({
  name: "node:reboot",
  usage: "bun run node:reboot NAME [--spec FILE] [--timeout SECONDS] [--dry-run] [--yes] [--json]",
  description:
    "Reboots one control plane (a kernel update, maintenance) without a failed request through the VIP. Refused unless every etcd member is healthy and every apiserver ready. It drains the Node (kubectl drain), moves the VIP to a healthy peer if this node holds it, takes the apiserver out of every load balancer (its shutdown delay) while etcd still serves it, stops etcd (a leader hands over), reboots the host, waits until it is back (SSH with a new boot), its etcd member healthy and its apiserver ready and counted by the load balancers, then uncordons the Node. The VIP does not move back. Workers need none of this: kubectl drain, reboot, kubectl uncordon. Asks first unless --yes.",
  positionals: [{ name: "NAME", description: "the control plane to reboot, as named in the spec" }],
  options: {
    ...SPEC_FLAG,
    timeout: {
      type: "string",
      value: "SECONDS",
      description: "how long the host may take to come back and serve (default 600)",
    },
    "dry-run": { type: "boolean", description: "check the cluster and show the plan; change nothing" },
    yes: { type: "boolean", description: "reboot without asking (needed without a terminal)" },
    ...JSON_FLAG,
  },
  spec: "hosts",
  exits: {
    0: "rebooted and serving again (or planned with --dry-run)",
    1: "the reboot failed or the host did not come back in time (the message says where it stopped)",
    2: "bad input, a worker, the cluster not healthy, or not confirmed: nothing changed",
  },
  jsonData: "{node, holderBefore, holderAfter, downSeconds, seconds, dryRun}",
  examples: [
    "bun run node:reboot cp-2 --spec cluster.yaml --dry-run",
    "bun run node:reboot cp-2 --spec cluster.yaml --yes",
  ],
});

await runCommand(command, async (cli) => {
  const { values } = cli;
  const timeout = secondsFlag("timeout", values.timeout, 600);
  const [name, ...extra] = cli.positionals;
  if (!name || extra.length)
    throw new UserError(
      "node:reboot needs exactly one NAME, a control plane of the spec, e.g. bun run node:reboot cp-2.",
    );
  if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(name))
    throw new UserError(`node:reboot: "${name}" is not a node name (a DNS label, as in the spec's nodes).`);
  const dryRun = !!values["dry-run"];
  const spec = cli.spec();
  if (!dryRun) await cli.confirm(`reboots ${name}`, { ask: false });
  const r = await rebootNode(spec, name, {
    timeoutSeconds: timeout,
    dryRun,
    log: progress,
    confirm: async (plan) => {
      await cli.confirm(`reboots ${name} (plan above)`, { preface: plan.map((l) => `  ${l}`).join("\n") });
    },
  });
  if (!cli.json && !dryRun)
    process.stdout.write(
      `${r.node}: rebooted and serving again in ${r.seconds} s (down ${r.downSeconds} s); VIP on ${r.holderAfter ?? "?"} (was ${r.holderBefore ?? "?"})\n`,
    );
  return { data: { ...r, dryRun } };
});
