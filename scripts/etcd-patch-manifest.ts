// bun run etcd:patch-manifest --data-dir DIR [--spec FILE] [--node NAME] [--dry-run] [--yes] [--json]
import { checkedFlag, defineCommand, JSON_FLAG, runCommand, SPEC_FLAG } from "../lib/cli.ts";
import { UserError } from "../lib/errors.ts";
import { type PatchResult, patchManifests } from "../lib/etcd/patch-remote.ts";
import { absolutePathProblem } from "../lib/spec/formats.ts";

const command = defineCommand({
  name: "etcd:patch-manifest",
  usage: "bun run etcd:patch-manifest --data-dir DIR [--spec FILE] [--node NAME] [--dry-run] [--yes]",
  description:
    "Points /etc/kubernetes/manifests/etcd.yaml on each control plane (or only --node) at DIR: the --data-dir flag, the etcd-data volume's mountPath and its hostPath, nothing else (comments and layout kept). The original is kept in /var/lib/kubeadm-ha/manifest-backups (0600) and the file is replaced in one rename, so the kubelet restarts etcd once. Refuses when DIR/member does not exist on the node. Shows what would change and asks first unless --yes. For a full restore use etcd:restore, which does this for you.",
  options: {
    ...SPEC_FLAG,
    "data-dir": {
      type: "string",
      value: "DIR",
      description: "the restored data directory on the nodes, e.g. /var/lib/etcd-restore-20250101T030000Z",
    },
    node: { type: "string", value: "NAME", description: "patch this control plane only (default: every one)" },
    "dry-run": { type: "boolean", description: "show what would change; change nothing" },
    yes: { type: "boolean", description: "patch without asking (needed without a terminal)" },
    ...JSON_FLAG,
  },
  spec: "hosts",
  exits: {
    0: "patched (or already pointing at DIR, or planned with --dry-run)",
    1: "a control plane could not be reached or patched",
    2: "bad input, or not confirmed (nothing changed)",
  },
  jsonData: "{dataDir, dryRun, nodes: [{node, oldDataDir, newDataDir, changed, backup?}]}",
  examples: [
    "bun run etcd:patch-manifest --spec cluster.yaml --data-dir /var/lib/etcd-restored --dry-run",
    "bun run etcd:patch-manifest --spec cluster.yaml --data-dir /var/lib/etcd-restored --node cp-1",
  ],
});

const line = (r: PatchResult, dryRun: boolean) =>
  `${r.node}: ${r.changed ? `${r.oldDataDir} -> ${r.newDataDir}${r.backup ? ` (original: ${r.backup})` : dryRun ? " (dry run)" : ""}` : `already ${r.newDataDir}`}\n`;

await runCommand(command, async (cli) => {
  const { values } = cli;
  const dir = values["data-dir"];
  if (!dir)
    throw new UserError(
      "etcd:patch-manifest needs --data-dir DIR, the restored data directory, e.g. --data-dir /var/lib/etcd-restore-20250101T030000Z.",
    );
  checkedFlag("data-dir", dir, (v) => absolutePathProblem(v, "/var/lib/etcd-restore-20250101T030000Z"));
  const dryRun = !!values["dry-run"];
  const ask = !dryRun && !values.yes;
  const spec = cli.spec();
  // Without a terminal the question cannot be asked: refuse before reaching any host.
  if (ask) await cli.confirm("changes etcd.yaml on the control planes", { ask: false });
  if (!dryRun) {
    // Check every node first (DIR/member present, manifest readable), so a refusal changes nothing;
    // then show what would change and ask: the plan is what the user confirms.
    const plan = await patchManifests(spec, dir, { node: values.node, dryRun: true });
    const changes = plan.filter((r) => r.changed);
    if (ask && changes.length) {
      for (const r of plan) process.stderr.write(line(r, true));
      await cli.confirm(
        `points etcd.yaml at ${dir} on ${changes.map((r) => r.node).join(", ")} (the kubelet restarts etcd there)`,
      );
    }
  }
  const results = await patchManifests(spec, dir, { node: values.node, dryRun });
  if (!cli.json) for (const r of results) process.stdout.write(line(r, dryRun));
  return { data: { dataDir: dir, dryRun, nodes: results } };
});
