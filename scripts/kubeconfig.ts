// bun run kubeconfig: the admin kubeconfig, pointed at the VIP, written 0600; see lib/ops/kubeconfig.ts.
import { resolve } from "node:path";
import { parseCommand, progress, runCommand } from "../lib/cli.ts";
import { defaultKubeconfigPath, fetchAdminConf, pointAtVip, writeKubeconfig } from "../lib/ops/kubeconfig.ts";
import { loadSpec, specPath } from "../lib/spec/load.ts";

await runCommand(async () => {
  const { values, positionals } = parseCommand({
    name: "kubeconfig",
    usage: "bun run kubeconfig [--out FILE] [--force] [SPEC]",
    description:
      "Fetches /etc/kubernetes/admin.conf from the first control plane that answers (in spec order, over SSH with sudo), points every cluster's server at https://VIP:port, and writes it with mode 0600 to --out (default <spec dir>/.kubeadm-ha/<cluster>.kubeconfig). An existing file with other content is left alone unless --force. Prints the path; the file's content (it holds the admin's client key) is never printed. Exit 0 written or unchanged, 1 no control plane gave the file, 2 bad input or a different existing file.",
    options: { out: { type: "string" }, force: { type: "boolean" } },
    allowPositionals: true,
  });
  const spec = loadSpec(specPath(positionals[0]));
  const out = values.out ? resolve(values.out) : defaultKubeconfigPath(spec);
  const fetched = await fetchAdminConf(spec);
  const outcome = writeKubeconfig(
    out,
    pointAtVip(fetched.content, spec, `${fetched.from}:/etc/kubernetes/admin.conf`),
    values.force,
  );
  progress(
    "kubeconfig",
    "done",
    `${outcome} (from ${fetched.from}, server https://${spec.controlPlaneEndpoint.vip}:${spec.controlPlaneEndpoint.port})`,
  );
  process.stdout.write(`${out}\n`);
  return 0;
});
