// bun run etcd:patch-manifest --data-dir DIR [--node NAME] [--dry-run] [--json]
import { checkedFlag, parseCommand, runCommand } from "../lib/cli.ts";
import { UserError } from "../lib/errors.ts";
import { patchManifests } from "../lib/etcd/patch-remote.ts";
import { absolutePathProblem } from "../lib/spec/formats.ts";
import { loadSpec, specPath } from "../lib/spec/load.ts";

await runCommand(async () => {
  const { values } = parseCommand({
    name: "etcd:patch-manifest",
    usage: "bun run etcd:patch-manifest --data-dir DIR [--node NAME] [--dry-run] [--json]",
    description:
      "Points /etc/kubernetes/manifests/etcd.yaml on each control plane (or only --node) at DIR: the --data-dir flag, the etcd-data volume's mountPath and its hostPath, nothing else (comments and layout kept). The original is kept in /var/lib/kubeadm-ha/manifest-backups (0600) and the file is replaced in one rename, so the kubelet restarts etcd once. Refuses when DIR/member does not exist on the node. For a full restore use etcd:restore, which does this for you.",
    options: {
      spec: { type: "string" },
      "data-dir": { type: "string" },
      node: { type: "string" },
      "dry-run": { type: "boolean" },
      json: { type: "boolean" },
    },
  });
  const dir = values["data-dir"];
  if (!dir)
    throw new UserError(
      "etcd:patch-manifest needs --data-dir DIR, the restored data directory, e.g. --data-dir /var/lib/etcd-restore-20250101T030000Z.",
    );
  checkedFlag("data-dir", dir, (v) => absolutePathProblem(v, "/var/lib/etcd-restore-20250101T030000Z"));
  const spec = loadSpec(specPath(values.spec));
  const results = await patchManifests(spec, dir, { node: values.node, dryRun: values["dry-run"] });
  if (values.json) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  else
    for (const r of results)
      process.stdout.write(
        `${r.node}: ${r.changed ? `${r.oldDataDir} -> ${r.newDataDir}${r.backup ? ` (original: ${r.backup})` : " (dry run)"}` : `already ${r.newDataDir}`}\n`,
      );
  return 0;
});
