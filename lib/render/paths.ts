// Where kubeadm-ha keeps its own files on a host.
export const STATE_DIR = "/etc/kubeadm-ha";
/** 0700, root only; each secret a 0600 file named after the secret. */
export const SECRETS_DIR = `${STATE_DIR}/secrets`;
/**
 * Staging directory for one run's uploads, owned by the SSH user, removed when the run ends.
 * `id` must be unguessable (the step's resource id, made at apply time): the directory is
 * created with an exclusive mkdir, so nothing placed there beforehand can be used.
 */
export const stageDir = (run: string, id: string): string => `/tmp/kubeadm-ha-stage.${id}.${run}`;
