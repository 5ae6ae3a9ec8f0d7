// Where kubeadm-ha keeps its own files on a host.
export const STATE_DIR = "/etc/kubeadm-ha";
/** 0700, root only; each secret a 0600 file named after the secret. */
export const SECRETS_DIR = `${STATE_DIR}/secrets`;
/** Staging directory for one step's uploads, owned by the SSH user, removed when the step ends. */
export const stageDir = (phase: string): string => `/tmp/kubeadm-ha-stage-${phase}`;
