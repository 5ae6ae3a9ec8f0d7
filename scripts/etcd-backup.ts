// bun run etcd:backup [--spec FILE] [--node NAME] [--out DIR] [--json]
import { defineCommand, JSON_FLAG, runCommand } from "../lib/cli.ts";
import { runBackup } from "../lib/etcd/backup.ts";
import { commonEtcdFlags, etcdAccess } from "../lib/etcd/flags.ts";

const command = defineCommand({
  name: "etcd:backup",
  usage: "bun run etcd:backup [--spec FILE] [--node NAME] [--out DIR] [--json]",
  description:
    "Takes an etcd snapshot on a healthy control plane (the first healthy one, or --node), downloads it over SFTP as <cluster>-<node>-<UTC time>.db (mode 0600) into --out or etcd.backup.directory, writes <file>.sha256 and <file>.json (revision, keys, size, hash, etcd version, members), checks the download against the remote checksum, removes the remote copy and keeps the newest etcd.backup.retention snapshots of this cluster (the one just taken always among them); retention deletes only snapshots whose JSON sidecar names this cluster, so clusters can share a directory. Never overwrites a file. Changes no host (the snapshot's temporary copy on the node is removed).",
  options: {
    ...commonEtcdFlags,
    node: {
      type: "string",
      value: "NAME",
      description: "snapshot this control plane (default: the first healthy one)",
    },
    out: {
      type: "string",
      value: "DIR",
      description: "local directory for the snapshot (default etcd.backup.directory)",
    },
    ...JSON_FLAG,
  },
  spec: "hosts",
  exits: { 0: "snapshot written and verified", 1: "no healthy member, or the snapshot failed", 2: "bad input" },
  jsonData:
    "{file, sha256, sha256File, jsonFile, node, revision, totalKeys, totalSize, hash, etcdVersion, members, removed, seconds, ...}",
  examples: [
    "bun run etcd:backup --spec cluster.yaml",
    "bun run etcd:backup --spec cluster.yaml --node cp-2 --out /srv/backups",
  ],
});

await runCommand(command, async (cli) => {
  const { values } = cli;
  const access = etcdAccess(values);
  const r = await runBackup(cli.spec(), { node: values.node, outDir: values.out, access });
  if (!cli.json)
    process.stdout.write(
      `${r.file}\n  sha256 ${r.sha256}\n  revision ${r.revision}, ${r.totalKeys} keys, ${r.totalSize} bytes, hash ${r.hash}, etcd ${r.etcdVersion}, from ${r.node}\n` +
        (r.removed.length ? `  retention removed: ${r.removed.join(", ")}\n` : ""),
    );
  return { data: r };
});
