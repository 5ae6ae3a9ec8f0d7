// bun run etcd:restore SNAPSHOT [--spec FILE] [--dry-run] [--yes] [--json] [--bump-revision N | --no-bump-revision]
import { confirmed, defineCommand, JSON_FLAG, progress, runCommand } from "../lib/cli.ts";
import { UserError } from "../lib/errors.ts";
import { commonEtcdFlags, etcdAccess } from "../lib/etcd/flags.ts";
import { RESTORE_STATE_ROOT } from "../lib/etcd/node-state.ts";
import {
  planText,
  type RestoreReport,
  reportText,
  restoreExitCode,
  runRestore,
  signalExitCode,
} from "../lib/etcd/restore.ts";

const int = (flag: string, v: string | undefined): number | undefined => {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) <= 0) throw new UserError(`--${flag} ${v}: must be a positive whole number.`);
  return Number(v);
};

const command = defineCommand({
  name: "etcd:restore",
  usage: "bun run etcd:restore SNAPSHOT [--spec FILE] [--dry-run] [--yes] [--json] [flags below]",
  description:
    "Restores the whole stacked etcd cluster (every control plane) from one snapshot. Verifies the file first (sha256 sidecar, embedded checksum, snapshot status) and reaches every control plane before changing anything; --dry-run prints the plan and stops. Then: uploads the snapshot to each member, stops every kube-apiserver and etcd (moves their static-pod manifests aside and waits until they are gone), restores each member with its own --name and peer URL, the full --initial-cluster and a new shared --initial-cluster-token into a new data dir, points etcd.yaml at it (original kept), starts etcd, waits for all members healthy with a new cluster ID, starts the apiservers and waits for the VIP; once verified, commits, points kube-system/kubeadm-config's etcd.local.dataDir at the restored dir (so kubeadm upgrade keeps it) and restarts kube-controller-manager, kube-scheduler and every kubelet. If anything fails, or on Ctrl-C / SIGTERM, every stopped node goes back to its old manifests and data dir at once (a second signal leaves without waiting; the node watchdogs finish the rollback). Revisions are bumped by 1000000000 and marked compacted (etcd's recovery guide for Kubernetes) wherever every member has etcdutl 3.5.10+. Asks first (type the cluster name) unless --yes.",
  positionals: [{ name: "SNAPSHOT", description: "the .db file etcd:backup wrote" }],
  options: {
    ...commonEtcdFlags,
    "dry-run": { type: "boolean", description: "verify the file, reach every member, print the plan; change nothing" },
    yes: { type: "boolean", short: "y", description: "restore without asking (needed without a terminal)" },
    ...JSON_FLAG,
    "bump-revision": { type: "string", value: "N", description: "bump revisions by N instead of 1000000000" },
    "no-bump-revision": { type: "boolean", description: "do not bump revisions (etcd 3.4 cannot)" },
    "mark-compacted": { type: "boolean", description: "accepted for etcdutl familiarity: implied by the bump" },
    wait: { type: "string", value: "SECONDS", description: "bound on each wait (default 180)" },
    "revert-after": {
      type: "string",
      value: "SECONDS",
      description: "a node this command lost contact with rolls itself back after this (default 900)",
    },
  },
  spec: "hosts",
  exits: {
    0: "restored (or planned with --dry-run)",
    1: "failed, and every stopped node was rolled back",
    2: "bad input, or refused before anything changed (not confirmed, a member unreachable)",
    3: 'restored with warnings (each says what to do; "warnings" in --json)',
    130: "interrupted by SIGINT (Ctrl-C) and rolled back",
    143: "interrupted by SIGTERM and rolled back",
  },
  jsonData:
    "{status: planned|restored|restored-with-warnings|failed|interrupted, ok, warnings, members, stage?, interrupted?, rolledBack?, kubeadmConfig?, ...}",
  examples: [
    "bun run etcd:restore backups/prod-cp-1-20250101T030000Z.db --spec cluster.yaml --dry-run",
    "bun run etcd:restore backups/prod-cp-1-20250101T030000Z.db --spec cluster.yaml",
  ],
});

/** The envelope's error for a restore that did not simply succeed. */
function restoreProblem(r: RestoreReport): string {
  if (r.status === "restored-with-warnings") return `restored with warnings: ${r.warnings.join(" ")}`;
  const where = r.stage ? ` during ${r.stage}` : "";
  if (r.status === "interrupted") return `interrupted by ${r.interrupted}${where}; every stopped node was rolled back.`;
  return `restore failed${where}: ${r.error ?? "see the report"}; every stopped node was rolled back.`;
}

await runCommand(command, async (cli) => {
  const { values, positionals } = cli;
  const file = positionals[0];
  if (!file)
    throw new UserError(
      "etcd:restore needs the SNAPSHOT file, e.g. bun run etcd:restore backups/prod-cp-1-20250101T030000Z.db --dry-run.",
    );
  if (values["no-bump-revision"] && values["bump-revision"] !== undefined)
    throw new UserError("--bump-revision and --no-bump-revision contradict each other; pass one of them.");
  const access = etcdAccess(values);
  const waitSeconds = int("wait", values.wait);
  const bumpRevision = values["no-bump-revision"] ? false : int("bump-revision", values["bump-revision"]);
  const revertAfterSeconds = int("revert-after", values["revert-after"]);
  const spec = cli.spec();
  // Without a terminal the question cannot be asked: refuse before reaching any host.
  if (!values["dry-run"]) await cli.confirm("stops the whole control plane (try --dry-run first)", { ask: false });
  // Ctrl-C or SIGTERM: the restore stops waiting and rolls every stopped node back before exiting.
  const interrupt = new AbortController();
  let stateDir = `${RESTORE_STATE_ROOT}/etcd-restore-<time>`;
  const onSignal = (sig: NodeJS.Signals) => {
    if (interrupt.signal.aborted) {
      process.stderr.write(
        `second ${sig}: leaving now; a stopped node rolls itself back ${revertAfterSeconds ?? 900} s after it was stopped (its watchdog), or run on it: sudo bash ${stateDir}/rollback.sh\n`,
      );
      cli.exit(signalExitCode(sig), { error: `second ${sig}: left without waiting for the rollback` });
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
  const confirm = (plan: Parameters<typeof planText>[0]) => {
    stateDir = plan.stateDir;
    return confirmed({
      command: "etcd:restore",
      what: `stops every apiserver and etcd of cluster ${spec.name}`,
      yes: values.yes,
      answer: spec.name,
      preface: planText(plan),
      signal: interrupt.signal,
      onInterrupt: () => onSignal("SIGINT"),
    });
  };
  const report = await runRestore(
    spec,
    file,
    {
      access,
      dryRun: values["dry-run"],
      bumpRevision,
      waitSeconds,
      revertAfterSeconds,
      signal: interrupt.signal,
    },
    confirm,
  );
  if (!cli.json) process.stdout.write(`${values["dry-run"] ? planText(report) : reportText(report)}\n`);
  const code = restoreExitCode(report);
  return { code, data: report, error: code === 0 ? undefined : restoreProblem(report) };
});
