// One way to use every command: the spec convention (--spec, CLUSTER_SPEC, ./cluster.yaml; no
// silent fallback to the example), exit 2 with one paragraph naming the flag or field for bad
// input, the JSON envelope for errors, --help with one line per flag, confirmation before a host
// changes, and each problem said once for every host it applies to. Nothing here reaches a host:
// the specs point SSH at 127.0.0.1:1, or fail before connecting.
import { beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  BUN,
  type CommandCase,
  clean,
  commandCases,
  deadSpec,
  eachLimited,
  envelopeOf,
  makeSnapshot,
  type Ran,
  ROOT,
  runBun,
} from "./cli-helpers.ts";
import { requireTool } from "./tool-helpers.ts";

const work = mkdtempSync(join(tmpdir(), "kha-cli-"));
const env = { KUBEADM_HA_SECRETS_DIR: join(work, "secrets"), CDKTF_OUTDIR: join(work, "out") };
const run = (args: string[], extra: Record<string, string | undefined> = {}, cwd?: string) =>
  runBun(args, { env: { ...env, ...extra }, cwd });
const EXAMPLE = join(ROOT, "cluster.example.yaml");
const haveEtcd = requireTool("etcd") && requireTool("etcdctl");

let snapshot = join(work, "none.db");
let dead = "";
let COMMANDS: CommandCase[] = [];
beforeAll(async () => {
  if (haveEtcd) snapshot = await makeSnapshot(join(work, "snap"));
  dead = deadSpec(join(work, "dead"));
  COMMANDS = commandCases(snapshot);
  // drift needs the cluster's secrets before it connects.
  const s = await run(["scripts/secrets.ts"], { CLUSTER_SPEC: dead });
  if (s.code !== 0) throw new Error(s.stderr);
}, 60_000);

const where = (c: CommandCase, r: Ran) => `${c.name}: exit ${r.code}: ${r.stderr.slice(0, 400)}`;

describe("--help", () => {
  test("every command: one line per flag with what it does, the exit codes and an example", async () => {
    const problems: string[] = [];
    const helps = await eachLimited(COMMANDS, (c) =>
      run([...c.argv.slice(0, c.argv[0] === "scripts/tf.ts" ? 2 : 1), "--help"]),
    );
    COMMANDS.forEach((c, i) => {
      const r = helps[i]!;
      if (r.code !== 0) problems.push(where(c, r));
      const text = r.stdout;
      for (const line of text.split("\n"))
        if (line.length > 100) problems.push(`${c.name}: help line over 100 characters: ${line.slice(0, 60)}...`);
      const flags = text.slice(text.indexOf("\nflags:\n"), text.indexOf("\n\n", text.indexOf("\nflags:\n") + 2));
      const lines = flags.split("\n").filter((l) => /^ {2}(-\w, | {4})--/.test(l));
      for (const l of lines)
        if (!/^ {2}(-\w, | {4})--[a-z-]+( [A-Z][A-Z_]*)? {2,}\S/.test(l))
          problems.push(`${c.name}: no description: ${l}`);
      const names = lines.map((l) => /--([a-z-]+)/.exec(l)![1]);
      expect(new Set(names).size).toBe(names.length);
      if (!names.includes("spec")) problems.push(`${c.name}: no --spec`);
      if (c.json && !names.includes("json")) problems.push(`${c.name}: no --json`);
      if (!/\nexit codes:\n {2}0 .*\n(.*\n)* {2}2 /.test(text))
        problems.push(`${c.name}: exit codes 0 and 2 not listed`);
      if (!new RegExp(`\\nexamples:\\n {2}(\\S+=\\S+ )?bun run ${c.name} `).test(text))
        problems.push(`${c.name}: no example`);
      if (c.json && !text.includes("--json data: {")) problems.push(`${c.name}: --json data shape not shown`);
    });
    expect(problems).toEqual([]);
  }, 120_000);

  test("the flags --help lists are the flags the command accepts", async () => {
    const problems: string[] = [];
    await eachLimited(
      COMMANDS.filter((c) => c.argv[0] !== "scripts/tf.ts"),
      async (c) => {
        const [help, bad] = await Promise.all([run([c.argv[0]!, "--help"]), run([c.argv[0]!, "--frobnicate"])]);
        const listed = [...help.stdout.matchAll(/^ {2}(?:-\w, | {4})(--[a-z-]+)/gm)].map((m) => m[1]).sort();
        const accepted = /The flags are (.*) and --help\./.exec(bad.stderr)?.[1]?.split(", ");
        if (JSON.stringify([...(accepted ?? []), "--help"].sort()) !== JSON.stringify(listed))
          problems.push(`${c.name}: help lists ${listed}, parser accepts ${accepted}`);
      },
    );
    expect(problems).toEqual([]);
  }, 120_000);
});

describe("README", () => {
  test("its command table lists every command with every flag its --help lists", async () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const start = readme.indexOf("\n| command ", readme.indexOf("### Commands"));
    const table = readme.slice(start, readme.indexOf("\n\n", start + 1));
    const problems: string[] = [];
    const helps = await eachLimited(COMMANDS, (c) =>
      run([...c.argv.slice(0, c.argv[0] === "scripts/tf.ts" ? 2 : 1), "--help"]),
    );
    COMMANDS.forEach((c, i) => {
      const row = table.split("\n").find((l) => l.includes(`\`${c.name} `) || l.includes(`\`${c.name}\``));
      if (!row) {
        problems.push(`${c.name}: no row`);
        return;
      }
      for (const m of helps[i]!.stdout.matchAll(/^ {2}(?:-\w, | {4})(--[a-z-]+)/gm))
        if (m[1] !== "--help" && !row.includes(m[1]!)) problems.push(`${c.name}: ${m[1]} missing`);
    });
    expect(problems).toEqual([]);
  }, 120_000);

  test("exit codes are one table, and drift's 3 is in it", () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    expect(readme.match(/^\| code +\| meaning/gm)).toHaveLength(1);
    expect(readme).toMatch(/^\| 3 +\| .*`drift` found drift/m);
    expect(readme).not.toContain("64 bad input");
  });
});

describe("bad input: exit 2, one paragraph naming the flag or field, no stack trace", () => {
  test("an unknown flag, every command (deploy/diff/destroy pass flags on to cdktf, which checks them)", async () => {
    const cases = COMMANDS.filter((c) => c.argv[0] !== "scripts/tf.ts");
    const runs = await eachLimited(cases, (c) => run([...c.argv, "--frobnicate", "--spec", dead]));
    const problems = cases.flatMap((c, i) => {
      const r = runs[i]!;
      return r.code === 2 && r.stderr.includes("--frobnicate") && clean(r.stderr) ? [] : [where(c, r)];
    });
    expect(problems).toEqual([]);
  }, 120_000);

  test("a bad value, every command: the flag or field is named", async () => {
    const missing = join(work, "nope.yaml");
    const cases: [string, string[], string][] = [
      ["validate", ["scripts/validate.ts", "--spec", missing], "--spec"],
      ["secrets", ["scripts/secrets.ts", "--spec", dead, "--rotate", "root-password"], "--rotate"],
      ["trust-hosts", ["scripts/trust-hosts.ts", "--spec", missing], "--spec"],
      ["preflight", ["scripts/preflight.ts", "--spec", missing], "--spec"],
      ["verify", ["scripts/verify.ts", "--spec", dead, "--image", "nginx;id"], "--image"],
      ["chaos", ["scripts/chaos.ts", "--spec", dead, "--max-down", "9"], "--max-down"],
      ["chaos", ["scripts/chaos.ts", "--spec", dead, "--mode", "melt"], "--mode"],
      ["drift", ["scripts/drift.ts", "--spec", missing], "--spec"],
      ["drift", ["scripts/drift.ts", "--spec", dead, "--yes"], "--fix"],
      ["kubeconfig", ["scripts/kubeconfig.ts", "--spec", dead], "ssh.knownHostsPath"],
      ["etcd:backup", ["scripts/etcd-backup.ts", "--spec", dead, "--cacert", "ca.crt"], "--cacert"],
      ["etcd:status", ["scripts/etcd-status.ts"], "SNAPSHOT"],
      ["etcd:status", ["scripts/etcd-status.ts", join(work, "none.db")], "none.db does not exist"],
      ["etcd:restore", ["scripts/etcd-restore.ts", snapshot, "--spec", dead, "--wait", "soon"], "--wait"],
      ["etcd:patch-manifest", ["scripts/etcd-patch-manifest.ts", "--spec", dead], "--data-dir"],
      ["etcd:patch-manifest", ["scripts/etcd-patch-manifest.ts", "--spec", dead, "--data-dir", "x"], "--data-dir"],
      ["deploy", ["scripts/tf.ts", "deploy", "--spec"], "--spec"],
      ["deploy", ["scripts/tf.ts", "deploy", "--spec", missing], "--spec"],
      ["deploy", ["scripts/tf.ts", "apply-everything"], 'unknown command "apply-everything"'],
    ];
    const runs = await eachLimited(cases, ([, args]) => run(args));
    const problems = cases.flatMap(([name, , expected], i) => {
      const r = runs[i]!;
      return r.code === 2 && r.stderr.includes(expected) && clean(r.stderr)
        ? []
        : [`${name} (${expected}): exit ${r.code}: ${r.stderr.slice(0, 300)}`];
    });
    expect(problems).toEqual([]);
  }, 120_000);

  test("synth with an invalid spec: exit 2, the field named", async () => {
    const bad = join(work, "bad.yaml");
    writeFileSync(
      bad,
      "name: x\nkubernetes: { version: '1.31.4' }\nnodes: []\ncontrolPlaneEndpoint: { vip: 10.0.0.1, interface: eth0 }\n",
    );
    const r = await run(["run", "main.ts"], { CLUSTER_SPEC: bad });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("nodes");
    expect(clean(r.stderr)).toBe(true);
    const gone = await run(["run", "main.ts"], { CLUSTER_SPEC: join(work, "nope.yaml") });
    expect(gone.code).toBe(2);
    expect(gone.stderr).toContain("nope.yaml: the file does not exist");
    const json = await run(["run", "main.ts", "--spec", bad, "--json"]);
    expect(json.code).toBe(2);
    const e = envelopeOf(json);
    expect(e).toMatchObject({ ok: false, command: "synth", data: null, error: { code: 2 } });
    expect(e.error!.message).toContain("nodes");
  });
});

describe("--json: every outcome is one envelope {ok, command, data, error} on stdout", () => {
  test("bad input, every command with --json: ok false, error.code 2 naming the flag, nothing on stderr", async () => {
    const cases = COMMANDS.filter((c) => c.json);
    const runs = await eachLimited(cases, (c) => run([...c.argv, "--json", "--frobnicate", "--spec", dead]));
    const problems: string[] = [];
    cases.forEach((c, i) => {
      const r = runs[i]!;
      const e = envelopeOf(r);
      const ok =
        r.code === 2 &&
        e.ok === false &&
        e.command === c.name &&
        e.data === null &&
        e.error?.code === 2 &&
        e.error.message.includes("--frobnicate") &&
        !r.stderr.includes("error:");
      if (!ok) problems.push(`${c.name}: exit ${r.code}: ${r.stdout.slice(0, 300)} / ${r.stderr.slice(0, 200)}`);
    });
    expect(problems).toEqual([]);
  }, 120_000);

  test("a refusal from the spec convention is an envelope too", async () => {
    const dir = mkdtempSync(join(work, "empty-"));
    const r = await run([join(ROOT, "scripts/verify.ts"), "--json"], {}, dir);
    expect(r.code).toBe(2);
    const e = envelopeOf(r);
    expect(e).toMatchObject({ ok: false, command: "verify", data: null, error: { code: 2 } });
    expect(e.error!.message).toContain("--spec FILE");
  });

  test("secrets: data {file, version, caCertHash}, never a value", async () => {
    const first = envelopeOf(await run(["scripts/secrets.ts", "--spec", EXAMPLE, "--json"]));
    const r = await run(["scripts/secrets.ts", "--spec", EXAMPLE, "--rotate", "stats-password", "--json"]);
    expect(r.code).toBe(0);
    const after = envelopeOf(r);
    expect(after).toMatchObject({ ok: true, command: "secrets", error: null });
    expect(after.data.version).toBe(first.data.version + 1);
    expect(after.data.caCertHash).toBe(first.data.caCertHash);
    expect(Object.keys(after.data).sort()).toEqual(["caCertHash", "file", "version"]);
  });

  test.skipIf(!haveEtcd)("etcd:status on a real snapshot (local etcdctl): ok, the status as data", async () => {
    const r = await run(["scripts/etcd-status.ts", snapshot, "--json"]);
    expect(r.code).toBe(0);
    const e = envelopeOf(r);
    expect(e).toMatchObject({ ok: true, command: "etcd:status", error: null, data: { file: snapshot } });
    expect(e.data.totalKeys).toBeGreaterThan(0);
    expect(e.data.checkedWith).toContain("local");
  });

  test.skipIf(!haveEtcd)("etcd:status on a corrupted snapshot: exit 2, the file named", async () => {
    const bad = join(work, "bad-cp-1-20250101T000000Z.db");
    const bytes = readFileSync(snapshot);
    bytes[100] = bytes[100]! ^ 0xff;
    writeFileSync(bad, bytes);
    const r = await run(["scripts/etcd-status.ts", bad, "--json"]);
    expect(r.code).toBe(2);
    expect(envelopeOf(r).error!.message).toContain(bad);
  });
});

describe("the spec: --spec FILE, else CLUSTER_SPEC, else ./cluster.yaml; never a silent fallback", () => {
  test("a command without any of them fails with exit 2 and says how to pick a spec", async () => {
    const dir = mkdtempSync(join(work, "nospec-"));
    const cases = COMMANDS.filter((c) => c.name !== "validate" && c.name !== "synth");
    const runs = await eachLimited(cases, (c) =>
      run(
        c.argv.map((a) => (a.startsWith("scripts/") ? join(ROOT, a) : a)),
        {},
        dir,
      ),
    );
    const problems = cases.flatMap((c, i) => {
      const r = runs[i]!;
      const says = ["--spec FILE", "CLUSTER_SPEC", "./cluster.yaml"].every((s) => r.stderr.includes(s));
      return r.code === 2 && says && clean(r.stderr) ? [] : [where(c, r)];
    });
    expect(problems).toEqual([]);
  }, 120_000);

  test("validate and synth fall back to the example only then, and say so on stderr", async () => {
    const dir = mkdtempSync(join(work, "fresh-"));
    const v = await run([join(ROOT, "scripts/validate.ts")], {}, dir);
    expect(v.code).toBe(0);
    expect(v.stdout).toBe(`ok: ${EXAMPLE}: 3 control planes, 2 workers, VIP 10.0.0.162:8443\n`);
    expect(v.stderr).toContain("uses the example spec");
    const s = await run(["run", join(ROOT, "main.ts"), "--json"], {}, dir);
    expect(s.code).toBe(0);
    expect(s.stderr).toContain("synth uses the example spec");
    expect(envelopeOf(s)).toMatchObject({
      ok: true,
      command: "synth",
      error: null,
      data: { file: EXAMPLE, cluster: "example", resources: "hashicorp", renderDir: join(dir, "out", "example") },
    });
    // With ./cluster.yaml there, it is the one used, without a note.
    copyFileSync(join(ROOT, "test/fixtures/specs/valid/minimal.yaml"), join(dir, "cluster.yaml"));
    const own = await run([join(ROOT, "scripts/validate.ts")], {}, dir);
    expect(own).toMatchObject({ code: 0, stderr: "" });
    expect(own.stdout).toStartWith("ok: cluster.yaml: 3 control planes, 1 worker,");
  }, 60_000);

  test("a host command refuses the example spec unless --spec names it", async () => {
    const dir = mkdtempSync(join(work, "copy-"));
    copyFileSync(EXAMPLE, join(dir, "cluster.yaml"));
    const hostCases = COMMANDS.filter((c) => c.hosts);
    const abs = (c: CommandCase) => c.argv.map((a) => (a.startsWith("scripts/") ? join(ROOT, a) : a));
    const [byEnv, byCopy] = await Promise.all([
      eachLimited(hostCases, (c) => run(abs(c), { CLUSTER_SPEC: EXAMPLE }, dir)),
      eachLimited(hostCases, (c) => run(abs(c), {}, dir)),
    ]);
    const problems = hostCases.flatMap((c, i) =>
      [byEnv[i]!, byCopy[i]!].flatMap((r) =>
        r.code === 2 && r.stderr.includes("--spec cluster.example.yaml") && r.stderr.includes("example spec")
          ? []
          : [where(c, r)],
      ),
    );
    expect(problems).toEqual([]);
    // Named explicitly, it is used: here it gets as far as the missing known_hosts next to the copy.
    const named = await run([join(ROOT, "scripts/verify.ts"), "--spec", "cluster.yaml"], {}, dir);
    expect(named.code).toBe(2);
    expect(named.stderr).toContain("ssh.knownHostsPath");
    expect(named.stderr).not.toContain("example spec");
  }, 120_000);

  test("local commands take the example when it is named (CLUSTER_SPEC or --spec)", async () => {
    const r = await run(["scripts/secrets.ts"], { CLUSTER_SPEC: EXAMPLE });
    expect(r.code).toBe(0);
    expect((await run(["scripts/validate.ts", "--spec", EXAMPLE])).code).toBe(0);
  });

  test("a spec as a plain argument is refused (exit 2), saying to name it with --spec", async () => {
    const runs = await eachLimited(
      COMMANDS.filter((c) => c.argv[0] !== "scripts/tf.ts"),
      async (c) => [c, await run([...c.argv, EXAMPLE])] as const,
    );
    const problems = runs.flatMap(([c, r]) =>
      r.code === 2 && r.stderr.includes("unexpected argument") && r.stderr.includes("--spec FILE") && clean(r.stderr)
        ? []
        : [where(c, r)],
    );
    expect(problems).toEqual([]);
  }, 120_000);
});

describe("commands that change hosts ask first, or take --yes", () => {
  test("without a terminal and without --yes they refuse with exit 2 before contacting anything", async () => {
    const cases: [string, string[]][] = [
      ["etcd:patch-manifest", ["scripts/etcd-patch-manifest.ts", "--spec", dead, "--data-dir", "/var/lib/etcd-x"]],
      ["chaos", ["scripts/chaos.ts", "--spec", dead]],
      ["drift --fix", ["scripts/drift.ts", "--spec", dead, "--fix"]],
      ["etcd:restore", ["scripts/etcd-restore.ts", snapshot, "--spec", dead]],
    ];
    const runs = await eachLimited(cases, ([, args]) => run(args));
    const problems = cases.flatMap(([name], i) => {
      const r = runs[i]!;
      const ok =
        r.code === 2 &&
        r.stderr.includes("pass --yes") &&
        r.stderr.includes("Nothing was changed") &&
        !r.stderr.includes("knownHostsPath");
      return ok ? [] : [`${name}: exit ${r.code}: ${r.stderr.slice(0, 300)}`];
    });
    expect(problems).toEqual([]);
  }, 60_000);

  const haveScript = Bun.which("script") !== null;
  test.skipIf(!haveScript)(
    "with a terminal they ask (one question, one format); any other answer changes nothing",
    async () => {
      // script(1) gives the command a terminal; the answer arrives once the question is there.
      const cmd = [BUN, "scripts/chaos.ts", "--spec", dead].map((a) => `'${a}'`).join(" ");
      const proc = Bun.spawn(["script", "-qec", cmd, "/dev/null"], {
        cwd: ROOT,
        env: { ...process.env, ...env, CLUSTER_SPEC: undefined },
        stdin: "pipe",
        stdout: "pipe",
        stderr: "pipe",
      });
      let out = "";
      const reader = (async () => {
        for await (const chunk of proc.stdout) out += new TextDecoder().decode(chunk);
      })();
      for (let i = 0; i < 200 && !out.includes("to go on:"); i++) await Bun.sleep(50);
      proc.stdin.write("no\n");
      proc.stdin.end();
      const code = await proc.exited;
      await reader;
      expect(out).toContain('chaos takes up to 1 of 3 control planes of "dead" down at once. Type yes to go on:');
      expect(out).toContain("chaos: not confirmed; nothing was changed. Pass --yes to skip the question.");
      expect(code).toBe(2);
    },
    30_000,
  );
});

describe("a problem shared by every host is said once, naming them", () => {
  test("a missing known_hosts: one paragraph for cp-1, cp-2 and cp-3, exit 2, every host command", async () => {
    const cases = COMMANDS.filter((c) => c.hosts && c.name !== "trust-hosts" && !c.argv.includes("scripts/tf.ts"));
    const runs = await eachLimited(cases, (c) => run([...c.argv, "--spec", dead]));
    // etcd:status reaches one node, etcd:patch-manifest one after the other: they stop at the first.
    const oneNode = ["etcd:status", "etcd:patch-manifest"];
    const problems = cases.flatMap((c, i) => {
      const r = runs[i]!;
      const times = r.stderr.split("does not exist, so no host key can be verified").length - 1;
      const named = oneNode.includes(c.name) || r.stderr.includes("cp-1, cp-2, cp-3: ssh.knownHostsPath");
      return r.code === 2 && times === 1 && named ? [] : [`${where(c, r)} (said ${times} times)`];
    });
    expect(problems).toEqual([]);
  }, 120_000);

  test("hosts that refuse the connection: one paragraph, the others named (trust-hosts, exit 1)", async () => {
    const r = await run(["scripts/trust-hosts.ts", "--spec", dead]);
    expect(r.code).toBe(1);
    expect(r.stdout.match(/ECONNREFUSED/g)).toHaveLength(1);
    expect(r.stdout).toContain("The same on cp-2, cp-3.");
    expect(existsSync(join(work, "dead", "missing", "known_hosts"))).toBe(false);
  });
});

describe("exit codes", () => {
  test("drift: bad input is 2 like everywhere (not 64); its help says 3 is drift found", async () => {
    const help = await run(["scripts/drift.ts", "--help"]);
    expect(help.stdout).toMatch(/\n {2}3 {3}drift found/);
    expect(help.stdout).not.toContain("64");
    const bad = await run(["scripts/drift.ts", "--spec", join(work, "nope.yaml")]);
    expect(bad.code).toBe(2);
  });

  test("secrets --rotate with a bad name creates and changes nothing", async () => {
    const dir = join(work, "untouched");
    const r = await run(["scripts/secrets.ts", "--spec", EXAMPLE, "--rotate", "stats-password,ca-key"], {
      KUBEADM_HA_SECRETS_DIR: dir,
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`--rotate: "ca-key" is not a rotatable secret`);
    expect(existsSync(join(dir, "example.json"))).toBe(false);
  });

  test("a secrets file readable by others is refused", async () => {
    const dir = join(work, "loose");
    mkdirSync(dir);
    const ok = await run(["scripts/secrets.ts", "--spec", EXAMPLE], { KUBEADM_HA_SECRETS_DIR: dir });
    expect(ok.code).toBe(0);
    Bun.spawnSync(["chmod", "644", join(dir, "example.json")]);
    const r = await run(["scripts/secrets.ts", "--spec", EXAMPLE], { KUBEADM_HA_SECRETS_DIR: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("chmod 600");
  });
});

describe("layers", () => {
  test("library layers report progress through lib/progress.ts, not the command-line module", () => {
    // lib/etcd/flags.ts is the etcd commands' flag definitions: command-line by nature.
    const found = Bun.spawnSync(["grep", "-rlE", 'from "(\\.\\./)+cli\\.ts"', join(ROOT, "lib")]).stdout.toString();
    const importers = found
      .split("\n")
      .filter(Boolean)
      .map((f) => f.slice(ROOT.length + 1))
      .filter((f) => f !== "lib/etcd/flags.ts");
    expect(importers).toEqual([]);
  });
});
