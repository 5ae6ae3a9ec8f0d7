// bun run etcd:restore FILE [--dry-run] [--yes] [--json] [--bump-revision N | --no-bump-revision]
import { createInterface } from "node:readline/promises";
import { parseCommand, progress, runCommand } from "../lib/cli.ts";
import { UserError } from "../lib/errors.ts";
import { COMMON_HELP, commonEtcdFlags, specAndAccess } from "../lib/etcd/flags.ts";
import { RESTORE_STATE_ROOT } from "../lib/etcd/node-state.ts";
import { planText, reportText, restoreExitCode, runRestore, signalExitCode } from "../lib/etcd/restore.ts";

const int = (flag: string, v: string | undefined): number | undefined => {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) <= 0) throw new UserError(`--${flag} ${v}: must be a positive whole number.`);
  return Number(v);
};

await runCommand(async () => {
  const { values, positionals } = parseCommand({
    name: "etcd:restore",
    usage:
      "bun run etcd:restore FILE [--dry-run] [--yes] [--json] [--bump-revision N | --no-bump-revision] [--wait SECONDS] [--revert-after SECONDS]",
    description: `Restores the whole stacked etcd cluster (every control plane) from one snapshot. Verifies the file first (sha256 sidecar, embedded checksum, snapshot status) and reaches every control plane before changing anything; --dry-run prints the plan and stops. Then: uploads the snapshot to each member, stops every kube-apiserver and etcd (moves their static-pod manifests aside and waits until they are gone), restores each member with its own --name and peer URL, the full --initial-cluster and a new shared --initial-cluster-token into a new data dir, points etcd.yaml at it (original kept), starts etcd, waits for all members healthy with a new cluster ID, starts the apiservers and waits for the VIP; once verified, commits, points kube-system/kubeadm-config's etcd.local.dataDir at the restored dir (so kubeadm upgrade keeps it) and restarts kube-controller-manager, kube-scheduler and every kubelet. If anything fails, or on Ctrl-C / SIGTERM, every stopped node goes back to its old manifests and data dir at once (a second signal leaves without waiting; the node watchdogs finish the rollback). Exit 0 restored (or planned), 1 failed and rolled back, 2 bad input or refused before any change, 3 restored with warnings (listed, also as "warnings" in --json; "status" says which), 130 / 143 interrupted by SIGINT / SIGTERM and rolled back. --yes skips the confirmation (needed without a terminal). Revisions are bumped by 1000000000 and marked compacted (etcd's recovery guide for Kubernetes) wherever every member has etcdutl 3.5.10+; --bump-revision N picks another amount (refused where unsupported), --no-bump-revision turns it off; --mark-compacted is implied. --wait bounds each wait (default 180 s); --revert-after is when a node the tool lost contact with rolls itself back (default 900 s). ${COMMON_HELP}`,
    options: {
      ...commonEtcdFlags,
      "dry-run": { type: "boolean" },
      yes: { type: "boolean", short: "y" },
      json: { type: "boolean" },
      "bump-revision": { type: "string" },
      "no-bump-revision": { type: "boolean" },
      "mark-compacted": { type: "boolean" },
      wait: { type: "string" },
      "revert-after": { type: "string" },
    },
    allowPositionals: true,
  });
  const file = positionals[0];
  if (!file || positionals.length > 1)
    throw new UserError(
      "etcd:restore takes exactly one snapshot FILE, e.g. bun run etcd:restore backups/prod-cp-1-20250101T030000Z.db --dry-run.",
    );
  if (values["no-bump-revision"] && values["bump-revision"] !== undefined)
    throw new UserError("--bump-revision and --no-bump-revision contradict each other; pass one of them.");
  const { spec, access } = specAndAccess(values);
  const revertAfterSeconds = int("revert-after", values["revert-after"]);
  // Ctrl-C or SIGTERM: the restore stops waiting and rolls every stopped node back before exiting.
  const interrupt = new AbortController();
  let stateDir = `${RESTORE_STATE_ROOT}/etcd-restore-<time>`;
  const onSignal = (sig: NodeJS.Signals) => {
    if (interrupt.signal.aborted) {
      process.stderr.write(
        `second ${sig}: leaving now; a stopped node rolls itself back ${revertAfterSeconds ?? 900} s after it was stopped (its watchdog), or run on it: sudo bash ${stateDir}/rollback.sh\n`,
      );
      process.exit(signalExitCode(sig));
    }
    progress(
      "restore",
      "interrupt",
      `${sig}: stopping and rolling back every stopped node now (again to leave at once)`,
    );
    interrupt.abort(sig);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const confirm = async (plan: Parameters<typeof planText>[0]) => {
    stateDir = plan.stateDir;
    if (values.yes) return true;
    if (!process.stdin.isTTY)
      throw new UserError(
        "etcd:restore stops the whole control plane; without a terminal to confirm, pass --yes (and try --dry-run first).",
      );
    process.stderr.write(`${planText(plan)}\n`);
    const rl = createInterface({ input: process.stdin, output: process.stderr });
    // A terminal's Ctrl-C reaches readline, not the process.
    rl.on("SIGINT", () => onSignal("SIGINT"));
    const answer = await rl
      .question(`This stops every apiserver and etcd of cluster ${spec.name}. Type the cluster name to go on: `, {
        signal: interrupt.signal,
      })
      .finally(() => rl.close());
    return answer.trim() === spec.name;
  };
  const report = await runRestore(
    spec,
    file,
    {
      access,
      dryRun: values["dry-run"],
      bumpRevision: values["no-bump-revision"] ? false : int("bump-revision", values["bump-revision"]),
      waitSeconds: int("wait", values.wait),
      revertAfterSeconds,
      signal: interrupt.signal,
    },
    confirm,
  );
  if (values.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else process.stdout.write(`${values["dry-run"] ? planText(report) : reportText(report)}\n`);
  return restoreExitCode(report);
});
