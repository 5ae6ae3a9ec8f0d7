// `bun run bench`: the synth benchmark (no root needed); `bun run bench -- --lab` adds the lab
// benchmarks (root; each boots the lab hosts): load-balancer failover and etcd backup/restore.
// Each benchmark prints its own table; results are copied into README.md by hand.
import { parseCommand, runCommand } from "../lib/cli.ts";

await runCommand(async () => {
  const { values } = parseCommand({
    name: "bench",
    usage: "bun run bench [--lab]",
    description:
      "Runs bench/synth.ts (synth wall time, direct vs the cdktf CLI, 5 to 203 nodes; spec vs rendered lines). With --lab also test/bench/failover.ts (fault to last failed request through the VIP), test/bench/etcd-backup.ts (backup vs raw etcdctl + copy, restore time) and test/bench/heal.ts (node:replace, etcd:recover, failed requests through the VIP), which need root and take about 25 minutes.",
    options: { lab: { type: "boolean" } },
  });
  const benches = [["bench/synth.ts"]];
  if (values.lab) benches.push(["test/bench/failover.ts"], ["test/bench/etcd-backup.ts"], ["test/bench/heal.ts"]);
  for (const args of benches) {
    process.stderr.write(`== ${args.join(" ")}\n`);
    const p = Bun.spawn([process.execPath, ...args], { stdio: ["inherit", "inherit", "inherit"] });
    const code = await p.exited;
    if (code !== 0) return code;
  }
  return 0;
});
