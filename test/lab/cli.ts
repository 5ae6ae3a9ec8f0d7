// `bun test/lab/cli.ts up|down|status [--json]|env|break NODE --disk [--new-address ADDR]|etcdctl -- ARGS`: the lab's test hosts on this machine.
import { existsSync } from "node:fs";
import { defineCommand, JSON_FLAG, progress, runCommand } from "../../lib/cli.ts";
import { UserError } from "../../lib/errors.ts";
import { applyLab } from "../e2e/apply.ts";
import { isLabOs, LAB_OSES, type LabOs } from "./debian-root.ts";
import {
  etcdctlArgv,
  isLabLb,
  LAB,
  LAB_LBS,
  LabBusy,
  LabUnavailable,
  labAddressProblem,
  labBreakDisk,
  labDown,
  labMissing,
  labNodes,
  labPaths,
  labReaddress,
  labStatus,
  labStatusData,
  labTargetHint,
  labUp,
  specExport,
} from "./lab.ts";

const VERBS = ["up", "down", "status", "env", "break", "etcdctl"] as const;

function count(flag: string, value: string | undefined, fallback: number, max: number, min: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max) {
    throw new UserError(
      `--${flag}: "${value}" is not a whole number from ${min} to ${max}. Pass e.g. --${flag} ${fallback}.`,
    );
  }
  return n;
}

function needLab(os?: LabOs): void {
  const missing = labMissing(os);
  if (missing) throw new UserError(`the lab cannot run here: ${missing}.`, 1);
}

const command = defineCommand({
  name: "lab",
  usage:
    "bun test/lab/cli.ts up [--os debian12|debian13] [--lb keepalived-haproxy|static-pod] [--control-planes N] [--workers N] | down [--force] | status [--json] | env | break NODE --disk [--new-address ADDR] | etcdctl -- ARGS",
  description:
    "Test hosts on this machine (root only): systemd-nspawn containers booted on an overlay of /, each in its own " +
    "network namespace on the bridge kha-br0 (198.18.0.0/24; this machine is 198.18.0.1, the VIP 198.18.0.10). " +
    "`up` boots new hosts cp-1..cp-3 (198.18.0.11-13) and worker-1 (198.18.0.21), writes the lab spec, SSH key and " +
    `known_hosts to ${labPaths.stateDir} (the spec logs in as ${LAB.user}, a sudo user; root logs in by key for the lab's own use), then applies the lab spec end to end with terraform (keepalived, haproxy, ` +
    "kubeadm init/joins through the kubeadm stand-in, which grows a three-member TLS etcd and starts an apiserver " +
    "stand-in on each control plane) and prints the VIP. `up --hosts-only` boots hosts with etcd and the apiserver " +
    "stand-in already running and applies nothing (does nothing if such a lab is up). `up --os debian13` boots " +
    "the hosts from a Debian 13 root (haproxy 3.0, keepalived 2.3, etcd 3.5 with etcdutl) that debootstrap builds once " +
    "from this machine's apt mirror and caches under /var/cache/kubeadm-ha-lab; the default, debian12, is this machine's " +
    "own root (KHA_LAB_OS sets the default too). `up --lb static-pod` (or KHA_LAB_LB) writes a lab spec with loadBalancer.mode " +
    "static-pod: keepalived and haproxy run from manifests the kubelet stand-in starts (the host's binaries). A test that brought the lab up holds it until it ends; `up` and `down` refuse " +
    "while it does (`down --force` does not). `down` removes every host, namespace, mount, cgroup and the state dir, also what a " +
    "crashed run left. `status` shows each host's SSH, etcd and VIP state and the lab spec. `env` prints `export CLUSTER_SPEC=<the lab spec>` for `eval \"$(bun run lab env)\"`, after which every command targets the lab. `break NODE --disk` destroys a host's disk " +
    "as a reinstall would: the host keeps answering SSH, but its kubelet stand-in, etcd, keepalived and haproxy are stopped " +
    "and its etcd data, /etc/kubernetes and kubeadm-ha's state (/etc/kubeadm-ha, /var/lib/kubeadm-ha) deleted; with " +
    "`--new-address ADDR` (198.18.0.2-254, free) the reinstalled host also comes back at a new address: its eth0, the lab state, the hosts' " +
    "/etc/hosts and known_hosts (the same host key) follow, and a control plane's join certificates are made for it; edit the lab spec's address and synthesize, then node:replace. `etcdctl -- ARGS` runs etcdctl against " +
    "the lab's etcd with its client certificate.",
  options: {
    ...JSON_FLAG,
    "control-planes": { type: "string", value: "N", description: "up --hosts-only: control planes (1-9, default 3)" },
    workers: { type: "string", value: "N", description: "up --hosts-only: workers (0-9, default 1)" },
    force: { type: "boolean", description: "down: also while a test holds the lab" },
    "hosts-only": { type: "boolean", description: "up: boot the hosts with etcd running, apply nothing" },
    os: { type: "string", value: "OS", description: "up: debian12 (default, this machine's root) or debian13" },
    lb: {
      type: "string",
      value: "MODE",
      description: "up: loadBalancer.mode of the lab spec, keepalived-haproxy (default, KHA_LAB_LB) or static-pod",
    },
    disk: {
      type: "boolean",
      description: "break: destroy the node's disk (etcd data, /etc/kubernetes, kubeadm-ha state)",
    },
    "new-address": {
      type: "string",
      value: "ADDR",
      description: "break --disk: the reinstalled host comes back at this lab address (e.g. 198.18.0.14)",
    },
  },
  positionals: [
    { name: "COMMAND", description: "up, down, status, env, break or etcdctl" },
    { name: "ARGS", description: "break: the NODE; etcdctl: its arguments, after --" },
  ],
  allowPositionals: true,
  exits: { 0: "done", 1: "the lab cannot run here, is busy, or the command failed", 2: "bad usage" },
  jsonData: "status: {spec, vip, port, os, hosts: [{name, address, netns, vipHolder, sshOk, etcdHealthy}]}",
  examples: [
    "bun run lab up",
    'eval "$(bun run lab env)"   # then: bun run verify',
    "bun run lab status --json",
    "bun run lab etcdctl -- member list -w table",
    "bun run lab break cp-2 --disk",
    "bun run lab break cp-3 --disk --new-address 198.18.0.14",
  ],
});

await runCommand(command, async ({ values, positionals }) => {
  const verb = positionals[0];
  if (!verb || !(VERBS as readonly string[]).includes(verb)) {
    throw new UserError(
      `lab: ${verb ? `unknown command "${verb}"` : "no command given"}. Use one of: ${VERBS.join(", ")} (see --help).`,
    );
  }
  if (verb === "break") {
    if (positionals.length !== 2 || !values.disk)
      throw new UserError("lab break: name one host and what to break, e.g. `bun test/lab/cli.ts break cp-2 --disk`.");
  } else if (values.disk) throw new UserError(`lab ${verb}: --disk applies to break only.`);
  if (values["new-address"] !== undefined && verb !== "break")
    throw new UserError(`lab ${verb}: --new-address applies to break --disk only.`);
  if (verb !== "etcdctl" && verb !== "break" && positionals.length > 1) {
    throw new UserError(
      `lab ${verb}: unexpected argument "${positionals[1]}". Only etcdctl takes arguments (after --).`,
    );
  }
  if (values.json && verb !== "status") throw new UserError(`lab ${verb}: --json applies to status only.`);
  if (values["hosts-only"] && verb !== "up") throw new UserError(`lab ${verb}: --hosts-only applies to up only.`);
  if (values.os !== undefined && verb !== "up") throw new UserError(`lab ${verb}: --os applies to up only.`);
  if (values.lb !== undefined && verb !== "up") throw new UserError(`lab ${verb}: --lb applies to up only.`);
  if (values.force && verb !== "down") throw new UserError(`lab ${verb}: --force applies to down only.`);
  if ((values["control-planes"] !== undefined || values.workers !== undefined) && verb !== "up") {
    throw new UserError(`lab ${verb}: --control-planes and --workers apply to up only.`);
  }

  switch (verb) {
    case "up": {
      const controlPlanes = count("control-planes", values["control-planes"], 3, 9, 1);
      const workers = count("workers", values.workers, 1, 9, 0);
      labNodes({ controlPlanes, workers });
      const os = values.os ?? (process.env.KHA_LAB_OS?.trim() || "debian12");
      if (!isLabOs(os))
        throw new UserError(
          `lab up: --os "${os}" is not a lab OS. Use one of: ${LAB_OSES.join(", ")} (default debian12).`,
        );
      const lb = values.lb ?? (process.env.KHA_LAB_LB?.trim() || "keepalived-haproxy");
      if (!isLabLb(lb))
        throw new UserError(
          `lab up: --lb "${lb}" is not a load-balancer mode the lab runs. Use one of: ${LAB_LBS.join(", ")} (default keepalived-haproxy; kube-vip is proven by rendering tests only).`,
        );
      needLab(os);
      try {
        if (!values["hosts-only"]) {
          if (controlPlanes !== 3 || workers !== 1)
            throw new UserError(
              "lab up: the end-to-end apply uses the default 3 control planes + 1 worker; add --hosts-only for other sizes.",
            );
          const apply = await applyLab({ log: true, os, lb });
          process.stdout.write(
            `lab up and applied in ${apply.seconds.toFixed(1)} s (terraform apply)\nspec: ${labPaths.spec}\n` +
              `VIP: https://${LAB.vip}:${LAB.port}/healthz (from this machine; e.g. curl -k https://${LAB.vip}:${LAB.port}/healthz)\n` +
              `${labTargetHint()}\n`,
          );
          return 0;
        }
        const r = await labUp({ controlPlanes, workers, log: progress, waitMs: 0, os, lb });
        process.stdout.write(
          `lab ${r.alreadyUp ? "was already up" : "up"}: ${r.nodes.length} ${r.os} hosts, SSH ready in ${r.sshReadySeconds.toFixed(1)} s, ` +
            `total ${r.seconds.toFixed(1)} s\nspec: ${labPaths.spec}\n${labTargetHint()}\n`,
        );
      } catch (e) {
        if (e instanceof LabUnavailable || e instanceof LabBusy) throw new UserError(`${e.message}.`, 1);
        throw e;
      }
      return 0;
    }
    case "down": {
      needLab();
      const r = await labDown({ log: progress, force: values.force, waitMs: 0 }).catch((e) => {
        throw e instanceof LabBusy ? new UserError(`${e.message}.`, 1) : e;
      });
      process.stdout.write(`lab down in ${r.seconds.toFixed(1)} s; nothing left behind\n`);
      return 0;
    }
    case "status": {
      needLab();
      const st = await labStatus();
      if (values.json) return { data: labStatusData(st) };
      if (st.hosts.length === 0) {
        process.stdout.write("lab is down (run: bun test/lab/cli.ts up)\n");
        return 0;
      }
      const yes = (b: boolean) => (b ? "yes" : "no");
      const rows = [["NAME", "ADDRESS", "NETNS", "VIP", "SSH", "ETCD"]].concat(
        st.hosts.map((h) => [h.name, h.address, h.netns, yes(h.vipHolder), yes(h.sshOk), yes(h.etcdHealthy)]),
      );
      const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
      for (const r of rows)
        process.stdout.write(
          `${r
            .map((c, i) => c.padEnd(widths[i]!))
            .join("  ")
            .trimEnd()}\n`,
        );
      process.stdout.write(`VIP ${st.vip}:${st.port}; ${st.os} hosts; spec ${labPaths.spec}\n`);
      return 0;
    }
    case "env": {
      // Only the export on stdout, so that eval "$(bun run lab env)" works; the rest on stderr.
      if (!existsSync(labPaths.spec))
        process.stderr.write(`note: ${labPaths.spec} does not exist yet; run \`bun run lab up\` first.\n`);
      process.stdout.write(`${specExport()}\n`);
      return 0;
    }
    case "break": {
      needLab();
      const host = positionals[1]!;
      const st = await labStatus();
      if (!st.hosts.some((h) => h.name === host))
        throw new UserError(
          `lab break: no lab host "${host}" is up (hosts: ${st.hosts.map((h) => h.name).join(", ") || "none; run up first"}).`,
        );
      const moveTo = values["new-address"];
      const problem = moveTo === undefined ? undefined : labAddressProblem(host, moveTo, st.hosts);
      if (problem) throw new UserError(`lab break ${host} --new-address: ${problem}.`);
      await labBreakDisk(host);
      if (moveTo !== undefined) await labReaddress(host, moveTo);
      process.stdout.write(
        `${host}: disk destroyed (host up, SSH answers; etcd data, /etc/kubernetes and kubeadm-ha state gone)${moveTo ? `; now at ${moveTo}: set its address in the lab spec, bun run synth, then node:replace ${host}` : ""}\n`,
      );
      return 0;
    }
    case "etcdctl": {
      needLab();
      const st = await labStatus();
      if (!st.hosts.some((h) => h.etcdHealthy || h.sshOk)) {
        throw new UserError("lab etcdctl: the lab is not up. Run `bun test/lab/cli.ts up` first.", 1);
      }
      const args = positionals.slice(1);
      if (args.length === 0)
        throw new UserError("lab etcdctl: give etcdctl arguments after --, e.g. `etcdctl -- member list -w table`.");
      const argv = etcdctlArgv(args);
      const proc = Bun.spawn(argv, {
        stdio: ["inherit", "inherit", "inherit"],
        env: { ...process.env, ETCDCTL_API: "3" },
      });
      return await proc.exited;
    }
  }
});
