// etcd:status: the checks and the table, locally when an etcd tool is here,
// otherwise on a control plane (the file is uploaded to a private staging dir).

import { UserError } from "../errors.ts";
import { type Progress, progress } from "../progress.ts";
import { type ConnectOptions, connectNode, makeStagingDir, removeStagingDir } from "../remote/ssh.ts";
import type { ClusterSpec } from "../spec/schema.ts";
import { controlPlanes } from "../spec/topology.ts";
import { probeNode, remoteSnapshotStatus } from "./remote.ts";
import { type SnapshotStatus, verifySnapshotFile } from "./snapshot.ts";

export interface StatusReport extends SnapshotStatus {
  file: string;
  sha256: string;
  sidecarChecked: boolean;
  embeddedChecksum: "ok";
  checkedWith: string;
}

export async function snapshotStatus(
  file: string,
  opts: { spec?: () => ClusterSpec; node?: string; connect?: ConnectOptions; log?: Progress },
): Promise<StatusReport> {
  const v = await verifySnapshotFile(file);
  const base = { file, sha256: v.sha256, sidecarChecked: v.sidecarChecked, embeddedChecksum: "ok" as const };
  if (v.status && !opts.node) return { ...base, ...v.status, checkedWith: `local ${v.tool}` };
  if (!opts.spec)
    throw new UserError(
      "no etcdutl or etcdctl on this machine; pass --node NAME to check the snapshot on a control plane.",
    );
  const spec = opts.spec();
  const cps = controlPlanes(spec);
  const node = opts.node ? cps.find((n) => n.name === opts.node) : cps[0];
  if (!node)
    throw new UserError(
      `--node ${opts.node}: no control plane of that name (control planes: ${cps.map((n) => n.name).join(", ")}).`,
    );
  const remote = await connectNode(spec, node, opts.connect);
  let dir = "";
  try {
    const n = await probeNode(remote, node);
    dir = await makeStagingDir(remote, { parent: "/var/tmp", name: "kubeadm-ha-status" });
    (opts.log ?? progress)(node.name, "upload", `${file} for snapshot status`);
    await remote.put({ path: file }, `${dir}/snapshot.db`, { mode: 0o600 });
    const status = await remoteSnapshotStatus(n, `${dir}/snapshot.db`).catch((e: Error) => {
      throw new UserError(
        `${file}: etcd ${n.version} on ${node.name} cannot read this snapshot (${e.message.slice(0, 200)}); it is truncated or corrupted. Use another backup.`,
      );
    });
    return { ...base, ...status, checkedWith: `${n.hasEtcdutl ? "etcdutl" : "etcdctl"} ${n.version} on ${node.name}` };
  } finally {
    if (dir) await removeStagingDir(remote, dir);
    remote.close();
  }
}

const human = (n: number): string => {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
};

/** The table etcdctl prints (hash in hex, size human-readable). */
export function statusTable(s: SnapshotStatus): string {
  const head = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"];
  const row = [s.hash.toString(16), String(s.revision), String(s.totalKeys), human(s.totalSize)];
  const w = head.map((h, i) => Math.max(h.length, row[i]!.length) + 2);
  const line = `+${w.map((x) => "-".repeat(x)).join("+")}+`;
  const fmt = (cells: string[]) => `|${cells.map((c, i) => ` ${c.padEnd(w[i]! - 1)}`).join("|")}|`;
  return [line, fmt(head), line, fmt(row), line].join("\n");
}
