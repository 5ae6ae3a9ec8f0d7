// The string flags of the commands that build remote scripts (found from each command's
// --help, so a new flag is covered): a flag that reaches a remote script refuses shell syntax
// naming the flag, and the scripts built from it quote it anyway — executed in the sandbox
// (sandbox.ts) with the payloads, no canary. See shell-injection.test.ts for the spec fields.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { saveAndStreamScript } from "../../lib/etcd/backup.ts";
import {
  endpointHealth,
  endpointLeader,
  etcdctlFlags,
  etcdScript,
  memberList,
  probeAndHealth,
  remoteSnapshotStatus,
} from "../../lib/etcd/remote.ts";
import { RESTORE_STOPPED, stopScript } from "../../lib/ops/chaos-fault.ts";
import { workloadScript } from "../../lib/ops/verify.ts";
import type { ExecResult, Remote } from "../../lib/remote/ssh.ts";
import { parseSpec } from "../../lib/spec/load.ts";
import { inParallel, Job, type JobResult, payloads, removeSandboxDir, requireSandbox, runJobAsync } from "./sandbox.ts";

const ROOT = resolve(import.meta.dir, "../..");
const haveSandbox = requireSandbox();
afterAll(removeSandboxDir);
const SPEC_FILE = join(ROOT, "test/fixtures/specs/valid/minimal.yaml");

/** Commands not run here, and why. */
const NOT_RUN: Record<string, string> = {
  "lab.ts": "builds the test hosts (root, test infrastructure)",
  "tf.ts": "runs cdktf; takes no flags of its own (they go to cdktf)",
};

/** String flags that never reach a remote script, and why. */
const LOCAL_FLAGS: Record<string, string> = {
  "--spec": "a spec file on this machine",
  "--out": "a file or directory on this machine",
  "--node": "compared with the spec's node names only",
  "--rotate": "secret names, this machine only",
  "--mode": "compared with isolate|stop only",
  "--max-down": "parsed as a whole number",
  "--observe": "parsed as a whole number",
  "--recover-timeout": "parsed as a whole number",
  "--rollback-after": "parsed as a whole number",
  "--wait": "parsed as a whole number",
  "--revert-after": "parsed as a whole number",
  "--bump-revision": "parsed as a whole number",
  "--stack-dir": "a directory on this machine (terraform runs there)",
  "--timeout": "parsed as a whole number",
  "--from": "compared with the spec's node names only",
};

/** A Remote whose every exec runs in its own sandbox: the real ops functions, their real scripts. */
class SandboxRemote implements Remote {
  readonly name = "cp-1";
  readonly host = "10.0.0.11";
  readonly user = "root";
  readonly results: JobResult[] = [];
  async exec(cmd: string, opts: { stdin?: string } = {}): Promise<ExecResult> {
    // What ssh.ts runs: a command line through a shell, or `bash -s` with the script on stdin.
    if (opts.stdin !== undefined && cmd !== "bash -s") throw new Error(`unexpected command with stdin: ${cmd}`);
    const job = new Job().stdin(opts.stdin ?? cmd, cmd);
    const r = await runJobAsync(job);
    this.results.push(r);
    const run = r.runs[0];
    return { code: run?.rc ?? -1, stdout: run?.out ?? "", stderr: run?.err ?? r.error ?? "" };
  }
  async run(cmd: string, opts: { stdin?: string } = {}): Promise<string> {
    return (await this.exec(cmd, opts)).stdout;
  }
  private unused = (): never => {
    throw new Error("not available in the sandbox");
  };
  // Streamed output is not needed to see what a script runs: the bytes arrive as stdout.
  execStream = (cmd: string, opts: { stdin?: string } = {}) => this.exec(cmd, opts);
  get = this.unused;
  download = this.unused;
  put = this.unused;
  putHashed = this.unused;
  sha256 = this.unused;
  close(): void {}
}

const node = { name: "cp-1", address: "10.0.0.11", role: "control-plane" as const };
const flagBuilders: Record<string, (value: string) => Promise<JobResult[]>> = {
  "--image": async (image) => [
    await runJobAsync(
      new Job().stdin(workloadScript(parseSpec(await Bun.file(SPEC_FILE).text()), image), "verify --workload"),
    ),
  ],
  "--stop-units": async (unit) => [
    await runJobAsync(new Job().stdin(stopScript([unit], 60), "chaos stop").stdin(RESTORE_STOPPED, "chaos restore")),
  ],
  "--data-dir": async () => [], // refused by validation before any remote command (checked below)
};
for (const flag of ["--cacert", "--cert", "--key"]) {
  flagBuilders[flag] = async (value) => {
    const access = {
      cacert: "/etc/kubernetes/pki/etcd/ca.crt",
      cert: "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
      key: "/etc/kubernetes/pki/etcd/healthcheck-client.key",
      [flag.slice(2)]: value,
    };
    const remote = new SandboxRemote();
    const { n } = await probeAndHealth(remote, node, access).catch(() => ({ n: undefined }));
    const target = n ?? {
      node,
      remote,
      endpoint: "https://10.0.0.11:2379",
      version: "3.5.15",
      hasEtcdutl: true,
      toolsSource: "host",
      supportsBumpRevision: true,
    };
    await endpointHealth(target, access).catch(() => undefined);
    await memberList(target, access).catch(() => undefined);
    await endpointLeader(target, access).catch(() => undefined);
    await remoteSnapshotStatus(target, "/var/tmp/kha/snapshot.db").catch(() => undefined);
    await etcdScript(remote, saveAndStreamScript("/var/tmp/kha", etcdctlFlags(access, target.endpoint)), {
      onStdoutBytes: () => undefined,
    }).catch(() => undefined);
    return remote.results;
  };
}

async function help(script: string): Promise<string> {
  const p = Bun.spawn([process.execPath, join(ROOT, "scripts", script), "--help"], { stdout: "pipe", stderr: "pipe" });
  const [out] = await Promise.all([new Response(p.stdout).text(), p.exited]);
  return out;
}

async function cli(script: string, args: string[]): Promise<{ code: number; stderr: string }> {
  const p = Bun.spawn([process.execPath, join(ROOT, "scripts", script), ...args], {
    cwd: ROOT,
    env: { ...process.env, CLUSTER_SPEC: SPEC_FILE },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stderr, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
  return { code, stderr };
}

describe("command-line flags", () => {
  const flags: { script: string; flag: string }[] = [];
  beforeAll(async () => {
    const scripts = readdirSync(join(ROOT, "scripts")).filter((f) => f.endsWith(".ts") && !(f in NOT_RUN));
    const helps = await inParallel(scripts, help);
    scripts.forEach((script, i) => {
      // Help lines: "  -y, --flag VALUE   what it does" (string flags show a VALUE placeholder).
      for (const m of helps[i]!.matchAll(/^ {2}(?:-\w, | {4})(--[a-z-]+) [A-Z][A-Z_]* /gm))
        flags.push({ script, flag: m[1]! });
    });
  }, 120_000);

  test("every string flag is either local or has its remote scripts run below", () => {
    expect(flags.length).toBeGreaterThan(10);
    const unknown = flags.filter((f) => !(f.flag in LOCAL_FLAGS) && !(f.flag in flagBuilders));
    expect(unknown).toEqual([]);
  });

  test("a flag that reaches a remote script refuses shell syntax, naming the flag", async () => {
    const problems: string[] = [];
    const remote = flags.filter((f) => f.flag in flagBuilders);
    expect(remote.map((f) => f.flag).sort()).toEqual(
      expect.arrayContaining(["--cacert", "--cert", "--data-dir", "--image", "--key", "--stop-units"]),
    );
    // Every payload through the first command that takes the flag; one through each further command
    // with the same flag (they share the check, lib/cli.ts checkedFlag, and each must call it).
    const first = new Set<string>();
    const cases = remote.flatMap(({ script, flag }) => {
      const all = payloads("cli");
      const mine = first.has(flag) ? all.slice(0, 1) : all;
      first.add(flag);
      return mine.map((p) => ({ script, flag, p }));
    });
    const one = async ({ script, flag, p }: (typeof cases)[number]) => {
      const value = (flag === "--image" ? "nginx" : flag === "--stop-units" ? "kubelet" : "/etc/x") + p;
      const extra: Record<string, string[]> = {
        "verify.ts": ["--workload"],
        "chaos.ts": ["--mode", "stop"],
        "etcd-restore.ts": ["--dry-run", "backups/none.db"],
      };
      const r = await cli(script, [...(extra[script] ?? []), `${flag}=${value}`]);
      if (r.code !== 2 || !r.stderr.includes(flag))
        problems.push(`${script} ${flag}=${JSON.stringify(value)}: exit ${r.code}: ${r.stderr.trim().slice(0, 200)}`);
    };
    await inParallel(cases, one);
    expect(problems).toEqual([]);
  }, 300_000);

  test.skipIf(!haveSandbox)(
    "and the scripts built from it quote it anyway: executed in the sandbox, no canary",
    async () => {
      const problems: string[] = [];
      const cases = Object.entries(flagBuilders).flatMap(([flag, build]) =>
        payloads(`flag${flag.replace(/-/g, "_")}`).map((p) => {
          const value = (flag === "--image" ? "nginx" : flag === "--stop-units" ? "kubelet" : "/etc/x") + p;
          return { flag, value, build };
        }),
      );
      await inParallel(cases, async ({ flag, value, build }) => {
        for (const r of await build(value)) {
          if (!r.ok) problems.push(`${flag}: sandbox: ${r.error}`);
          for (const c of r.canaries) problems.push(`${flag}=${JSON.stringify(value)}: the payload RAN (${c})`);
        }
      });
      expect(problems).toEqual([]);
    },
    600_000,
  );
});
