// bun run trust-hosts [--spec FILE] [--yes [--replace]] [--json]: first contact with the hosts, made explicit.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { defineCommand, JSON_FLAG, progress, runCommand, SPEC_FLAG } from "../lib/cli.ts";
import { UserError } from "../lib/errors.ts";
import { hostProblems } from "../lib/ops/connect.ts";
import { fingerprint, knownHostsLine, knownHostsMatches, knownHostsName } from "../lib/remote/known-hosts.ts";
import { connectBastion, connectNode, knownHostsPath, type PresentedHostKey } from "../lib/remote/ssh.ts";

interface Row {
  host: string;
  port: number;
  node: string;
  keyType: string;
  fingerprint: string;
  state: "known" | "new" | "changed" | "unreachable";
  written: boolean;
  error?: string;
  line?: string;
}

const command = defineCommand({
  name: "trust-hosts",
  usage: "bun run trust-hosts [--spec FILE] [--yes [--replace]] [--json]",
  description:
    "First contact with the hosts, made explicit: connects to every node (and the bastion) and prints the SHA256 fingerprint of each host key, marked known, new or CHANGED against the spec's ssh.knownHostsPath. Compare them with the hosts' consoles (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) before you pass --yes. Without --yes nothing is written; a key that differs from the recorded one is never replaced unless --replace is given too. Every other command refuses hosts whose key is not in known_hosts. Changes no host; --yes writes the local known_hosts file.",
  options: {
    ...SPEC_FLAG,
    yes: { type: "boolean", description: "write the new keys to known_hosts (after you compared the fingerprints)" },
    replace: {
      type: "boolean",
      description: "with --yes: also replace a recorded key that CHANGED (reinstalled host)",
    },
    ...JSON_FLAG,
  },
  spec: "hosts",
  exits: {
    0: "every host answered (and, with --yes, its key is recorded)",
    1: "a host could not be reached",
    2: "bad input, or a CHANGED key without --replace (nothing written)",
  },
  jsonData:
    "{knownHosts, written, hosts: [{node, host, port, keyType, fingerprint, state: known|new|changed|unreachable, written, error?}]}",
  examples: ["bun run trust-hosts --spec cluster.yaml", "bun run trust-hosts --spec cluster.yaml --yes"],
});

await runCommand(command, async (cli) => {
  const { values } = cli;
  const spec = cli.spec();
  const path = knownHostsPath(spec);
  const existing = existsSync(path) ? readFileSync(path, "utf8") : "";
  const rows: Row[] = [];
  const record = (node: string) => (k: PresentedHostKey) => {
    if (rows.some((r) => r.host === k.host && r.port === k.port)) return;
    const verdict = knownHostsMatches(existing, k.host, k.port, k.keyType, k.keyBase64);
    rows.push({
      host: k.host,
      port: k.port,
      node,
      keyType: k.keyType,
      fingerprint: fingerprint(k.keyBase64),
      state: verdict === "match" ? "known" : verdict === "mismatch" ? "changed" : "new",
      written: false,
      line: knownHostsLine(k.host, k.port, k.keyType, k.keyBase64),
    });
  };
  // Collect keys without trusting anything: every key is presented as unknown and only recorded here.
  const probe = { knownHostsText: "", acceptUnknownHostKey: true };
  if (spec.ssh.bastion) {
    try {
      (await connectBastion(spec, { ...probe, onHostKey: record("bastion") }))?.close();
    } catch (e) {
      rows.push({
        host: spec.ssh.bastion.host,
        port: spec.ssh.bastion.port,
        node: "bastion",
        keyType: "",
        fingerprint: "",
        state: "unreachable",
        written: false,
        error: (e as Error).message,
      });
    }
  }
  for (const node of spec.nodes) {
    try {
      progress(node.name, "ssh", "reading host key");
      const r = await connectNode(spec, node, { ...probe, onHostKey: record(node.name) });
      r.close();
    } catch (e) {
      const host = node.ssh?.host ?? node.address;
      if (!rows.some((r) => r.node === node.name))
        rows.push({
          host,
          port: node.ssh?.port ?? spec.ssh.port,
          node: node.name,
          keyType: "",
          fingerprint: "",
          state: "unreachable",
          written: false,
          error: (e as Error).message,
        });
    }
  }
  const changed = rows.filter((r) => r.state === "changed");
  if (values.yes) {
    if (changed.length && !values.replace) {
      throw new UserError(
        `host key CHANGED for ${changed.map((r) => `${r.node} (${r.host}:${r.port}, now ${r.fingerprint})`).join(", ")}; nothing was written. If the host was reinstalled and the new fingerprint matches its console, run again with --yes --replace.`,
      );
    }
    let lines = existing.split("\n").filter((l) => l.trim() !== "");
    for (const r of rows) {
      if (r.state === "known" || r.state === "unreachable" || !r.line) continue;
      if (r.state === "changed") {
        // Drop the old plain entries for this name; hashed ones cannot be edited by name, so they are reported.
        const name = knownHostsName(r.host, r.port);
        lines = lines.filter((l) => !l.split(/\s+/)[0]!.split(",").includes(name));
      }
      lines.push(r.line);
      r.written = true;
    }
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    writeFileSync(path, `${lines.join("\n")}\n`, { mode: 0o600 });
    const still = readFileSync(path, "utf8");
    for (const r of rows.filter((x) => x.written)) {
      const ok = knownHostsMatches(still, r.host, r.port, r.keyType, r.line!.split(" ")[2]!) === "match";
      if (!ok)
        throw new UserError(
          `${path}: ${r.host}:${r.port} still has another key after writing (a hashed |1| entry?). Remove it with ssh-keygen -R '${knownHostsName(r.host, r.port)}' -f ${path} and run again.`,
        );
    }
  }
  const hosts = rows.map(({ line: _line, ...r }) => r);
  const unreachable = rows.filter((r) => r.state === "unreachable");
  // The same connection problem on many hosts is one paragraph naming them.
  const problems = hostProblems(unreachable.map((r) => ({ host: r.node, error: r.error, aliases: [r.host] }))).text;
  if (!cli.json) {
    for (const r of rows) {
      const what =
        r.state === "unreachable"
          ? "UNREACHABLE (below)"
          : `${r.keyType} ${r.fingerprint}  ${r.state === "changed" ? "CHANGED" : r.state}${r.written ? " (written)" : ""}`;
      process.stdout.write(`${r.node.padEnd(12)} ${`${r.host}:${r.port}`.padEnd(22)} ${what}\n`);
    }
    if (problems) process.stdout.write(`\n${problems}\n`);
    if (!values.yes && rows.some((r) => r.state === "new" || r.state === "changed")) {
      process.stdout.write(
        `\nNothing written. Check the fingerprints on the hosts' consoles, then run again with --yes to record them in ${path}.\n`,
      );
    }
  }
  return {
    code: unreachable.length ? 1 : 0,
    data: { knownHosts: path, written: rows.some((r) => r.written), hosts },
    error: unreachable.length ? `cannot reach ${unreachable.map((r) => r.node).join(", ")}:\n\n${problems}` : undefined,
  };
});
