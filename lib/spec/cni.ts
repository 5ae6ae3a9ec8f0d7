// The pod network a spec asks for: which manifest the CNI step applies. Validation
// (validate.ts) and the CNI step (render/kube-phases.ts) both read it from here.
import { kubernetesFacts } from "../versions.ts";
import type { ClusterSpec } from "./schema.ts";

/** A manifest to apply: an https URL or a path on the first control plane, and its sha256 where known. */
export interface CniSource {
  manifest: string;
  sha256?: string;
}

/**
 * Pinned defaults for `networking.cni.name` when no manifest is given, per Kubernetes minor (the
 * versions table: the calico release tested with the minor, flannel's current one, each with the
 * sha256 of the file); cilium has none.
 */
export function defaultCniManifest(spec: ClusterSpec): CniSource | undefined {
  const { cni } = kubernetesFacts(spec.kubernetes.version);
  const pinned =
    spec.networking.cni.name === "calico"
      ? cni.calico
      : spec.networking.cni.name === "flannel"
        ? cni.flannel
        : undefined;
  return pinned ? { manifest: pinned.url, sha256: pinned.sha256 } : undefined;
}
/** The pod network flannel's stock manifest hard-codes. */
export const FLANNEL_DEFAULT_POD_SUBNET = "10.244.0.0/16";

/**
 * The manifest the CNI step applies: the spec's own, else the pinned default for the name;
 * null for `none`, undefined when there is no default (validation refuses such a spec).
 */
export function chosenCniManifest(spec: ClusterSpec): CniSource | null | undefined {
  const { name, manifest, sha256 } = spec.networking.cni;
  if (name === "none") return null;
  return manifest !== undefined ? { manifest, sha256 } : defaultCniManifest(spec);
}
