// Growing and shrinking the control plane on the lab (issue 11): five lab hosts for control planes,
// the cluster deployed on three; two added through the ordinary path (spec edit, deploy: late
// joins), then both removed with node:remove after the spec edit. 3 -> 5 -> 3 because the spec
// refuses an even number of control planes. Ends with a consistent 3-member cluster: etcd 3/3
// with the cluster ID it started with, no load-balancer config naming a removed node, and
// `terraform plan` empty.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { LAB, labDown, labEtcdctl, labExec, labPaths, labUp, requireLab } from "../lab/lab.ts";
import { envelopeOf, runBun } from "../unit/cli-helpers.ts";
import { STACK_DIR, synthLab, terraform } from "./apply.ts";
import { outage, startPoller } from "./poller.ts";

const guard = requireLab();
const EXTRA = ["cp-4", "cp-5"];
const notExtra = (n: { name: string }) => !EXTRA.includes(n.name);

const clusterId = async () =>
  /"cluster_id":(\d+)/.exec((await labEtcdctl(["member", "list", "-w", "json"])).stdout)?.[1];
const memberNames = async () =>
  (JSON.parse((await labEtcdctl(["member", "list", "-w", "json"])).stdout) as { members: { name: string }[] }).members
    .map((m) => m.name)
    .sort();
const healthyCount = async () => {
  const r = await labEtcdctl(["endpoint", "health", "--cluster"]);
  return (`${r.stdout}${r.stderr}`.match(/ is healthy/g) ?? []).length;
};

describe.skipIf(guard.skip)("control planes added and removed on the lab", () => {
  let idBefore: string | undefined;

  beforeAll(async () => {
    // Five control-plane hosts; the spec deployed first names three of them.
    await labUp({ fresh: true, kubeadm: "pending", controlPlanes: 5, workers: 1 });
    synthLab((spec) => {
      spec.nodes = spec.nodes.filter(notExtra);
    });
    expect((await terraform(["init", "-input=false"])).code).toBe(0);
    const apply = await terraform(["apply", "-input=false", "-auto-approve"]);
    if (apply.code !== 0) throw new Error(`terraform apply failed:\n${apply.out.slice(-6000)}`);
    idBefore = await clusterId();
  }, 900_000);
  afterAll(async () => {
    if (!process.env.KHA_KEEP_LAB) await labDown();
  }, 300_000);

  test("3 -> 5: two control planes added to the spec join through the ordinary deploy", async () => {
    expect(await memberNames()).toEqual(["cp-1", "cp-2", "cp-3"]);
    synthLab();
    const started = performance.now();
    const apply = await terraform(["apply", "-input=false", "-auto-approve"]);
    if (apply.code !== 0) throw new Error(`terraform apply failed:\n${apply.out.slice(-6000)}`);
    process.stderr.write(`deploy 3 -> 5 control planes: ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
    expect(await memberNames()).toEqual(["cp-1", "cp-2", "cp-3", "cp-4", "cp-5"]);
    expect(await healthyCount()).toBe(5);
    expect(await clusterId()).toBe(idBefore);
  }, 600_000);

  test("5 -> 3: node:remove cp-4 cp-5 after the spec edit leaves etcd 3/3, the load balancers rolled, the plan empty", async () => {
    const doc = parse(readFileSync(labPaths.spec, "utf8")) as { nodes: { name: string }[] };
    doc.nodes = doc.nodes.filter(notExtra);
    const edited = join(labPaths.stateDir, "cluster-three-cps.yaml");
    writeFileSync(edited, stringify(doc));
    synthLab((spec) => {
      spec.nodes = spec.nodes.filter(notExtra);
    });
    const watch = startPoller(LAB.vip, LAB.port);
    const from = watch.now();
    const started = performance.now();
    const { code, stdout, stderr } = await runBun(
      ["scripts/node-remove.ts", ...EXTRA, "--spec", edited, "--stack-dir", STACK_DIR, "--yes", "--json"],
      { env: { KUBEADM_HA_SECRETS_DIR: labPaths.secretsDir } },
    );
    const samples = await watch.stop();
    const o = outage(samples, from);
    if (code !== 0) process.stderr.write(`${stderr.slice(-6000)}\n${stdout.slice(-3000)}\n`);
    expect(code).toBe(0);
    const envelope = envelopeOf({ code, stdout, stderr });
    expect(envelope.data.nodes.map((n: { node: string }) => n.node)).toEqual(EXTRA);
    expect(envelope.data.nodes.every((n: { removedMember?: string }) => !!n.removedMember)).toBe(true);
    const failures = samples
      .filter((x) => x.at >= from && x.status !== 200)
      .map((x) => `${Math.round(x.at - from)} ms: ${x.status}`);
    process.stderr.write(
      `node:remove cp-4 cp-5: ${((performance.now() - started) / 1000).toFixed(1)} s; VIP ${o.failed} of ${o.total} failed ${failures.join(", ")}\n`,
    );
    expect(await memberNames()).toEqual(["cp-1", "cp-2", "cp-3"]);
    expect(await healthyCount()).toBe(3);
    expect(await clusterId()).toBe(idBefore);
    // No haproxy backend or keepalived peer is left for a removed node.
    for (const cp of ["cp-1", "cp-2", "cp-3"]) {
      const cfg = (await labExec(cp, "cat /etc/haproxy/haproxy.cfg /etc/keepalived/keepalived.conf")).stdout;
      expect(cfg).not.toMatch(/cp-4|cp-5|198\.18\.0\.14\b|198\.18\.0\.15\b/);
      expect(cfg).toContain("server cp-3 198.18.0.13:6443");
    }
    // The removed hosts run no keepalived or haproxy: a keepalived the others no longer send adverts
    // to would take the VIP.
    for (const gone of EXTRA)
      expect((await labExec(gone, "systemctl is-active keepalived haproxy || true")).stdout.trim().split("\n")).toEqual(
        ["inactive", "inactive"],
      );
    const state = await terraform(["state", "list"]);
    expect(state.out).not.toMatch(/_cp_4|_cp_5/);
    expect((await terraform(["plan", "-input=false", "-detailed-exitcode"])).code).toBe(0);
    // The removed apiservers left haproxy before they lost etcd: no request through the VIP failed.
    expect(failures).toEqual([]);
  }, 600_000);
});
