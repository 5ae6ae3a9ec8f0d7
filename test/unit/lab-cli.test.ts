// How to point the commands at the lab, without a lab: `lab env` prints the one export line that
// `eval` needs, `lab status --json`'s data names the spec, and `lab up`'s last line says how to
// target it. None of these touch lab hosts (env only prints; the rest are pure functions).
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { labAddressProblem, labPaths, labStatusData, labTargetHint, specExport } from "../lab/lab.ts";
import { BUN, envelopeOf, ROOT, runBun } from "./cli-helpers.ts";

const LAB_SPEC = join(ROOT, ".kubeadm-ha/lab/cluster.yaml");

describe("targeting the lab", () => {
  test("`bun run lab env` prints only `export CLUSTER_SPEC=<abs path>` on stdout, and eval sets it", () => {
    const r = spawnSync(BUN, ["run", "--silent", "lab", "env"], { cwd: ROOT, encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`export CLUSTER_SPEC='${LAB_SPEC}'\n`);
    const sh = spawnSync("sh", ["-c", `eval "$('${BUN}' run lab env 2>/dev/null)"; printf %s "$CLUSTER_SPEC"`], {
      cwd: ROOT,
      encoding: "utf8",
    });
    expect(sh.stdout).toBe(LAB_SPEC);
  });

  test("a spec path with a quote or $( ) survives eval unchanged", () => {
    const tricky = "/tmp/it's $(touch /tmp/kha-nope) dir/cluster.yaml";
    const line = specExport().replace(`'${LAB_SPEC}'`, `'${tricky.replace(/'/g, `'\\''`)}'`);
    const sh = spawnSync("sh", ["-c", `${line}; printf %s "$CLUSTER_SPEC"`], { encoding: "utf8" });
    expect(sh.stdout).toBe(tricky);
  });

  test("lab env --json is bad usage (status only), as one envelope", async () => {
    const r = await runBun(["test/lab/cli.ts", "env", "--json"]);
    expect(r.code).toBe(2);
    expect(envelopeOf(r)).toMatchObject({ ok: false, command: "lab", data: null, error: { code: 2 } });
  });

  test("status --json data holds the lab spec's absolute path; up's last line says how to target the lab", () => {
    expect(labPaths.spec as string).toBe(LAB_SPEC);
    const data = labStatusData({ vip: "198.18.0.10", port: 8443, hosts: [] });
    expect(data).toEqual({ spec: LAB_SPEC, vip: "198.18.0.10", port: 8443, hosts: [] });
    expect(labTargetHint()).toContain('eval "$(bun run lab env)"');
    expect(labTargetHint()).toContain(`--spec ${LAB_SPEC}`);
  });

  test("--help lists env and the status data's spec", async () => {
    const r = await runBun(["test/lab/cli.ts", "--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("status: {spec, vip, port, os, hosts");
    expect(r.stdout).toMatch(/ {2}eval "\$\(bun run lab env\)"/);
  });
});

describe("a reinstalled host at a new address (lab break --disk --new-address)", () => {
  const nodes = [
    { name: "cp-1", address: "198.18.0.11" },
    { name: "cp-3", address: "198.18.0.13" },
  ];
  test("only a free lab host address: not the VIP, the bridge, another host's or outside 198.18.0.0/24", () => {
    expect(labAddressProblem("cp-3", "198.18.0.14", nodes)).toBeUndefined();
    for (const [bad, why] of [
      ["198.18.0.10", "is the lab's VIP"],
      ["198.18.0.11", "is cp-1's address"],
      ["198.18.0.13", "is cp-3's address already"],
      ["198.18.0.1", "is not a lab host address"],
      ["198.18.0.255", "is not a lab host address"],
      ["198.18.0.014", "is not a lab host address"],
      ["10.0.0.14", "is not a lab host address"],
      ["198.18.0.14; true", "is not a lab host address"],
    ] as const)
      expect(labAddressProblem("cp-3", bad, nodes)).toContain(why);
  });

  test("--new-address belongs to break --disk: elsewhere bad usage, nothing touched", async () => {
    const r = await runBun(["test/lab/cli.ts", "env", "--new-address", "198.18.0.14", "--json"]);
    expect(r.code).toBe(2);
    expect(envelopeOf(r).error!.message).toContain("--new-address applies to break --disk only");
  });
});
