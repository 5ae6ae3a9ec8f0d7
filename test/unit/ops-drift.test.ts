// drift's comparison, its -replace addresses (checked against the synthesized stack
// of both back-ends), the fix command, and the command's exit codes for bad input.
import { describe, expect, test } from "bun:test";
import { resolve } from "node:path";
import {
  compareFile,
  fixCommandLine,
  fixPlan,
  parseStat,
  replaceAddresses,
  sha256Hex,
  statScript,
  stepAddress,
} from "../../lib/ops/drift.ts";
import { renderCluster } from "../../lib/render/index.ts";
import { caCertHash, ensureSecrets } from "../../lib/secrets.ts";
import { EXAMPLE, steps as stackSteps, synthSpec } from "./stack-helpers.ts";

const ROOT = resolve(import.meta.dir, "../..");
const BUN = resolve(ROOT, "node_modules/.bin/bun");

describe("comparing a file", () => {
  const file = { path: "/etc/haproxy/haproxy.cfg", content: "global\n", mode: "0644" };
  test("same content and mode: no drift; each difference named", () => {
    expect(compareFile(file, { path: file.path, mode: "644", sha256: sha256Hex("global\n") })).toBeUndefined();
    expect(compareFile(file, { path: file.path })).toEqual({ kind: "missing", expected: "present", actual: "missing" });
    expect(compareFile(file, { path: file.path, mode: "644", sha256: sha256Hex("global # edited\n") })!.kind).toBe(
      "changed",
    );
    expect(compareFile(file, { path: file.path, mode: "600", sha256: sha256Hex("global\n") })).toEqual({
      kind: "mode",
      expected: "0644",
      actual: "0600",
    });
  });

  test("the stat script's output parses, and it passes shellcheck", () => {
    const m = parseStat(`F\t/etc/a\t644\t${"a".repeat(64)}\nM\t/etc/b\n`);
    expect(m.get("/etc/a")).toEqual({ path: "/etc/a", mode: "644", sha256: "a".repeat(64) });
    expect(m.get("/etc/b")).toEqual({ path: "/etc/b" });
    const r = Bun.spawnSync(["shellcheck", "-s", "bash", "-S", "warning", "-"], {
      stdin: new TextEncoder().encode(`#!/bin/bash\n${statScript(["/etc/a b", "/etc/c"])}`),
    });
    expect(r.stdout.toString()).toBe("");
  });
});

describe("-replace addresses", () => {
  test.each(["hashicorp", "builtin"] as const)("are the synthesized stack's step resources (%s)", (backend) => {
    const syn = synthSpec(EXAMPLE, (spec) => {
      spec.terraform.resources = backend;
    });
    const secrets = ensureSecrets(syn.spec);
    const steps = renderCluster(syn.spec, { caCertPem: secrets.caCert, caCertHash: caCertHash(secrets.caCert) });
    const type = backend === "builtin" ? "terraform_data" : "null_resource";
    const inStack = Object.keys(syn.json.resource[type]).filter((id) => id !== "kubeconfig");
    expect(steps.map((s) => stepAddress(syn.spec, s)).sort()).toEqual(inStack.map((id) => `${type}.${id}`).sort());
    expect(Object.keys(stackSteps(syn.json))).toContain("join_worker_1");
    // Only the drifted steps, once each, in build order.
    const lb2 = steps.find((s) => s.phase === "loadbalancer" && s.node.name === "cp-2")!;
    const prep1 = steps.find((s) => s.phase === "prepare" && s.node.name === "cp-1")!;
    const item = (s: typeof lb2) => ({
      host: s.node.name,
      path: "/x",
      phase: s.phase,
      kind: "changed" as const,
      expected: "",
      actual: "",
      address: stepAddress(syn.spec, s),
    });
    expect(replaceAddresses(syn.spec, steps, [item(lb2), item(prep1), item(lb2)])).toEqual([
      `${type}.prepare_cp_1`,
      `${type}.loadbalancer_cp_2`,
    ]);
  });

  test("the fix command runs terraform apply -replace in the stack dir; secrets only as variable names", () => {
    const syn = synthSpec(EXAMPLE);
    const plan = fixPlan(syn.spec, ["null_resource.loadbalancer_cp_1"], {
      yes: true,
      variables: ["TF_VAR_stats_password"],
    });
    expect(plan.cwd).toBe(resolve("cdktf.out/stacks/example"));
    expect(plan.argv).toEqual([
      "terraform",
      "apply",
      "-input=false",
      "-auto-approve",
      "-replace=null_resource.loadbalancer_cp_1",
    ]);
    expect(fixCommandLine(plan)).toMatch(
      /^cd '.*cdktf.out\/stacks\/example' && (terraform init -input=false && )?terraform apply/,
    );
    // Without --yes terraform asks: -input=false would make it refuse the apply instead.
    expect(fixPlan(syn.spec, ["null_resource.loadbalancer_cp_1"], { variables: [] }).argv).toEqual([
      "terraform",
      "apply",
      "-replace=null_resource.loadbalancer_cp_1",
    ]);
  });
});

describe("command exit codes", () => {
  const drift = (args: string[], env: Record<string, string> = {}) =>
    Bun.spawnSync([BUN, "scripts/drift.ts", ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdout: "pipe",
      stderr: "pipe",
    });

  test("--help exits 0 and documents the codes; bad flags and specs exit 2 like every command, drift 3", () => {
    const help = drift(["--help"]);
    expect(help.exitCode).toBe(0);
    expect(help.stdout.toString()).toMatch(/\n {2}2 {3}bad input/);
    expect(help.stdout.toString()).toMatch(/\n {2}3 {3}drift found/);
    expect(help.stdout.toString()).toContain("terraform plan -detailed-exitcode");
    const bad = drift(["--nope"]);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr.toString()).toContain("--nope");
    expect(bad.stderr.toString()).not.toContain("    at ");
    const missing = drift(["--spec", "/nonexistent/cluster.yaml"]);
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr.toString()).toContain("does not exist");
  });
});
