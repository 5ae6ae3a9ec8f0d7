// The frame every phase script shares: strict mode, step logging that names the
// failing step, installing staged files only when they differ, and cleanup of the
// staging directory (which may hold secrets) however the script ends.
import { shq } from "../shell.ts";
import { SECRETS_DIR } from "./paths.ts";
import { INSTALLED_SECRETS, type Phase, type RenderedFile, SECRET_NAMES, type SecretName } from "./types.ts";

export interface PhaseScriptInput {
  /** The phase, or the name of a run another step makes on this node (e.g. "join-token"). */
  phase: Phase | string;
  node: string;
  files: RenderedFile[];
  secrets: SecretName[];
  /** Bash run after the files and secrets are in place. May call step, changed, die. */
  body: string;
  /** Bash run before any file is installed (staged files are under "$STAGE/root"). May call step, die. */
  beforeInstall?: string;
}

const SECRET_NAMES_NOT_INSTALLED: readonly SecretName[] = SECRET_NAMES.filter((s) => !INSTALLED_SECRETS.includes(s));

/** The one quoting helper (lib/shell.ts), re-exported for the renderers. */
export { shq };

export function phaseScript(input: PhaseScriptInput): string {
  const installs = input.files.map((f) => `install_file ${f.mode} ${shq(f.path)}`).join("\n");
  const secrets = input.secrets
    .filter((s) => INSTALLED_SECRETS.includes(s))
    .map((s) => `install_secret ${s}`)
    .join("\n");
  // Join secrets stay in the stage (removed at exit); copies earlier versions installed are removed.
  const transient = SECRET_NAMES_NOT_INSTALLED.map((s) => `"$SECRETS_DIR/${s}"`).join(" ");
  return `#!/usr/bin/env bash
# kubeadm-ha phase "${input.phase}" for node ${input.node}. Generated: edit the spec, not this file.
set -euo pipefail
umask 077
NODE=${shq(input.node)}
PHASE=${shq(input.phase)}
SECRETS_DIR=${shq(SECRETS_DIR)}
STAGE="$(cd "$(dirname "$0")" && pwd)"
CURRENT_STEP="start"
CHANGED_FILES=""
step() { CURRENT_STEP="$*"; printf '[kubeadm-ha] %s %s: %s\\n' "$NODE" "$PHASE" "$*"; }
die() { printf '[kubeadm-ha] %s %s: ERROR: %s\\n' "$NODE" "$PHASE" "$*" >&2; exit 1; }
on_error() { printf '[kubeadm-ha] %s %s: FAILED during "%s" (exit %s)\\n' "$NODE" "$PHASE" "$CURRENT_STEP" "$1" >&2; }
trap 'on_error $?' ERR
# The stage may hold secrets: remove it however the script ends.
trap 'rm -rf -- "$STAGE"' EXIT
# Install a staged file only when its content or mode differs, so a re-run changes nothing.
install_file() {
  local mode="$1" dest="$2" src="$STAGE/root$2"
  if [ -f "$dest" ] && cmp -s "$src" "$dest" && [ "$(stat -c %a "$dest")" = "\${mode#0}" ]; then return 0; fi
  keep_previous "$dest"
  install -D -m "$mode" "$src" "$dest"
  CHANGED_FILES="$CHANGED_FILES $dest"
  printf '[kubeadm-ha] %s %s: installed %s\\n' "$NODE" "$PHASE" "$dest"
}
changed() { case " $CHANGED_FILES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
# Before a file changes, keep what was there, so a phase that finds its new config
# invalid can put every changed file back (rollback_files) instead of leaving a
# config on disk that the daemon would fail to start with after the next reboot.
keep_previous() {
  if [ -e "$1" ]; then
    install -d -m 0700 "$STAGE/previous$(dirname "$1")"
    cp -p -- "$1" "$STAGE/previous$1"
  fi
}
rollback_files() {
  local f
  for f in $CHANGED_FILES; do
    if [ -e "$STAGE/previous$f" ]; then cp -p -- "$STAGE/previous$f" "$f"; else rm -f -- "$f"; fi
    printf '[kubeadm-ha] %s %s: rolled back %s\\n' "$NODE" "$PHASE" "$f"
  done
  CHANGED_FILES=""
}
install_secret() {
  install -d -m 0700 "$SECRETS_DIR"
  install -m 0600 "$STAGE/secrets/$1" "$SECRETS_DIR/$1"
}
secret() { case "$1" in ${INSTALLED_SECRETS.join(" | ")}) cat "$SECRETS_DIR/$1" ;; *) cat "$STAGE/secrets/$1" ;; esac; }
rm -f -- ${transient}

${
  input.beforeInstall
    ? `${input.beforeInstall.trim()}

`
    : ""
}step "install files"
${installs || ":"}
${secrets || ":"}

${input.body.trim()}

step "done"
`;
}
