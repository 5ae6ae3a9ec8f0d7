// Soak: poll https://VIP:8443/healthz every 50 ms for --minutes (default 10) with no fault and
// count VIP moves (flaps) and failed requests. Not part of CI; a benchmark run on the lab.
//
//   bun bench/soak.ts [--minutes 10] [--variant defaults|tuned] [--keep]
import { parseArgs } from "node:util";
import { synthLab } from "../e2e/apply.ts";
import {
  applyLoadBalancers,
  CONTROL_PLANES,
  ensureAppliedLab,
  PORT,
  restoreAll,
  VIP,
  vipHolders,
} from "../e2e/failover-lab.ts";
import { outage, startPoller } from "../e2e/poller.ts";
import { labDown, labExec } from "../lab/lab.ts";
import { sleep } from "../lab/sys.ts";
import { MUTATE, TRACK_PROCESS_EDIT } from "./lb-variants.ts";

const { values: args } = parseArgs({
  options: {
    minutes: { type: "string", default: "10" },
    variant: { type: "string", default: "defaults" },
    keep: { type: "boolean", default: !!process.env.KHA_KEEP_LAB },
  },
});
const say = (msg: string) => process.stderr.write(`[soak] ${msg}\n`);
await ensureAppliedLab();
const variant = String(args.variant);
synthLab(MUTATE[variant]);
const ap = await applyLoadBalancers();
if (ap.code !== 0) throw new Error(`apply failed:\n${ap.out.slice(-3000)}`);
if (variant === "candidate")
  for (const h of CONTROL_PLANES) {
    const r = await labExec(h, TRACK_PROCESS_EDIT);
    if (r.code !== 0) throw new Error(`track_process edit on ${h}: ${r.stderr}${r.stdout}`);
  }
const durationMs = Number(args.minutes) * 60_000;
say(`${variant}: polling for ${args.minutes} min`);
const p = startPoller(VIP, PORT);
const started = performance.now();
let last = (await vipHolders()).join(",");
let moves = 0;
const seen: string[] = [last];
try {
  while (performance.now() - started < durationMs) {
    await sleep(200);
    const now = (await vipHolders()).join(",");
    if (now !== last) {
      moves++;
      seen.push(now || "(none)");
      say(`VIP: ${last || "(none)"} -> ${now || "(none)"} at ${((performance.now() - started) / 1000).toFixed(1)} s`);
      last = now;
    }
  }
} finally {
  const samples = await p.stop();
  const o = outage(samples, 0);
  process.stdout.write(
    `| soak (${variant}) | ${args.minutes} min | ${o.total} requests | ${o.failed} failed | ${moves} VIP moves (${seen.join(" -> ")}) |\n`,
  );
  await restoreAll();
  if (variant !== "defaults") {
    synthLab();
    await applyLoadBalancers();
  }
  if (!args.keep) await labDown();
}
