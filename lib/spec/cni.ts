// The pod network a spec asks for: which manifest the CNI step applies. Validation
// (validate.ts) and the CNI step (render/kube-phases.ts) both read it from here.
import type { ClusterSpec } from "./schema.ts";

/** Pinned defaults for `networking.cni.name` when no manifest is given; cilium has none. */
export const DEFAULT_CNI_MANIFESTS: Readonly<Record<string, string>> = {
  calico: "https://raw.githubusercontent.com/projectcalico/calico/v3.28.2/manifests/calico.yaml",
  flannel: "https://github.com/flannel-io/flannel/releases/download/v0.26.1/kube-flannel.yml",
};
/** The pod network flannel's stock manifest hard-codes. */
export const FLANNEL_DEFAULT_POD_SUBNET = "10.244.0.0/16";

/**
 * The manifest the CNI step applies: the spec's own, else the pinned default for the name;
 * null for `none`, undefined when there is no default (validation refuses such a spec).
 */
export function chosenCniManifest(spec: ClusterSpec): string | null | undefined {
  const { name, manifest } = spec.networking.cni;
  if (name === "none") return null;
  return manifest ?? DEFAULT_CNI_MANIFESTS[name];
}
