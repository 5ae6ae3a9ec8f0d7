// bun run certs:renew [--node NAME]... : renew the control planes' kubeadm certificates and load them; see lib/ops/certs-renew.ts.
import { defineCommand, JSON_FLAG, progress, runCommand, SPEC_FLAG } from "../lib/cli.ts";
import { UserError } from "../lib/errors.ts";
import { renewCertificates } from "../lib/ops/certs-renew.ts";

const command = defineCommand({
  name: "certs:renew",
  usage: "bun run certs:renew [--spec FILE] [--node NAMES] [--dry-run] [--yes] [--json]",
  description:
    "Renews the kubeadm certificates of every control plane (or only --node) and makes the components load them, one control plane at a time and without a failed request through the VIP: it backs up /etc/kubernetes/pki and the kubeconfigs to /var/lib/kubeadm-ha/pki-backups (0600), runs kubeadm certs renew all, takes the apiserver out (its shutdown delay drains it from every load balancer), restarts etcd, brings the apiserver back, waits until the load balancers count it again, then restarts the controller-manager and scheduler. Before each control plane it checks that every etcd member is healthy and every apiserver ready, and stops otherwise. Renewing again is safe. Fetch a new admin kubeconfig afterwards (bun run kubeconfig): the old one works until its own certificate expires. Asks first unless --yes.",
  options: {
    ...SPEC_FLAG,
    node: {
      type: "string",
      value: "NAMES",
      description: "renew these control planes only (comma-separated; default: every one)",
    },
    "dry-run": { type: "boolean", description: "check the cluster and show the plan; change nothing" },
    yes: { type: "boolean", description: "renew without asking (needed without a terminal)" },
    ...JSON_FLAG,
  },
  spec: "hosts",
  exits: {
    0: "renewed and loaded on every control plane asked for (or planned with --dry-run)",
    1: "a control plane failed or became unhealthy part-way (the message names what was renewed)",
    2: "bad input, the cluster not healthy before the first control plane, or not confirmed: nothing changed",
  },
  jsonData:
    "{dryRun, nodes: [{node, backup, apiserverSerialBefore, apiserverSerialAfter, apiserverNotAfter, restarted, seconds}]}",
  examples: [
    "bun run certs:renew --spec cluster.yaml --dry-run",
    "bun run certs:renew --spec cluster.yaml --node cp-2 --yes",
  ],
});

await runCommand(command, async (cli) => {
  const { values } = cli;
  const nodes = values.node
    ?.split(",")
    .map((n) => n.trim())
    .filter(Boolean);
  for (const n of nodes ?? [])
    if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(n))
      throw new UserError(`--node: "${n}" is not a node name (a DNS label, as in the spec's nodes).`);
  const dryRun = !!values["dry-run"];
  const spec = cli.spec();
  // Without a terminal the question cannot be asked: refuse before reaching any host.
  if (!dryRun) await cli.confirm("renews certificates and restarts control-plane pods", { ask: false });
  const renewed = await renewCertificates(spec, {
    nodes,
    dryRun,
    log: progress,
    confirm: async (plan) => {
      await cli.confirm(
        `renews the certificates of ${plan.length} control plane(s) and restarts their control-plane pods one at a time`,
        { preface: plan.map((l) => `  ${l}`).join("\n") },
      );
    },
  });
  if (!cli.json)
    for (const r of renewed)
      process.stdout.write(
        `${r.node}: renewed in ${r.seconds} s; apiserver certificate valid until ${r.apiserverNotAfter ?? "?"}; restarted ${r.restarted.join(", ")}; backup ${r.backup}\n`,
      );
  return { data: { dryRun, nodes: renewed } };
});
