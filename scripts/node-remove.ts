// bun run node:remove NAME: a node out of the cluster for good, after the spec edit; see lib/heal/remove.ts.
import { defineCommand, HEAL_FLAGS, JSON_FLAG, progress, runCommand, SPEC_FLAG, secondsFlag } from "../lib/cli.ts";
import { UserError } from "../lib/errors.ts";
import { planText } from "../lib/heal/plan.ts";
import { removeNodes } from "../lib/heal/remove.ts";
import { defaultStackDir } from "../lib/heal/terraform.ts";

const command = defineCommand({
  name: "node:remove",
  usage: "bun run node:remove NAME [--spec FILE] [--stack-dir DIR] [--force] [--yes] [--dry-run]",
  description:
    "Takes nodes out of the cluster for good. Edit the spec first: delete the node from nodes and run bun run synth (5 -> 3 control planes: delete two, name both); node:remove refuses while a named node is still in the spec or the stack, and when the spec drops a node it was not given, so nothing changes behind Terraform's back. It reads the node's address and role from Terraform's state, drains it and deletes its Node, removes its etcd member (a control plane; only while the others keep quorum), runs kubeadm reset on the host if it answers, then applies the edited spec: Terraform drops the node's steps and rolls the other control planes' load balancers (haproxy backends, keepalived peers) one at a time. Etcd members come out one at a time, each while the members left keep quorum. Refuses to leave fewer than 3 control planes unless --force (the spec's validation already refuses an even number). Asks first unless --yes.",
  positionals: [
    {
      name: "NAME...",
      description: "the node(s) to remove, as they were named in the spec: every node the edited spec drops",
    },
  ],
  allowPositionals: true,
  options: {
    ...SPEC_FLAG,
    ...HEAL_FLAGS,
    force: { type: "boolean", description: "allow leaving fewer than 3 control planes" },
    yes: { type: "boolean", description: "remove without asking (needed without a terminal)" },
    ...JSON_FLAG,
  },
  spec: "hosts",
  exits: {
    0: "removed, the load balancers rolled, etcd healthy and /readyz through the VIP (or --dry-run)",
    1: "a step failed (running bun run deploy finishes the Terraform part)",
    2: "bad input, the node still in the spec, too few control planes left without --force, no quorum, or not confirmed: nothing changed",
    130: "interrupted by SIGINT",
    143: "interrupted by SIGTERM",
  },
  jsonData:
    "{nodes: [{node, role, address, removedMember, reset}], plan: [{host, phase, action}], dryRun, members, seconds}",
  examples: [
    "bun run node:remove worker-3 --spec cluster.yaml --dry-run",
    "bun run node:remove cp-5 --spec cluster.yaml --yes",
  ],
});

await runCommand(command, async (cli) => {
  const { values } = cli;
  const timeout = secondsFlag("timeout", values.timeout, 300);
  const names = cli.positionals;
  if (names.length === 0)
    throw new UserError(
      "node:remove needs the node's NAME (as it was in the spec), e.g. bun run node:remove worker-3.",
    );
  for (const name of names) {
    // A path where a name belongs is most likely the spec, given the old positional way.
    if (/[/]|\.ya?ml$/.test(name))
      throw new UserError(
        `node:remove: unexpected argument ${name}. Name the spec with --spec FILE; the arguments are node names.`,
      );
    if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(name))
      throw new UserError(`node:remove: "${name}" is not a node name (a DNS label, as in the spec's nodes).`);
  }
  const name = names.join(" ");
  const spec = cli.spec();
  const onSignal = (sig: NodeJS.Signals) =>
    cli.exit(sig === "SIGTERM" ? 143 : 130, {
      error: `interrupted by ${sig}; run node:remove ${name} again to continue.`,
    });
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const r = await removeNodes(spec, names, {
    stackDir: values["stack-dir"] ?? defaultStackDir(spec),
    force: !!values.force,
    dryRun: !!values["dry-run"],
    timeoutSeconds: timeout,
    drainTimeoutSeconds: 120,
    log: progress,
    confirm: async (plan) => {
      if (!cli.json) process.stderr.write(planText(plan));
      await cli.confirm(`removes ${name} from "${spec.name}" for good (plan above)`);
    },
  });
  if (!cli.json) {
    if (r.dryRun) process.stdout.write(`node:remove ${name} would do:\n${planText(r.plan)}`);
    else
      process.stdout.write(
        `${name} removed in ${r.seconds} s${r.members ? `; etcd ${r.members}/${r.members} healthy` : ""}\n`,
      );
  }
  return { data: r };
});
