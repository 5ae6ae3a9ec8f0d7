// etcd:patch-manifest on the hosts: the manual step of the runbook (point etcd.yaml
// at a restored data dir), with a backup of the original and an atomic replace.
import { UserError } from "../errors.ts";
import { type Progress, progress } from "../progress.ts";
import { type ConnectOptions, connectNode, sq } from "../remote/ssh.ts";
import type { ClusterSpec } from "../spec/schema.ts";
import { controlPlanes } from "../spec/topology.ts";
import { ETCD_MANIFEST, patchEtcdManifest, readEtcdManifest } from "./manifest.ts";
import { stamp } from "./snapshot.ts";

export const MANIFEST_BACKUP_DIR = "/var/lib/kubeadm-ha/manifest-backups";

export interface PatchResult {
  node: string;
  oldDataDir?: string;
  newDataDir: string;
  backup?: string;
  changed: boolean;
}

export async function patchManifests(
  spec: ClusterSpec,
  dataDir: string,
  opts: { node?: string; dryRun?: boolean; connect?: ConnectOptions; log?: Progress },
): Promise<PatchResult[]> {
  const cps = controlPlanes(spec);
  const targets = opts.node ? cps.filter((n) => n.name === opts.node) : cps;
  if (targets.length === 0)
    throw new UserError(
      `--node ${opts.node}: no control plane of that name (control planes: ${cps.map((n) => n.name).join(", ")}).`,
    );
  const log = opts.log ?? progress;
  const results: PatchResult[] = [];
  for (const node of targets) {
    const remote = await connectNode(spec, node, opts.connect);
    try {
      const text = await remote.run(`cat ${sq(ETCD_MANIFEST)}`, { sudo: true, what: `reading ${ETCD_MANIFEST}` });
      const before = readEtcdManifest(text, `${node.name}:${ETCD_MANIFEST}`);
      const patched = patchEtcdManifest(text, dataDir, `${node.name}:${ETCD_MANIFEST}`);
      if (patched === text) {
        results.push({ node: node.name, oldDataDir: before.dataDir, newDataDir: dataDir, changed: false });
        log(node.name, "patch", `already on ${dataDir}`);
        continue;
      }
      const present = await remote.exec(`test -d ${sq(dataDir)}/member`, { sudo: true });
      if (present.code !== 0) {
        throw new UserError(
          `${node.name}: ${dataDir}/member does not exist, so etcd would start empty there. Restore the snapshot into ${dataDir} on ${node.name} first (or use etcd:restore, which does every member).`,
        );
      }
      if (opts.dryRun) {
        results.push({ node: node.name, oldDataDir: before.dataDir, newDataDir: dataDir, changed: true });
        continue;
      }
      const backup = `${MANIFEST_BACKUP_DIR}/etcd.yaml.${stamp()}`;
      const tmp = "/etc/kubernetes/.etcd.yaml.kubeadm-ha";
      await remote.run(
        `install -d -m 0700 ${sq(MANIFEST_BACKUP_DIR)} && cp -p ${sq(ETCD_MANIFEST)} ${sq(backup)} && chmod 0600 ${sq(backup)}`,
        {
          sudo: true,
          what: "backing up etcd.yaml",
        },
      );
      await remote.put({ content: patched }, tmp, { mode: 0o600, sudo: true });
      await remote.run(`chmod --reference=${sq(backup)} ${sq(tmp)} && mv ${sq(tmp)} ${sq(ETCD_MANIFEST)}`, {
        sudo: true,
        what: "replacing etcd.yaml",
      });
      log(node.name, "patch", `${before.dataDir} -> ${dataDir} (original in ${backup})`);
      results.push({ node: node.name, oldDataDir: before.dataDir, newDataDir: dataDir, backup, changed: true });
    } finally {
      remote.close();
    }
  }
  return results;
}
