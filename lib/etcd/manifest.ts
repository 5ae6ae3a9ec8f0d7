// Reading and patching kubeadm's etcd static-pod manifest with the yaml library's
// Document API, so comments, key order and every field we do not touch survive.
import { type Document, isMap, isScalar, isSeq, parseDocument, type YAMLMap, type YAMLSeq } from "yaml";
import { UserError } from "../errors.ts";
import { absolutePathProblem } from "../spec/formats.ts";

export const ETCD_MANIFEST = "/etc/kubernetes/manifests/etcd.yaml";
export const APISERVER_MANIFEST = "/etc/kubernetes/manifests/kube-apiserver.yaml";

export interface EtcdManifestFacts {
  name?: string;
  dataDir?: string;
  /** First URL of --initial-advertise-peer-urls. */
  peerUrl?: string;
  /** First URL of --advertise-client-urls. */
  clientUrl?: string;
  image?: string;
  /** Version from the image tag (registry.k8s.io/etcd:3.5.15-0 -> 3.5.15). */
  imageVersion?: string;
  /** hostPath of the volume mounted at the data dir. */
  dataHostPath?: string;
  flags: Record<string, string>;
}

function load(text: string, where: string): Document.Parsed {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) {
    throw new UserError(
      `${where}: the etcd manifest is not valid YAML (${doc.errors[0]!.message.split("\n")[0]}). Restore it from the backup beside it or from kubeadm before retrying.`,
    );
  }
  return doc;
}

function etcdContainer(doc: Document.Parsed, where: string): YAMLMap {
  const containers = doc.getIn(["spec", "containers"]);
  if (!isSeq(containers))
    throw new UserError(
      `${where}: no spec.containers list; this does not look like kubeadm's etcd static-pod manifest.`,
    );
  const maps = containers.items.filter(isMap) as YAMLMap[];
  const c = maps.find((m) => m.get("name") === "etcd") ?? maps[0];
  if (!c)
    throw new UserError(
      `${where}: spec.containers is empty; this does not look like kubeadm's etcd static-pod manifest.`,
    );
  return c;
}

function command(c: YAMLMap, where: string): YAMLSeq {
  const cmd = c.get("command", true);
  if (!isSeq(cmd)) throw new UserError(`${where}: the etcd container has no command list; cannot find --data-dir.`);
  return cmd as YAMLSeq;
}

function flagsOf(cmd: YAMLSeq): Record<string, string> {
  const flags: Record<string, string> = {};
  for (const item of cmd.items) {
    const v = isScalar(item) ? String(item.value) : "";
    const m = /^--([^=]+)=(.*)$/.exec(v);
    if (m) flags[m[1]!] = m[2]!;
  }
  return flags;
}

/** The volume name mounted at `mountPath`, and that volume's hostPath. */
function dataVolume(doc: Document.Parsed, c: YAMLMap, mountPath: string): { mount?: YAMLMap; hostPath?: YAMLMap } {
  const mounts = c.get("volumeMounts", true);
  let mount: YAMLMap | undefined;
  if (isSeq(mounts)) {
    const all = mounts.items.filter(isMap) as YAMLMap[];
    mount = all.find((m) => m.get("mountPath") === mountPath) ?? all.find((m) => m.get("name") === "etcd-data");
  }
  const volName = (mount?.get("name") as string | undefined) ?? "etcd-data";
  const volumes = doc.getIn(["spec", "volumes"]);
  let hostPath: YAMLMap | undefined;
  if (isSeq(volumes)) {
    const vol = (volumes.items.filter(isMap) as YAMLMap[]).find((v) => v.get("name") === volName);
    const hp = vol?.get("hostPath", true);
    if (isMap(hp)) hostPath = hp as YAMLMap;
  }
  return { mount, hostPath };
}

export function readEtcdManifest(text: string, where = ETCD_MANIFEST): EtcdManifestFacts {
  const doc = load(text, where);
  const c = etcdContainer(doc, where);
  const flags = flagsOf(command(c, where));
  const image = c.get("image") as string | undefined;
  const tag = image?.split(":").pop();
  const imageVersion = tag && /^v?\d+\.\d+\.\d+/.test(tag) ? /^v?(\d+\.\d+\.\d+)/.exec(tag)![1] : undefined;
  const dataDir = flags["data-dir"];
  const { hostPath } = dataDir ? dataVolume(doc, c, dataDir) : { hostPath: undefined };
  return {
    name: flags.name,
    dataDir,
    peerUrl: flags["initial-advertise-peer-urls"]?.split(",")[0],
    clientUrl: flags["advertise-client-urls"]?.split(",")[0],
    image,
    imageVersion,
    dataHostPath: hostPath?.get("path") as string | undefined,
    flags,
  };
}

/**
 * Point etcd at `dataDir`: the --data-dir flag, the mountPath of the data volume
 * and its hostPath all move together (changing only one of them leaves etcd
 * reading a directory that is not the restored one). Everything else is kept.
 */
export function patchEtcdManifest(text: string, dataDir: string, where = ETCD_MANIFEST): string {
  const problem = absolutePathProblem(dataDir, "/var/lib/etcd-restore-20250101T000000Z");
  if (problem) throw new UserError(`--data-dir ${JSON.stringify(dataDir)} ${problem}.`);
  const doc = load(text, where);
  const c = etcdContainer(doc, where);
  const cmd = command(c, where);
  const oldDir = flagsOf(cmd)["data-dir"];
  if (!oldDir) throw new UserError(`${where}: the etcd command has no --data-dir=... flag to patch.`);
  const { mount, hostPath } = dataVolume(doc, c, oldDir);
  if (!hostPath) {
    throw new UserError(
      `${where}: no hostPath volume is mounted at the data dir ${oldDir} (kubeadm calls it etcd-data); refusing to patch only half of the manifest.`,
    );
  }
  for (const item of cmd.items) {
    if (isScalar(item) && typeof item.value === "string" && item.value.startsWith("--data-dir="))
      item.value = `--data-dir=${dataDir}`;
  }
  if (mount) mount.set("mountPath", dataDir);
  hostPath.set("path", dataDir);
  // kubeadm writes sequences flush with their parent key; keep whichever style the file uses.
  const flushSeq = /^( *)[\w.-]+:\n\1- /m.test(text);
  return doc.toString({ indentSeq: !flushSeq, lineWidth: 0 });
}

/** Whether the etcd command carries `--NAME` (as a bare flag or `--NAME=...`). */
export function hasEtcdFlag(text: string, name: string, where = ETCD_MANIFEST): boolean {
  const cmd = command(etcdContainer(load(text, where), where), where);
  return cmd.items.some((i) => isScalar(i) && (i.value === `--${name}` || String(i.value).startsWith(`--${name}=`)));
}

/**
 * The manifest with the bare flag `--NAME` added to the etcd command (once) or removed (every
 * form of it), everything else as it was: etcd's recovery guide's `--force-new-cluster`, added
 * for one start and then taken out again.
 */
export function withEtcdFlag(text: string, name: string, on: boolean, where = ETCD_MANIFEST): string {
  if (!/^[a-z][a-z0-9-]*$/.test(name)) throw new Error(`not an etcd flag name: ${name}`);
  const doc = load(text, where);
  const cmd = command(etcdContainer(doc, where), where);
  const is = (i: unknown) => isScalar(i) && (i.value === `--${name}` || String(i.value).startsWith(`--${name}=`));
  const present = cmd.items.some(is);
  if (on === present) return text;
  if (on) cmd.add(doc.createNode(`--${name}`));
  else cmd.items = cmd.items.filter((i) => !is(i));
  const flushSeq = /^( *)[\w.-]+:\n\1- /m.test(text);
  return doc.toString({ indentSeq: !flushSeq, lineWidth: 0 });
}
