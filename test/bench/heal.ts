// Healing, measured on the lab (issue 11), each run on a freshly applied lab:
//   1. node:replace of a control plane whose disk died (lab break --disk): command start -> etcd 3/3
//      healthy and the node joined (the command returns only then), with the terraform part;
//   2. failed requests through the VIP (GET /healthz every 50 ms, fresh connection each) from the
//      fault to the end of the replacement, and the last failure after the fault;
//   3. node:replace of a worker whose disk died;
//   4. two control planes' disks destroyed: etcd:recover --from the survivor -> API serving through
//      the VIP (first change to /readyz 200), then both replaced (3/3 again);
//   5. node:replace of a control plane reinstalled at a new address (lab break --disk --new-address,
//      the spec edited and synthesized): time, and the failed requests through the VIP while the
//      load balancers on the others roll.
//
//   bun test/bench/heal.ts [--runs 1] [--json]
//
// Root only (the lab); contacts lab addresses only. Not part of CI. Takes the lab for the whole run
// (wrap it in the lab lock) and leaves it down.
import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { parse, stringify } from "yaml";
import { applyLab, STACK_DIR, synthLab } from "../e2e/apply.ts";
import { outage, startPoller } from "../e2e/poller.ts";
import { LAB, labBreakDisk, labDown, labPaths, labReaddress } from "../lab/lab.ts";
import { runBun } from "../unit/cli-helpers.ts";

const { values } = parseArgs({ options: { runs: { type: "string" }, json: { type: "boolean" } } });
const runs = Number(values.runs ?? 1);

async function command(args: string[]): Promise<{ seconds: number; data: Record<string, unknown> }> {
  const started = performance.now();
  const stack = args[0]!.includes("node-") ? ["--stack-dir", STACK_DIR] : [];
  const {
    code,
    stdout: out,
    stderr: err,
  } = await runBun([...args, "--spec", labPaths.spec, ...stack, "--yes", "--json"], {
    env: { KUBEADM_HA_SECRETS_DIR: labPaths.secretsDir },
  });
  if (code !== 0) throw new Error(`${args.join(" ")} exited ${code}:\n${err.slice(-4000)}`);
  return { seconds: (performance.now() - started) / 1000, data: JSON.parse(out).data };
}

interface Run {
  replaceCp: number;
  replaceCpTerraform: number;
  vipFailed: number;
  vipTotal: number;
  vipLastFailureMs: number;
  replaceWorker: number;
  recoverToApi: number;
  recoverCommand: number;
  regrow: number[];
  moveCp: number;
  moveCpTerraform: number;
  moveVipFailed: number;
  moveVipTotal: number;
  moveVipLastFailureMs: number;
}

/** cp-3 reinstalled at `address`: the lab moves the host, the spec and the stack follow (the user's edit). */
async function moveCp3(address: string) {
  await labBreakDisk("cp-3");
  await labReaddress("cp-3", address);
  const doc = parse(readFileSync(labPaths.spec, "utf8")) as { nodes: { name: string; address: string }[] };
  for (const n of doc.nodes) if (n.name === "cp-3") n.address = address;
  writeFileSync(labPaths.spec, stringify(doc));
  synthLab();
}

const results: Run[] = [];
try {
  for (let i = 0; i < runs; i++) {
    await applyLab();
    const poller = startPoller(LAB.vip, LAB.port);
    const faultAt = poller.now();
    await labBreakDisk("cp-2");
    const cp = await command(["scripts/node-replace.ts", "cp-2"]);
    const o = outage(await poller.stop(), faultAt);
    await labBreakDisk("worker-1");
    const w = await command(["scripts/node-replace.ts", "worker-1"]);
    await labBreakDisk("cp-2");
    await labBreakDisk("cp-3");
    const rec = await command(["scripts/etcd-recover.ts", "--from", "cp-1"]);
    const regrow = [
      (await command(["scripts/node-replace.ts", "cp-2"])).seconds,
      (await command(["scripts/node-replace.ts", "cp-3"])).seconds,
    ];
    const watch = startPoller(LAB.vip, LAB.port);
    const movedAt = watch.now();
    await moveCp3("198.18.0.14");
    const moved = await command(["scripts/node-replace.ts", "cp-3"]);
    const mo = outage(await watch.stop(), movedAt);
    const r: Run = {
      replaceCp: cp.seconds,
      replaceCpTerraform: Number(cp.data.terraformSeconds),
      vipFailed: o.failed,
      vipTotal: o.total,
      vipLastFailureMs: o.lastFailureAfterFaultMs,
      replaceWorker: w.seconds,
      recoverToApi: Number(rec.data.secondsToApi),
      recoverCommand: rec.seconds,
      regrow,
      moveCp: moved.seconds,
      moveCpTerraform: Number(moved.data.terraformSeconds),
      moveVipFailed: mo.failed,
      moveVipTotal: mo.total,
      moveVipLastFailureMs: mo.lastFailureAfterFaultMs,
    };
    results.push(r);
    process.stderr.write(`run ${i + 1}: ${JSON.stringify(r)}\n`);
  }
} finally {
  await labDown();
}

const f = (n: number) => n.toFixed(1);
if (values.json) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
else
  for (const [i, r] of results.entries())
    process.stdout.write(
      `run ${i + 1}: node:replace control plane ${f(r.replaceCp)} s (terraform ${f(r.replaceCpTerraform)} s), VIP ${r.vipFailed} of ${r.vipTotal} failed (last ${r.vipLastFailureMs} ms after the fault); node:replace worker ${f(r.replaceWorker)} s; etcd:recover to API ${f(r.recoverToApi)} s (command ${f(r.recoverCommand)} s); regrow ${r.regrow.map(f).join(" s + ")} s; node:replace at a new address ${f(r.moveCp)} s (terraform ${f(r.moveCpTerraform)} s), VIP ${r.moveVipFailed} of ${r.moveVipTotal} failed (last ${r.moveVipLastFailureMs} ms after the fault)\n`,
    );
