// bun run etcd:backup [--node NAME] [--out DIR] [--json]
import { parseCommand, runCommand } from "../lib/cli.ts";
import { runBackup } from "../lib/etcd/backup.ts";
import { COMMON_HELP, commonEtcdFlags, specAndAccess } from "../lib/etcd/flags.ts";

await runCommand(async () => {
  const { values } = parseCommand({
    name: "etcd:backup",
    usage: "bun run etcd:backup [--node NAME] [--out DIR] [--json]",
    description: `Takes an etcd snapshot on a healthy control plane (the first healthy one, or --node), downloads it over SFTP as <cluster>-<node>-<UTC time>.db (mode 0600) into --out or etcd.backup.directory, writes <file>.sha256 and <file>.json (revision, keys, size, hash, etcd version, members), checks the download against the remote checksum, removes the remote copy and keeps the newest etcd.backup.retention snapshots of this cluster (the one just taken always among them); retention deletes only snapshots whose JSON sidecar names this cluster, so clusters can share a directory. Never overwrites a file. ${COMMON_HELP}`,
    options: { ...commonEtcdFlags, node: { type: "string" }, out: { type: "string" }, json: { type: "boolean" } },
  });
  const { spec, access } = specAndAccess(values);
  const r = await runBackup(spec, { node: values.node, outDir: values.out, access });
  if (values.json) {
    process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
  } else {
    process.stdout.write(
      `${r.file}\n  sha256 ${r.sha256}\n  revision ${r.revision}, ${r.totalKeys} keys, ${r.totalSize} bytes, hash ${r.hash}, etcd ${r.etcdVersion}, from ${r.node}\n` +
        (r.removed.length ? `  retention removed: ${r.removed.join(", ")}\n` : ""),
    );
  }
  return 0;
});
