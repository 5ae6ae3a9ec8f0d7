// bun run etcd:status FILE [--node NAME] [--json]
import { parseCommand, runCommand } from "../lib/cli.ts";
import { UserError } from "../lib/errors.ts";
import { snapshotStatus, statusTable } from "../lib/etcd/status.ts";
import { loadSpec, specPath } from "../lib/spec/load.ts";

await runCommand(async () => {
  const { values, positionals } = parseCommand({
    name: "etcd:status",
    usage: "bun run etcd:status FILE [--node NAME] [--json]",
    description:
      "Checks an etcd snapshot before anyone relies on it: the sha256 sidecar (when present), the checksum etcd embeds in every snapshot (finds truncation and flipped bytes), then `snapshot status` (etcdutl for 3.5+, etcdctl for 3.4) and prints hash, revision, total keys and total size. Runs the tool locally when one is installed, else (or with --node) on a control plane. Exit 2 for a missing, truncated or corrupted file.",
    options: { spec: { type: "string" }, node: { type: "string" }, json: { type: "boolean" } },
    allowPositionals: true,
  });
  const file = positionals[0];
  if (!file || positionals.length > 1)
    throw new UserError(
      "etcd:status takes exactly one snapshot FILE, e.g. bun run etcd:status backups/prod-cp-1-20250101T030000Z.db.",
    );
  const r = await snapshotStatus(file, { spec: () => loadSpec(specPath(values.spec)), node: values.node });
  if (values.json) process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
  else
    process.stdout.write(
      `${statusTable(r)}\n${r.file}: sha256 ${r.sha256} (${r.sidecarChecked ? "matches the .sha256 sidecar" : "no .sha256 sidecar"}), embedded checksum ok, read by ${r.checkedWith}\n`,
    );
  return 0;
});
