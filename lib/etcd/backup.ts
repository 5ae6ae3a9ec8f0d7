// etcd:backup: snapshot one healthy member, download it 0600 with sidecars,
// verify it against the remote checksum, clean up, apply retention.
import { chmodSync, existsSync, mkdirSync, rmSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { EXIT, UserError } from "../errors.ts";
import { type Progress, progress } from "../progress.ts";
import { type HostFailure, hostProblems } from "../remote/host-problems.ts";
import { type ConnectOptions, connectNode, makeStagingDir, type Remote, removeStagingDir, sq } from "../remote/ssh.ts";
import { resolveSpecPath } from "../spec/load.ts";
import type { ClusterSpec, NodeSpec } from "../spec/schema.ts";
import { controlPlanes } from "../spec/topology.ts";
import {
  type EtcdAccess,
  etcdctlFlags,
  etcdScriptOk,
  type NodeEtcd,
  probeAndHealth,
  remoteSnapshotFacts,
} from "./remote.ts";
import {
  applyRetention,
  jsonSidecar,
  type SnapshotSidecar,
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
    log(n.node.name, "snapshot", "etcdctl snapshot save");
    // The snapshot lands in the SSH user's private staging dir (on disk, not in a tmpfs /tmp)
    // and is handed to that user for SFTP.
    remoteDir = await makeStagingDir(remote, { parent: "/var/tmp", name: "kubeadm-ha-snapshot" });
    const out = await etcdScriptOk(
      remote,
      `etcd_tools
d=${sq(remoteDir)}
"$ETCDCTL" ${etcdctlFlags(opts.access, n.endpoint)} snapshot save "$d/snapshot.db" >"$d/save.log" 2>&1 || { tail -n 3 "$d/save.log" >&2; exit 1; }
chmod 0600 "$d/snapshot.db"
chown ${sq(remote.user)} "$d/snapshot.db" "$d/save.log"
echo "SIZE=$(stat -c %s "$d/snapshot.db")"`,
      "etcdctl snapshot save",
      { timeoutMs: 30 * 60_000 },
    );
    const size = Number(/SIZE=(\d+)/.exec(out)?.[1] ?? Number.NaN);
    if (!Number.isFinite(size))
      throw new UserError(
        `${n.node.name}: snapshot save printed no file or size: ${out.trim().slice(0, 200)}`,
        EXIT.failed,
      );
    const remoteFile = `${remoteDir}/snapshot.db`;
    log(n.node.name, "download", `${(size / 1e6).toFixed(1)} MB; sha256, status and member list on the node meanwhile`);
    // The remote checksum, status and member list run on the node while the file streams here;
    // the local sha256 and etcd's embedded checksum come from one pass over the bytes as they arrive.
    const check = new StreamingSnapshotCheck();
    // Both settle before anything is decided, so a download that finishes after a failed
    // remote step is still known here and cleaned up below.
    const [factsR, dlR] = await Promise.allSettled([
      remoteSnapshotFacts(n, remoteFile, opts.access),
      remote.download(remoteFile, file, { mode: 0o600, onData: (c, o, sz) => check.update(c, o, sz) }),
    ]);
    if (dlR.status === "fulfilled") downloaded = true;
    if (dlR.status === "rejected") throw dlR.reason;
    if (factsR.status === "rejected") throw factsR.reason;
    const remoteFacts = factsR.value;
    const { sha256: sha, embedded } = check.result();
    const remoteSha = remoteFacts.sha256;
    const status = remoteFacts.status;
    const members = { clusterId: remoteFacts.clusterId, members: remoteFacts.members };
    log(
      n.node.name,
      "verify",
      `${(status.totalSize / 1e6).toFixed(1)} MB, revision ${status.revision}, ${status.totalKeys} keys`,
    );
    if (sha !== remoteSha)
      throw new UserError(
        `${file}: download is corrupt (sha256 ${sha}, on ${n.node.name} ${remoteSha}). Run the backup again.`,
        EXIT.failed,
      );
    if (!embedded.ok) throw new UserError(`${file}: ${embedded.reason}. Run the backup again.`, EXIT.failed);
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
