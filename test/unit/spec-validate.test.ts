// The spec loader as a library: every invalid fixture fails with the expected problems,
// every valid one (and cluster.example.yaml) parses, paths resolve against the spec file.
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { UserError } from "../../lib/errors.ts";
import { checkSpecText, loadSpec, parseSpec, resolveSpecPath, SpecError, specBaseDir } from "../../lib/spec/load.ts";
import { closest, editDistance } from "../../lib/spec/suggest.ts";
import { basePriority, basePriorityRange, controlPlanes, vrrpPriority, vrrpWeights } from "../../lib/spec/topology.ts";
import {
  CONTROL_PLANE_PORTS,
  KUBERNETES_MINOR_MAX,
  KUBERNETES_MINOR_MIN,
  SUPPORTED_KUBERNETES_MINORS,
} from "../../lib/spec/validate.ts";
import { INVALID_CASES, invalidSpec, SPECS_DIR, VALID_SPECS, validSpec } from "../fixtures/specs/cases.ts";

const ROOT = resolve(import.meta.dir, "../..");

function specError(file: string): SpecError {
  try {
    parseSpec(readFileSync(file, "utf8"), file);
  } catch (e) {
    if (e instanceof SpecError) return e;
    throw new Error(`${file}: expected a SpecError, got ${e}`);
  }
  throw new Error(`${file}: parsed without error`);
}

describe("invalid specs", () => {
  test("every invalid fixture has a case", () => {
    const files = readdirSync(join(SPECS_DIR, "invalid")).sort();
    expect(INVALID_CASES.map((c) => c.file).sort()).toEqual(files);
  });

  for (const c of INVALID_CASES) {
    test(c.file, () => {
      const err = specError(invalidSpec(c.file));
      expect(err).toBeInstanceOf(UserError);
      expect(err.exitCode).toBe(2);
      for (const text of c.expect) expect(err.message).toContain(text);
      expect(err.problems).toHaveLength(c.problems);
      expect(err.message).toContain(`(${c.problems} problem${c.problems === 1 ? "" : "s"})`);
      // zod's own wording never reaches the user, and every problem is one paragraph.
      expect(err.message).not.toMatch(/Invalid input|expected string|Too small|Too big|Unrecognized key/);
      for (const p of err.problems) expect(p.message).not.toContain("\n\n");
      const lines = err.problems.map((p) => p.line ?? 0);
      expect(lines).toEqual([...lines].sort((a, b) => a - b));
    });
  }

  test("problems carry machine paths and 1-based positions", () => {
    const err = specError(invalidSpec("node-bad-address.yaml"));
    expect(err.problems).toEqual([
      {
        path: "nodes[2].address",
        line: 12,
        column: 28,
        message: 'nodes[2] (cp-3).address: "10.0.0.300" must be an IPv4 address such as 10.0.0.10.',
      },
    ]);
  });

  test("rules still run on valid sections while another section has schema errors", () => {
    const text = readFileSync(validSpec("minimal.yaml"), "utf8")
      .replace('version: "1.31.4"', "version: v1.31.4")
      .replace("address: 10.0.0.13,", "address: 10.0.0.300,");
    const { spec, problems } = checkSpecText(text);
    expect(spec).toBeUndefined();
    expect(problems.map((p) => p.path)).toEqual(["kubernetes.version", "nodes[2].address"]);
  });

  test("a misspelt required key is reported once, as the typo", () => {
    const { problems } = checkSpecText(readFileSync(invalidSpec("unknown-key-typo.yaml"), "utf8"));
    expect(problems.map((p) => p.path)).toEqual(["controlPlaneEndpiont"]);
  });

  test("a missing required field names an example", () => {
    const { problems } = checkSpecText("name: x\n");
    const byPath = Object.fromEntries(problems.map((p) => [p.path, p.message]));
    expect(Object.keys(byPath).sort()).toEqual(["controlPlaneEndpoint", "kubernetes", "nodes"]);
    expect(byPath.kubernetes).toContain('version: "1.31.4"');
    expect(byPath.controlPlaneEndpoint).toContain("vip: 10.0.0.10");
  });

  test("SSH hosts: user@host and host:port get the fields to use instead", () => {
    const text = readFileSync(validSpec("minimal.yaml"), "utf8")
      .replace(
        "name: worker-1, address: 10.0.0.21, role: worker",
        'name: worker-1, address: 10.0.0.21, role: worker, ssh: { host: "10.0.0.21:2222" }',
      )
      .concat('ssh:\n  bastion: { host: "ops@jump.example.com" }\n');
    const { problems } = checkSpecText(text);
    expect(problems.map((p) => p.message)).toEqual([
      'nodes[3] (worker-1).ssh.host: "10.0.0.21:2222" must be an address or host name only; write host: 10.0.0.21 and nodes[3].ssh.port: 2222.',
      'ssh.bastion.host: "ops@jump.example.com" must be an address or host name only; write host: jump.example.com and put the user in ssh.bastion.user: ops.',
    ]);
  });

  test("an empty mapping value is reported as empty, not as a type error", () => {
    const text = `${readFileSync(validSpec("minimal.yaml"), "utf8")}ssh:\n`;
    const { problems } = checkSpecText(text);
    expect(problems).toHaveLength(1);
    expect(problems[0]?.message).toContain("ssh: is empty, but must be a mapping");
    expect(problems[0]?.line).toBe(14);
  });
});

describe("valid specs", () => {
  for (const file of VALID_SPECS) {
    test(file, () => {
      const spec = loadSpec(validSpec(file));
      expect(spec.nodes.length).toBeGreaterThan(0);
    });
  }

  test("cluster.example.yaml is valid: 3 control planes, 2 workers", () => {
    const spec = loadSpec(join(ROOT, "cluster.example.yaml"));
    expect(controlPlanes(spec).map((n) => n.name)).toEqual(["cp-1", "cp-2", "cp-3"]);
    expect(spec.nodes).toHaveLength(5);
    expect(spec.controlPlaneEndpoint).toMatchObject({ vip: "10.0.0.162", port: 8443 });
  });

  test("defaults fill what the file leaves out", () => {
    const spec = loadSpec(validSpec("minimal.yaml"));
    expect(spec.loadBalancer).toMatchObject({
      mode: "keepalived-haproxy",
      vrrp: { version: 3, advertIntervalSeconds: 0.1 },
    });
    expect(basePriority(spec)).toBe(150);
    expect(spec.networking).toMatchObject({ podSubnet: "10.244.0.0/16", serviceSubnet: "10.96.0.0/12" });
    expect(spec.controlPlaneEndpoint.port).toBe(8443);
  });

  test("the lowest basePriority allowed leaves a failing last control plane at priority 1, the highest a holder at 254", () => {
    const text = readFileSync(invalidSpec("base-priority-too-low.yaml"), "utf8");
    for (const [base, ok] of [
      [122, false],
      [123, true],
      [213, true],
      [214, false],
    ] as const) {
      const check = checkSpecText(text.replace("basePriority: 40", `basePriority: ${base}`));
      expect(check.problems.map((p) => p.path)).toEqual(ok ? [] : ["loadBalancer.vrrp.basePriority"]);
    }
    const spec = parseSpec(text.replace("basePriority: 40", "basePriority: 123"));
    const cps = controlPlanes(spec);
    const { checkWeight, holderBonus } = vrrpWeights(spec);
    expect(cps.map((n) => vrrpPriority(spec, n))).toEqual([123, 113, 103, 93, 83]);
    expect(83 + checkWeight).toBe(1);
    expect(
      parseSpec(text.replace("basePriority: 40", "basePriority: 213")).loadBalancer.vrrp.basePriority! + holderBonus,
    ).toBe(254);
  });

  test("without basePriority every allowed control-plane count gets a base that fits (150 where it can)", () => {
    const base = readFileSync(validSpec("seven-control-planes-no-prefix.yaml"), "utf8");
    const expected: Record<number, number> = { 3: 150, 5: 150, 7: 183 };
    for (const count of [3, 5, 7]) {
      const nodes = Array.from(
        { length: count },
        (_, i) => `  - { name: cp-${i + 1}, address: 10.0.0.${11 + i}, role: control-plane }`,
      );
      const text = base.replace(/nodes:\n[\s\S]*$/, `nodes:\n${nodes.join("\n")}\n`);
      const spec = parseSpec(text);
      expect(basePriority(spec)).toBe(expected[count]!);
      const { min, max } = basePriorityRange(count, true);
      expect(basePriority(spec)).toBeGreaterThanOrEqual(min);
      expect(basePriority(spec)).toBeLessThanOrEqual(max);
      const noSticky = parseSpec(`${text}loadBalancer: { vrrp: { stickyVip: false } }\n`);
      expect(basePriority(noSticky)).toBe(150);
    }
  });

  test("one control plane needs allowNonHA", () => {
    const text = readFileSync(validSpec("single-control-plane.yaml"), "utf8");
    expect(() => parseSpec(text)).not.toThrow();
    expect(() => parseSpec(text.replace("allowNonHA: true\n", ""))).toThrow(/only 1 control plane/);
  });
});

describe("spec paths", () => {
  test("loadSpec remembers the spec's directory; relative paths resolve against it", () => {
    const file = validSpec("minimal.yaml");
    const spec = loadSpec(file);
    expect(specBaseDir(spec)).toBe(join(SPECS_DIR, "valid"));
    expect(resolveSpecPath(spec, ".kubeadm-ha/known_hosts")).toBe(join(SPECS_DIR, "valid", ".kubeadm-ha/known_hosts"));
    expect(resolveSpecPath(spec, "/etc/hosts")).toBe("/etc/hosts");
    const home = process.env.HOME || homedir();
    expect(resolveSpecPath(spec, "~/.ssh/id_ed25519")).toBe(join(home, ".ssh/id_ed25519"));
    expect(resolveSpecPath(spec, "~")).toBe(home);
    // "~user/..." is not expanded: only the caller's own home is meant.
    expect(resolveSpecPath(spec, "~other/key")).toBe(join(SPECS_DIR, "valid", "~other/key"));
  });

  test("a spec parsed from text resolves against the working directory", () => {
    const spec = parseSpec(readFileSync(validSpec("minimal.yaml"), "utf8"));
    expect(specBaseDir(spec)).toBe(process.cwd());
    expect(resolveSpecPath(spec, "backups")).toBe(join(process.cwd(), "backups"));
  });

  test("a missing file or a directory is a UserError naming it", () => {
    expect(() => loadSpec("/nonexistent/cluster.yaml")).toThrow(/spec file \/nonexistent\/cluster.yaml does not exist/);
    expect(() => loadSpec(SPECS_DIR)).toThrow(/is a directory/);
  });
});

describe("helpers", () => {
  test("edit distance and typo suggestions", () => {
    expect(editDistance("kitten", "sitting")).toBe(3);
    expect(editDistance("", "abc")).toBe(3);
    expect(closest("controlPlaneEndpiont", ["nodes", "controlPlaneEndpoint"])).toBe("controlPlaneEndpoint");
    expect(closest("controlplaneendpoint", ["controlPlaneEndpoint"])).toBe("controlPlaneEndpoint");
    expect(closest("sssh", ["ssh", "name"])).toBe("ssh");
    expect(closest("bogus", ["version", "packages"])).toBeUndefined();
  });

  test("supported Kubernetes minors are exported", () => {
    expect([KUBERNETES_MINOR_MIN, KUBERNETES_MINOR_MAX]).toEqual([30, 35]);
    expect(SUPPORTED_KUBERNETES_MINORS).toEqual(["1.30", "1.31", "1.32", "1.33", "1.34", "1.35"]);
    expect(
      Object.keys(CONTROL_PLANE_PORTS)
        .map(Number)
        .sort((a, b) => a - b),
    ).toEqual([2379, 2380, 6443, 10250, 10257, 10259]);
  });
});
