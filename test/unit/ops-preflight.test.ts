// preflight's logic without hosts: the port table per role, ss parsing, who holds a
// port, clock skew, probe reporting, and its scripts pass shellcheck.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import {
  FACTS_SCRIPT,
  type HostFacts,
  hostRows,
  listenerCommand,
  parseFacts,
  parseProbes,
  parseReady,
  parseSsLine,
  portPlan,
  portRow,
  portState,
  probeScript,
  reachRow,
  skewRows,
} from "../../lib/ops/preflight.ts";
import { failedRowsMessage, formatTable, reportData } from "../../lib/ops/report.ts";
import { parseSpec } from "../../lib/spec/load.ts";

const spec = parseSpec(readFileSync(resolve(import.meta.dir, "../../cluster.example.yaml"), "utf8"));
const node = (name: string) => spec.nodes.find((n) => n.name === name)!;

function shellcheck(script: string): string {
  const r = Bun.spawnSync(["shellcheck", "-s", "bash", "-S", "warning", "-"], {
    stdin: new TextEncoder().encode(script),
  });
  return r.stdout.toString() + r.stderr.toString();
}

describe("port plan", () => {
  test("control planes need the kubeadm ports, the LB and stats ports; workers 10250", () => {
    const plan = portPlan(spec);
    expect(plan.get("cp-1")!.map((p) => p.port)).toEqual([6443, 2379, 2380, 10250, 10257, 10259, 8443, 8404]);
    expect(plan.get("worker-1")!.map((p) => p.port)).toEqual([10250]);
  });
  test("who must reach what: etcd from the other control planes, LB and 6443 from every other node, kubelet from control planes", () => {
    const cp1 = new Map(
      portPlan(spec)
        .get("cp-1")!
        .map((p) => [p.port, p.from]),
    );
    expect(cp1.get(2379)).toEqual(["cp-2", "cp-3"]);
    expect(cp1.get(6443)).toEqual(["cp-2", "cp-3", "worker-1", "worker-2"]);
    expect(cp1.get(8443)).toEqual(["cp-2", "cp-3", "worker-1", "worker-2"]);
    expect(cp1.get(10257)).toEqual([]); // kubeadm binds it to 127.0.0.1
    expect(portPlan(spec).get("worker-2")![0]!.from).toEqual(["cp-1", "cp-2", "cp-3"]);
  });
});

describe("ss and facts", () => {
  test("parses ss -Hltnp lines, IPv4, IPv6 and wildcard, with processes", () => {
    expect(
      parseSsLine('LISTEN 0      4096       127.0.0.1:2379       0.0.0.0:*    users:(("etcd",pid=812,fd=7))'),
    ).toEqual({
      address: "127.0.0.1",
      port: 2379,
      procs: [{ name: "etcd", pid: 812 }],
    });
    expect(
      parseSsLine('LISTEN 0 128 [::]:22 [::]:* users:(("sshd",pid=5,fd=4),("sshd",pid=9,fd=4))')!.procs,
    ).toHaveLength(2);
    expect(parseSsLine("LISTEN 0 128 *:8443 *:*")).toEqual({ address: "*", port: 8443, procs: [] });
    expect(parseSsLine("garbage")).toBeUndefined();
  });

  const facts = (extra: string) =>
    parseFacts(
      `sudo ok\nuser ubuntu\n${extra}\nmodule overlay loaded\nmodule br_netfilter loadable\ncgroupfs cgroup2fs\nsystemd yes\ncontainer none\nntp yes\ntool python3\n`,
    );

  test("a port held by this cluster's own daemon is info, by anything else a failure that names it", () => {
    const f = facts(
      'listen LISTEN 0 4096 0.0.0.0:2379 0.0.0.0:* users:(("etcd",pid=812,fd=7))\nproc 812 etcd --name=cp-1\n' +
        'listen LISTEN 0 511 0.0.0.0:6443 0.0.0.0:* users:(("nginx",pid=77,fd=6))\nproc 77 nginx: master process\n' +
        'listen LISTEN 0 511 0.0.0.0:8443 0.0.0.0:* users:(("bun",pid=90,fd=6))\nproc 90 /usr/bin/bun /opt/apiserver-standin.ts\n',
    );
    const plan = new Map(
      portPlan(spec)
        .get("cp-1")!
        .map((p) => [p.port, p]),
    );
    expect(portState(f, plan.get(2379)!)).toEqual({ kind: "ours", by: "etcd (pid 812)" });
    expect(portState(f, plan.get(6443)!)).toEqual({ kind: "taken", by: "nginx (pid 77)" });
    // An apiserver on the LB port is not haproxy: a conflict.
    expect(portState(f, plan.get(8443)!).kind).toBe("taken");
    expect(portState(f, plan.get(2380)!)).toEqual({ kind: "free" });
    const row = portRow(node("cp-1"), plan.get(6443)!, portState(f, plan.get(6443)!));
    expect(row).toMatchObject({ host: "cp-1", check: "port 6443 free", status: "fail" });
    expect(row.detail).toContain("nginx (pid 77)");
    expect(row.fix).toContain("sport = :6443");
    expect(portRow(node("cp-1"), plan.get(2379)!, portState(f, plan.get(2379)!)).status).toBe("info");
  });

  test("host rows: sudo, swap, modules, cgroups and NTP, each with a fix when wrong", () => {
    const ok = hostRows(node("cp-1"), facts(""));
    expect(ok.every((r) => r.status === "pass")).toBe(true);
    const bad: HostFacts = parseFacts(
      "sudo fail\nuser ubuntu\nswap /swap.img file 2G 0B -2\nmodule overlay missing\nmodule br_netfilter loaded\ncgroupfs tmpfs\nsystemd no\ncontainer none\nntp no\n",
    );
    const rows = hostRows(node("cp-1"), bad);
    const by = (c: string) => rows.find((r) => r.check === c)!;
    expect(by("sudo")).toMatchObject({ status: "fail" });
    expect(by("sudo").fix).toContain("NOPASSWD");
    expect(by("swap")).toMatchObject({ status: "warn", detail: "on: /swap.img" });
    expect(by("module overlay").status).toBe("fail");
    expect(by("cgroup driver").status).toBe("fail");
    expect(by("time sync").status).toBe("warn");
    // In a container the machine's kernel decides modules: a warning, not a failure.
    const inContainer = hostRows(node("cp-1"), { ...bad, container: "systemd-nspawn" });
    expect(inContainer.find((r) => r.check === "module overlay")!.status).toBe("warn");
  });
});

describe("clocks and probes", () => {
  test("skew over 2 s fails the outlier only", () => {
    const rows = skewRows(
      new Map([
        ["cp-1", { offset: 0.01, rtt: 0.004 }],
        ["cp-2", { offset: 0.02, rtt: 0.004 }],
        ["cp-3", { offset: 3.5, rtt: 0.004 }],
      ]),
    );
    expect(rows.map((r) => r.status)).toEqual(["pass", "pass", "fail"]);
    expect(rows[2]!.detail).toContain("+3.480 s");
    expect(
      skewRows(
        new Map([
          ["a", { offset: 0.5, rtt: 0.01 }],
          ["b", { offset: 1.9, rtt: 0.01 }],
        ]),
      ).every((r) => r.status === "pass"),
    ).toBe(true);
  });

  test("probe and READY lines parse; a reach row names the peer and the fix", () => {
    expect(parseProbes("probe 10.0.0.163 6443 ok\nprobe 10.0.0.163 2379 timeout\n").get("10.0.0.163:2379")).toBe(
      "timeout",
    );
    expect(parseReady("READY python3 4242 2380:Address_already_in_use\n")).toEqual({
      tool: "python3",
      pid: 4242,
      failed: new Map([[2380, "Address already in use"]]),
    });
    const need = portPlan(spec)
      .get("cp-1")!
      .find((p) => p.port === 2379)!;
    const row = reachRow(node("cp-1"), need, [
      { peer: node("cp-2"), result: "ok" },
      { peer: node("cp-3"), result: "timeout" },
    ]);
    expect(row.status).toBe("fail");
    expect(row.detail).toContain("from cp-3: timed out");
    expect(row.fix).toContain("10.0.0.165");
    expect(reachRow(node("cp-1"), need, [{ peer: node("cp-2"), result: undefined }]).status).toBe("warn");
  });

  test("one table and JSON carry every row", () => {
    const rows = [
      { host: "cp-1", check: "port 6443 free", status: "fail" as const, detail: "in use by nginx", fix: "stop it" },
      { host: "cp-2", check: "swap", status: "pass" as const, detail: "off" },
    ];
    const t = formatTable(rows);
    expect(t.split("\n")[0]).toMatch(/^HOST\s+CHECK\s+STATUS\s+DETAIL\s+FIX$/);
    expect(t).toContain("FAIL");
    expect(t).toContain("1 ok, 1 failed");
    expect(reportData("c", rows)).toMatchObject({ cluster: "c", summary: { fail: 1, pass: 1 } });
    expect(failedRowsMessage(rows)).toMatch(/^1 check failed \(/);
  });
});

describe("scripts pass shellcheck", () => {
  test.each([
    ["facts", FACTS_SCRIPT],
    ["listener", `#!/bin/bash\n${listenerCommand([6443, 2379], 10)}`],
    ["probe", `#!/bin/bash\n${probeScript([{ address: "10.0.0.1", port: 6443 }])}`],
  ])("%s", (_name, script) => {
    expect(shellcheck(script.startsWith("#!") ? script : `#!/bin/bash\n${script}`)).toBe("");
  });
});
