// etcd:backup: snapshot one healthy member, download it 0600 with sidecars,
// verify it against the remote checksum, clean up, apply retention.
import { chmodSync, existsSync, mkdirSync, rmSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { EXIT, UserError } from "../errors.ts";
import { createExclusiveFile } from "../exclusive-file.ts";
import { type Progress, progress } from "../progress.ts";
import { type HostFailure, hostProblems } from "../remote/host-problems.ts";
import { type ConnectOptions, connectNode, makeStagingDir, type Remote, removeStagingDir, sq } from "../remote/ssh.ts";
import { resolveSpecPath } from "../spec/load.ts";
import type { ClusterSpec, NodeSpec } from "../spec/schema.ts";
import { controlPlanes } from "../spec/topology.ts";
import {
  type EtcdAccess,
  etcdctlFlags,
  etcdScript,
  type MemberInfo,
  memberList,
  type NodeEtcd,
  probeAndHealth,
  remoteSnapshotStatus,
} from "./remote.ts";
import {
  applyRetention,
  jsonSidecar,
  type SnapshotSidecar,
  type SnapshotStatus,
  StreamingSnapshotCheck,
  sha256Sidecar,
  snapshotName,
  writeSidecars,
} from "./snapshot.ts";

export interface BackupOptions {
  node?: string;
  outDir?: string;
  access: EtcdAccess;
  connect?: ConnectOptions;
  /** Override retention (default spec.etcd.backup.retention). */
  retention?: number;
  now?: Date;
  /** Progress lines (default: stderr). */
  log?: Progress;
}

export interface BackupResult extends SnapshotSidecar {
  sha256File: string;
  jsonFile: string;
  removed: string[];
  seconds: number;
}

export function backupDir(spec: ClusterSpec, outDir?: string): string {
  const d = outDir ?? spec.etcd.backup.directory;
  return isAbsolute(d) ? d : outDir ? join(process.cwd(), d) : resolveSpecPath(spec, d);
}

/** Connect to control planes in order and return the first with a healthy etcd (or the named one). */
async function pickMember(spec: ClusterSpec, opts: BackupOptions): Promise<NodeEtcd> {
  const cps = controlPlanes(spec);
  let candidates: NodeSpec[] = cps;
  if (opts.node) {
    const n = cps.find((c) => c.name === opts.node);
    if (!n) {
      throw new UserError(
        `--node ${opts.node}: no control plane of that name in the spec (control planes: ${cps.map((c) => c.name).join(", ")}). Pick one of those.`,
      );
    }
    candidates = [n];
  }
  const log = opts.log ?? progress;
  const problems: HostFailure[] = [];
  for (const node of candidates) {
    let remote: Remote | undefined;
    try {
      log(node.name, "connect", "probing etcd");
      remote = await connectNode(spec, node, opts.connect);
      const { n, health } = await probeAndHealth(remote, node, opts.access);
      if (health.healthy) {
        log(node.name, "connect", `etcd ${n.version} healthy at ${n.endpoint} (tools: ${n.toolsSource})`);
        return n;
      }
      problems.push({
        host: node.name,
        error: new UserError(`${node.name}: etcd not healthy (${health.detail})`, EXIT.failed),
      });
    } catch (e) {
      if (opts.node && e instanceof UserError && /HOST KEY|known_hosts/.test(e.message)) throw e;
      problems.push({ host: node.name, error: e, aliases: [node.ssh?.host ?? node.address] });
    }
    remote?.close();
  }
  // One paragraph per distinct problem: a missing known_hosts is said once, naming every control plane.
  const p = hostProblems(problems);
  throw new UserError(
    `no healthy etcd member to back up from:\n\n${p.text}\n\nFix the member (or pass --node NAME of a healthy one) and run again.`,
    p.exitCode,
  );
}

/**
 * Bash: etcdctl saves the snapshot on the node while this script streams it to stdout, so the
 * transfer overlaps the save instead of following it. etcdctl writes `snapshot.db.part` and
 * renames it when complete; `tail -f` follows the open file through the rename and stops once
 * etcdctl has exited and every byte is out. If the part file is already gone, the finished file
 * is sent whole. stderr ends with the file's size, checked against the bytes received.
 */
export function saveAndStreamScript(dir: string, flags: string): string {
  return `etcd_tools
d=${sq(dir)}
"$ETCDCTL" ${flags} snapshot save "$d/snapshot.db" >"$d/save.log" 2>&1 &
pid=$!
while [ ! -e "$d/snapshot.db.part" ] && [ ! -e "$d/snapshot.db" ] && kill -0 "$pid" 2>/dev/null; do sleep 0.02; done
streamed=0
if [ -e "$d/snapshot.db.part" ] && tail -c +1 -s 0.05 --pid="$pid" -f <"$d/snapshot.db.part" 2>/dev/null; then streamed=1; fi
rc=0
wait "$pid" || rc=$?
if [ "$rc" -ne 0 ]; then tail -n 3 "$d/save.log" >&2; exit 1; fi
chmod 0600 "$d/snapshot.db"
[ "$streamed" = 1 ] || cat "$d/snapshot.db"
echo "SIZE=$(stat -c %s "$d/snapshot.db")" >&2`;
}

export async function runBackup(spec: ClusterSpec, opts: BackupOptions): Promise<BackupResult> {
  const t0 = Date.now();
  const log = opts.log ?? progress;
  const dir = backupDir(spec, opts.outDir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const n = await pickMember(spec, opts);
  const remote = n.remote;
  const file = join(dir, snapshotName(spec.name, n.node.name, opts.now));
  for (const p of [file, sha256Sidecar(file), jsonSidecar(file)]) {
    if (existsSync(p))
      throw new UserError(
        `${p} already exists; refusing to overwrite a backup. Wait a second and run again, or pass another --out.`,
      );
  }
  let remoteDir = "";
  let downloaded = false;
  try {
    // The snapshot lands in the SSH user's private staging dir (on disk, not in a tmpfs /tmp)
    // and streams here while etcdctl writes it (SAVE_AND_STREAM_SH).
    remoteDir = await makeStagingDir(remote, { parent: "/var/tmp", name: "kubeadm-ha-snapshot" });
    log(n.node.name, "snapshot", "etcdctl snapshot save, streamed here as etcd writes it");
    const out = createExclusiveFile(file, 0o600);
    const check = new StreamingSnapshotCheck();
    let status: SnapshotStatus;
    let sha: string;
    // The member list (for the sidecar) is read while the snapshot streams; a member list that
    // cannot be read leaves the sidecar without one rather than failing a good backup.
    const membersP = memberList(n, opts.access).catch(() => ({ clusterId: "", members: [] as MemberInfo[] }));
    try {
      const r = await etcdScript(remote, saveAndStreamScript(remoteDir, etcdctlFlags(opts.access, n.endpoint)), {
        timeoutMs: 30 * 60_000,
        onStdoutBytes: (b) => {
          out.write(b);
          check.update(b);
        },
      });
      if (r.code !== 0)
        throw new UserError(
          `${n.node.name}: etcdctl snapshot save failed (exit ${r.code}): ${r.stderr.trim().split("\n").slice(-3).join(" | ").slice(0, 600)}`,
          EXIT.failed,
        );
      const size = Number(/^SIZE=(\d+)$/m.exec(r.stderr)?.[1] ?? Number.NaN);
      if (size !== out.bytes)
        throw new UserError(
          `${n.node.name}: received ${out.bytes} bytes of the snapshot, the node's file has ${size}. Run the backup again.`,
          EXIT.failed,
        );
      log(n.node.name, "download", `${(size / 1e6).toFixed(1)} MB received; snapshot status on the node`);
      status = await remoteSnapshotStatus(n, `${remoteDir}/snapshot.db`);
      // etcd's own checksum over the received bytes: any byte lost, added or changed between
      // etcd and this file fails it (and SSH's MAC guards the transfer itself).
      const checked = check.result();
      sha = checked.sha256;
      const { embedded } = checked;
      if (!embedded.ok) throw new UserError(`${file}: ${embedded.reason}. Run the backup again.`, EXIT.failed);
      out.commit();
      downloaded = true;
    } finally {
      out.discard();
    }
    const members = await membersP;
    log(
      n.node.name,
      "verify",
      `${(status.totalSize / 1e6).toFixed(1)} MB, revision ${status.revision}, ${status.totalKeys} keys`,
    );
    const facts: SnapshotSidecar = {
      file,
      cluster: spec.name,
      node: n.node.name,
      createdAt: (opts.now ?? new Date()).toISOString(),
      sha256: sha,
      ...status,
      etcdVersion: n.version,
      clusterId: members.clusterId || undefined,
      members: members.members.map((m) => ({ id: m.id, name: m.name, peerUrls: m.peerUrls })),
    };
    writeSidecars(file, sha, facts);
    const removed = applyRetention(dir, spec.name, opts.retention ?? spec.etcd.backup.retention, file);
    for (const r of removed) log("local", "retention", `removed ${r}`);
    log(n.node.name, "done", `${file} (sha256 ${sha.slice(0, 16)}...)`);
    return {
      ...facts,
      sha256File: sha256Sidecar(file),
      jsonFile: jsonSidecar(file),
      removed,
      seconds: (Date.now() - t0) / 1000,
    };
  } catch (e) {
    // A file without sidecars must not look like a good backup. A partial download never
    // reaches `file` (temp name, then link), and a file someone else made there is not ours.
    if (downloaded) for (const p of [file, sha256Sidecar(file), jsonSidecar(file)]) rmSync(p, { force: true });
    throw e;
  } finally {
    if (remoteDir) await removeStagingDir(remote, remoteDir);
    remote.close();
  }
}
