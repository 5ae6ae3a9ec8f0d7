// The rules of healing, without hosts: etcd's quorum arithmetic, which member is a node's (also
// one that never started), which steps are a node's, the refusals and the plan node:replace prints.
import { describe, expect, test } from "bun:test";
import type { MemberInfo } from "../../lib/etcd/member-list.ts";
import {
  type MemberHealth,
  memberOf,
  peerUrlOf,
  quorumOf,
  removalProblem,
  removeProblem,
  replacePlan,
  roleFromSteps,
  stackSteps,
  stateSteps,
  stepsProblem,
  unnamedDropped,
} from "../../lib/heal/plan.ts";
import type { NodeSpec } from "../../lib/spec/schema.ts";
import { dependsOn, EXAMPLE, steps, synthSpec, triggersOf } from "./stack-helpers.ts";

const m = (id: string, name: string, address: string, started = true): MemberInfo => ({
  id,
  name: started ? name : "",
  peerUrls: [`https://${address}:2380`],
  clientUrls: started ? [`https://${address}:2379`] : [],
  isLearner: false,
});
const h = (member: MemberInfo, healthy: boolean): MemberHealth => ({ member, healthy });
const cp1 = m("a1", "cp-1", "10.0.0.11");
const cp2 = m("b2", "cp-2", "10.0.0.12");
const cp3 = m("c3", "cp-3", "10.0.0.13");
const node = (name: string, address: string, role = "control-plane") => ({ name, address, role }) as NodeSpec;

describe("quorum", () => {
  test("a majority of the members", () => {
    expect([1, 2, 3, 4, 5, 6, 7].map(quorumOf)).toEqual([1, 2, 2, 3, 3, 4, 4]);
  });

  test("one of three dead: its member may go (2 of 2 left)", () => {
    expect(removalProblem([h(cp1, true), h(cp2, false), h(cp3, true)], "b2", "cp-2")).toBeUndefined();
  });

  test("two of three dead: refused, pointing at etcd:recover", () => {
    const p = removalProblem([h(cp1, true), h(cp2, false), h(cp3, false)], "b2", "cp-2");
    expect(p).toContain("etcd has no quorum: 1 of 3 members healthy, 2 needed");
    expect(p).toContain("etcd:recover --from");
  });

  test("five members, two down: refused (one control plane at a time; the join checks every member)", () => {
    const five = [cp1, cp2, cp3, m("d4", "cp-4", "10.0.0.14"), m("e5", "cp-5", "10.0.0.15")];
    const p = removalProblem(
      five.map((x) => h(x, x.id !== "b2" && x.id !== "d4")),
      "b2",
      "cp-2",
    );
    expect(p).toContain("another etcd member is unhealthy too (cp-4 d4");
  });

  test("two healthy members: removing one leaves one, still a quorum of itself", () => {
    expect(removalProblem([h(cp1, true), h(cp2, true)], "b2", "cp-2")).toBeUndefined();
  });

  test("nothing to remove: only the quorum is checked", () => {
    expect(removalProblem([h(cp1, true)], undefined, "cp-2")).toBeUndefined();
  });
});

describe("the node's member", () => {
  test("by peer URL, also one added but never started (no name)", () => {
    const unstarted = m("f6", "", "10.0.0.12", false);
    expect(memberOf([cp1, unstarted, cp3], node("cp-2", "10.0.0.12"))?.id).toBe("f6");
  });
  test("by name when the address changed", () => {
    expect(memberOf([cp1, cp2, cp3], node("cp-2", "10.0.0.99"))?.id).toBe("b2");
  });
  test("none", () => {
    expect(memberOf([cp1, cp3], node("cp-2", "10.0.0.12"))).toBeUndefined();
  });
  test("IPv6 peer URLs in brackets", () => {
    expect(peerUrlOf("fd00::12")).toBe("https://[fd00::12]:2380");
  });
});

const stack = {
  resource: {
    terraform_data: {
      prepare_cp_1: { triggers_replace: { node: "cp-1", address: "10.0.0.11" } },
      init_cp_1: { triggers_replace: { node: "cp-1", address: "10.0.0.11" } },
      prepare_cp_2: { triggers_replace: { node: "cp-2", address: "10.0.0.12" } },
      loadbalancer_cp_2: { triggers_replace: { node: "cp-2", address: "10.0.0.12" } },
      join_cp_2: { triggers_replace: { node: "cp-2", address: "10.0.0.12" } },
      membership_cp_2: { triggers_replace: { node: "cp-2", address: "10.0.0.12" } },
      preflight: { triggers_replace: { nodes: "cp-1=10.0.0.11" } },
    },
  },
};

describe("the node's steps", () => {
  const steps = stackSteps(stack);
  test("read from the stack's triggers; membership and local steps are not steps of a node", () => {
    expect(steps.filter((s) => s.node === "cp-2").map((s) => s.address)).toEqual([
      "terraform_data.prepare_cp_2",
      "terraform_data.loadbalancer_cp_2",
      "terraform_data.join_cp_2",
    ]);
  });
  test("the first control plane is replaced like the others (its init step joins through join_via)", () => {
    expect(stepsProblem(steps, node("cp-1", "10.0.0.11"), "/s")).toBeUndefined();
  });
  test("a stack synthesized for another address is refused", () => {
    expect(stepsProblem(steps, node("cp-2", "10.0.0.99"), "/s")).toContain(
      "has cp-2 at 10.0.0.12, the spec at 10.0.0.99: synthesize",
    );
  });
  test("a node the stack does not know is refused", () => {
    expect(stepsProblem(steps, node("cp-9", "10.0.0.19"), "/s")).toContain("has no steps for cp-9");
  });
  test("a node of the stack is fine", () => {
    expect(stepsProblem(steps, node("cp-2", "10.0.0.12"), "/s")).toBeUndefined();
  });
});

test("the plan of a control-plane replacement, in order", () => {
  const plan = replacePlan({
    node: node("cp-2", "10.0.0.12"),
    health: [h(cp1, true), h(cp2, false), h(cp3, true)],
    via: "cp-1",
    steps: stackSteps(stack).filter((s) => s.node === "cp-2"),
    reachable: true,
  });
  expect(plan.map((p) => p.phase)).toEqual(["quorum", "etcd", "node", "reset", "terraform", "wait"]);
  expect(plan[1]!.action).toBe("remove cp-2's stale member cp-2 b2 https://10.0.0.12:2380");
  expect(plan[4]!.action).toContain("-replace for terraform_data.prepare_cp_2, terraform_data.loadbalancer_cp_2");
  expect(plan[5]!.action).toBe("wait for 3 etcd members healthy and /readyz through the VIP");
});

test("the plan of a worker replacement has no etcd steps", () => {
  const plan = replacePlan({
    node: node("w-1", "10.0.0.21", "worker"),
    health: [],
    via: "cp-1",
    steps: [],
    reachable: true,
  });
  expect(plan.map((p) => p.phase)).toEqual(["node", "reset", "terraform", "wait"]);
});

describe("node:remove's refusals", () => {
  const base = {
    name: "cp-3",
    inSpec: false,
    inStack: false,
    inState: true,
    role: "control-plane" as const,
    controlPlanesLeft: 3,
    force: false,
  };
  test("5 -> 4 -> 3 control planes are fine; a worker always", () => {
    expect(removeProblem(base)).toBeUndefined();
    expect(removeProblem({ ...base, role: "worker", controlPlanesLeft: 1 })).toBeUndefined();
  });
  test("3 -> 2 refused without --force, allowed with it", () => {
    expect(removeProblem({ ...base, controlPlanesLeft: 2 })).toContain("leaves 2 control planes");
    expect(removeProblem({ ...base, controlPlanesLeft: 2, force: true })).toBeUndefined();
  });
  test("the spec is edited first, and the stack synthesized from it", () => {
    expect(removeProblem({ ...base, inSpec: true })).toContain(
      "cp-3 is still in the spec. Remove it from the nodes list first",
    );
    expect(removeProblem({ ...base, inStack: true })).toContain("run bun run synth with the edited spec first");
    expect(removeProblem({ ...base, inState: false })).toContain("Terraform's state has no steps for cp-3");
  });
});

test("steps and role from terraform show -json", () => {
  const show = {
    values: {
      root_module: {
        resources: [
          {
            address: "terraform_data.prepare_cp_3",
            type: "terraform_data",
            name: "prepare_cp_3",
            values: { triggers_replace: { node: "cp-3", address: "10.0.0.13" } },
          },
          {
            address: "terraform_data.loadbalancer_cp_3",
            type: "terraform_data",
            name: "loadbalancer_cp_3",
            values: { triggers_replace: { node: "cp-3", address: "10.0.0.13" } },
          },
          {
            address: "null_resource.join_w_1",
            type: "null_resource",
            name: "join_w_1",
            values: { triggers: { node: "w-1", address: "10.0.0.21" } },
          },
          { address: "local_file.x", type: "local_file", name: "x", values: {} },
        ],
      },
    },
  };
  const steps = stateSteps(show);
  expect(steps.map((s) => s.address)).toEqual([
    "terraform_data.prepare_cp_3",
    "terraform_data.loadbalancer_cp_3",
    "null_resource.join_w_1",
  ]);
  expect(roleFromSteps(steps, "cp-3")).toBe("control-plane");
  expect(roleFromSteps(steps, "w-1")).toBe("worker");
});

// A replacement host at a new address (the spec edited, the stack synthesized): the node's own
// steps change, and so do the other control planes' load-balancer steps (haproxy backends,
// keepalived peers), which the normal apply then replaces one after the other.
test("a new address re-applies the other control planes' load balancers, one at a time", () => {
  const base = steps(synthSpec(EXAMPLE).json);
  const moved = synthSpec(EXAMPLE, (spec) => {
    spec.nodes.find((n) => n.name === "cp-2")!.address = "10.0.0.99";
  });
  const after = steps(moved.json);
  const changed = Object.keys(after)
    .filter((id) => JSON.stringify(triggersOf(after[id])) !== JSON.stringify(triggersOf(base[id])))
    .filter((id) => !id.startsWith("file_"));
  for (const id of ["loadbalancer_cp_1", "loadbalancer_cp_2", "loadbalancer_cp_3", "prepare_cp_2", "join_cp_2"])
    expect(changed).toContain(id);
  expect(dependsOn(after.loadbalancer_cp_2)).toContain("loadbalancer_cp_1");
  expect(dependsOn(after.loadbalancer_cp_3)).toContain("loadbalancer_cp_2");
  // node:replace then accepts the stack for the new address.
  const cp2 = moved.spec.nodes.find((n) => n.name === "cp-2")!;
  expect(stepsProblem(stackSteps(moved.json), cp2, moved.stackDir)).toBeUndefined();
});

test("node:remove must be given every node the edited spec drops (5 -> 3: both)", () => {
  const state = stackSteps(stack).concat([
    { address: "terraform_data.join_cp_4", node: "cp-4", nodeAddress: "10.0.0.14", name: "join_cp_4" },
    { address: "terraform_data.join_cp_5", node: "cp-5", nodeAddress: "10.0.0.15", name: "join_cp_5" },
  ]);
  const spec = ["cp-1", "cp-2"];
  expect(unnamedDropped(state, spec, ["cp-4"])).toEqual(["cp-5"]);
  expect(unnamedDropped(state, spec, ["cp-4", "cp-5"])).toEqual([]);
});
