// bun run etcd:status FILE [--spec FILE] [--node NAME] [--json]
import { defineCommand, JSON_FLAG, runCommand, SPEC_FLAG } from "../lib/cli.ts";
import { UserError } from "../lib/errors.ts";
import { snapshotStatus, statusTable } from "../lib/etcd/status.ts";

const command = defineCommand({
  name: "etcd:status",
  usage: "bun run etcd:status SNAPSHOT [--spec FILE] [--node NAME] [--json]",
  description:
    "Checks an etcd snapshot before anyone relies on it: the sha256 sidecar (when present), the checksum etcd embeds in every snapshot (finds truncation and flipped bytes), then `snapshot status` (etcdutl for 3.5+, etcdctl for 3.4) and prints hash, revision, total keys and total size. Runs the tool on this machine when one is installed (then no spec is needed), else (or with --node) on a control plane of the spec, in a private staging directory it removes again.",
  positionals: [{ name: "SNAPSHOT", description: "the .db file etcd:backup wrote" }],
  options: {
    ...SPEC_FLAG,
    node: { type: "string", value: "NAME", description: "check on this control plane instead of locally" },
    ...JSON_FLAG,
  },
  spec: "hosts",
  exits: {
    0: "the snapshot is readable and intact",
    1: "the control plane could not be reached or failed",
    2: "bad input: a missing, truncated or corrupted snapshot, or bad flags",
  },
  jsonData: "{file, sha256, sidecarChecked, embeddedChecksum, checkedWith, hash, revision, totalKeys, totalSize}",
  examples: [
    "bun run etcd:status backups/prod-cp-1-20250101T030000Z.db",
    "bun run etcd:status backups/x.db --spec cluster.yaml --node cp-1 --json",
  ],
});

await runCommand(command, async (cli) => {
  const file = cli.positionals[0];
  if (!file)
    throw new UserError(
      "etcd:status needs the SNAPSHOT file, e.g. bun run etcd:status backups/prod-cp-1-20250101T030000Z.db.",
    );
  const r = await snapshotStatus(file, { spec: cli.spec, node: cli.values.node });
  if (!cli.json)
    process.stdout.write(
      `${statusTable(r)}\n${r.file}: sha256 ${r.sha256} (${r.sidecarChecked ? "matches the .sha256 sidecar" : "no .sha256 sidecar"}), embedded checksum ok, read by ${r.checkedWith}\n`,
    );
  return { data: r };
});
