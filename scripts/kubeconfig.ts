// bun run kubeconfig: the admin kubeconfig, pointed at the VIP, written 0600; see lib/ops/kubeconfig.ts.
import { resolve } from "node:path";
import { defineCommand, JSON_FLAG, progress, runCommand, SPEC_FLAG } from "../lib/cli.ts";
import { defaultKubeconfigPath, fetchAdminConf, pointAtVip, writeKubeconfig } from "../lib/ops/kubeconfig.ts";

const command = defineCommand({
  name: "kubeconfig",
  usage: "bun run kubeconfig [--spec FILE] [--out FILE] [--force] [--json]",
  description:
    "Fetches /etc/kubernetes/admin.conf from the first control plane that answers (in spec order, over SSH with sudo), points every cluster's server at https://VIP:port, and writes it with mode 0600 to --out (default <spec dir>/.kubeadm-ha/<cluster>.kubeconfig). Prints the path; the file's content (it holds the admin's client key) is never printed. Changes no host; an existing local file with other content is left alone unless --force.",
  options: {
    ...SPEC_FLAG,
    out: {
      type: "string",
      value: "FILE",
      description: "where to write it (default <spec dir>/.kubeadm-ha/<cluster>.kubeconfig)",
    },
    force: { type: "boolean", description: "replace an existing file with other content" },
    ...JSON_FLAG,
  },
  spec: "hosts",
  exits: {
    0: "written, replaced or unchanged",
    1: "no control plane gave the file",
    2: "bad input, or an existing different file without --force",
  },
  jsonData: "{file, outcome: written|unchanged|replaced, from, server}",
  examples: [
    "bun run kubeconfig --spec cluster.yaml",
    "bun run kubeconfig --spec cluster.yaml --out ~/.kube/config --force",
  ],
});

await runCommand(command, async (cli) => {
  const spec = cli.spec();
  const out = cli.values.out ? resolve(cli.values.out) : defaultKubeconfigPath(spec);
  const fetched = await fetchAdminConf(spec);
  const outcome = writeKubeconfig(
    out,
    pointAtVip(fetched.content, spec, `${fetched.from}:/etc/kubernetes/admin.conf`),
    cli.values.force,
  );
  const server = `https://${spec.controlPlaneEndpoint.vip}:${spec.controlPlaneEndpoint.port}`;
  progress("kubeconfig", "done", `${outcome} (from ${fetched.from}, server ${server})`);
  if (!cli.json) process.stdout.write(`${out}\n`);
  return { data: { file: out, outcome, from: fetched.from, server } };
});
