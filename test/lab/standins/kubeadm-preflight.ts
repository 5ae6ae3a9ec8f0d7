// LAB STAND-IN HELPER — the part of kubeadm's preflight (and of the kubelet start that follows)
// the lab can model, so the kubeadm stand-in refuses to run where kubeadm refuses. From upstream
// cmd/kubeadm/app/preflight/checks.go and checks_linux.go:
//   - binaries in PATH (InPathCheck): mandatory ones are errors, the others warnings; which ones
//     depends on the minor: crictl mandatory up to 1.30, a warning in 1.31, gone from 1.32
//     (kubeadm talks CRI itself); conntrack mandatory below 1.32 (kube-proxy stopped needing it);
//   - swap (SwapCheck): only a warning in every modelled minor, but the kubelet then refuses to
//     start unless its configuration sets failSwapOn: false, so init fails at wait-control-plane
//     and join at kubelet-start;
//   - --ignore-preflight-errors / nodeRegistration.ignorePreflightErrors: check names, case-insensitive,
//     "all" for every check, turn errors into warnings.
// Not modelled: the CRI socket check (the lab runs no container runtime), ports, kernel
// and system verification.
import { existsSync, readFileSync } from "node:fs";

export interface Finding {
  check: string;
  message: string;
  fatal: boolean;
}

/** The binaries kubeadm <minor> looks for in PATH, and whether each is mandatory. */
function execChecks(minor: number): [string, boolean][] {
  const checks: [string, boolean][] = [];
  if (minor <= 30) checks.push(["crictl", true]);
  else if (minor === 31) checks.push(["crictl", false]);
  if (minor < 32) checks.push(["conntrack", true]);
  checks.push(
    ["ip", true],
    ["iptables", true],
    ["mount", true],
    ["nsenter", true],
    ["ebtables", false],
    ["ethtool", false],
    ["socat", false],
    ["tc", false],
    ["touch", false],
  );
  return checks;
}

/** True when the swaps file (/proc/swaps) lists an active swap area below its header. */
export function swapOn(swapsFile = "/proc/swaps"): boolean {
  if (!existsSync(swapsFile)) return false;
  return readFileSync(swapsFile, "utf8").trim().split("\n").length > 1;
}

/** The checks init and join run on every node, before anything changes. */
export function preflightFindings(
  minor: number,
  which: (bin: string) => string | null,
  swapsFile = "/proc/swaps",
): Finding[] {
  const found: Finding[] = [];
  for (const [bin, mandatory] of execChecks(minor)) {
    if (!which(bin))
      found.push({ check: `FileExisting-${bin}`, message: `${bin} not found in system path`, fatal: mandatory });
  }
  if (swapOn(swapsFile))
    found.push({
      check: "Swap",
      message:
        "swap is supported for cgroup v2 only. The kubelet must be properly configured to use swap. Please refer to https://kubernetes.io/docs/concepts/architecture/nodes/#swap-memory, or disable swap on the node",
      fatal: false,
    });
  return found;
}

/**
 * kubeadm's ignore list from the flag values (comma separated, repeatable) and the config's
 * nodeRegistration.ignorePreflightErrors, lower-cased; "all" must stand alone.
 */
export function ignoreSet(flagValues: string[], fromConfig: unknown): Set<string> | string {
  const all = [...flagValues.flatMap((v) => v.split(",")), ...(Array.isArray(fromConfig) ? fromConfig : [])]
    .map((s) => String(s).trim().toLowerCase())
    .filter(Boolean);
  const set = new Set(all);
  if (set.has("all") && set.size > 1)
    return `ignore-preflight-errors: Invalid value: ${JSON.stringify([...set].join(","))}: don't specify individual checks if 'all' is used`;
  return set;
}

/** kubeadm's report: warnings, then the fatal errors that were not ignored. Returns whether to stop. */
export function report(found: Finding[], ignore: Set<string>): { lines: string[]; fatal: boolean } {
  const lines: string[] = [];
  const errors: string[] = [];
  for (const f of found) {
    const ignored = ignore.has("all") || ignore.has(f.check.toLowerCase());
    if (f.fatal && !ignored) errors.push(`\t[ERROR ${f.check}]: ${f.message}`);
    else lines.push(`\t[WARNING ${f.check}]: ${f.message}`);
  }
  if (errors.length)
    lines.push(
      "error execution phase preflight: [preflight] Some fatal errors occurred:",
      ...errors,
      "[preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`",
    );
  return { lines, fatal: errors.length > 0 };
}

/**
 * The kubelet kubeadm starts refuses to run with swap on unless failSwapOn is false
 * (its message: "running with swap on is not supported, please disable swap or set
 * --fail-swap-on flag to false"). Returns the failure, or undefined when the kubelet would start.
 */
export function kubeletStartProblem(
  kubeletConfig: Record<string, any> | undefined,
  swapsFile = "/proc/swaps",
): string | undefined {
  if (!swapOn(swapsFile) || kubeletConfig?.failSwapOn === false) return undefined;
  return 'the kubelet is not healthy: it exits with "running with swap on is not supported, please disable swap or set --fail-swap-on flag to false" (swap is on and the kubelet configuration does not set failSwapOn: false)';
}
