// trust-hosts against a loopback sshd: prints, writes only with --yes, never replaces without --replace.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { canRunSshd, type LoopbackSshd, startLoopbackSshd } from "../../lib/remote/loopback-sshd.ts";

const missing = canRunSshd();
if (missing && process.env.CI === "true") throw new Error(`trust-hosts tests need a real sshd: ${missing}`);
setDefaultTimeout(60_000);

describe.skipIf(Boolean(missing))("trust-hosts", () => {
  let a: LoopbackSshd;
  let b: LoopbackSshd;
  let spec: string;
  let known: string;
  beforeAll(async () => {
    a = await startLoopbackSshd();
    b = await startLoopbackSshd({ clientKeyPath: a.clientKeyPath });
    spec = join(a.dir, "cluster.yaml");
    known = join(a.dir, "state", "known_hosts");
    writeFileSync(
      spec,
      `name: t
kubernetes: { version: "1.31.4", packages: { source: preinstalled } }
allowNonHA: true
ssh: { user: root, port: ${a.port}, privateKeyPath: client_ed25519, knownHostsPath: state/known_hosts }
controlPlaneEndpoint: { vip: 127.0.0.100, interface: lo }
nodes:
  - { name: cp-1, address: 127.0.0.1, role: control-plane }
`,
    );
  });
  afterAll(async () => {
    await b?.stop();
    await a?.stop();
  });
  const run = (...args: string[]) =>
    spawnSync(`${process.cwd()}/node_modules/.bin/bun`, ["scripts/trust-hosts.ts", "--spec", spec, ...args], {
      encoding: "utf8",
    });
  const fp = (k: string) =>
    `SHA256:${new Bun.CryptoHasher("sha256")
      .update(Buffer.from(k.split(" ")[1]!, "base64"))
      .digest("base64")
      .replace(/=+$/, "")}`;

  test("without --yes: prints the fingerprint, writes nothing", () => {
    const r = run();
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(fp(a.hostKey));
    expect(r.stdout).toContain("new");
    expect(existsSync(known)).toBe(false);
  });

  test("--yes records the key (0600); the next run says known", () => {
    const r = run("--yes");
    expect(r.status).toBe(0);
    expect(readFileSync(known, "utf8")).toBe(`${a.knownHostsLine}\n`);
    expect(statSync(known).mode & 0o777).toBe(0o600);
    const j = JSON.parse(run("--json").stdout);
    expect(j).toMatchObject({
      ok: true,
      command: "trust-hosts",
      error: null,
      data: { knownHosts: known, written: false },
    });
    expect(j.data.hosts).toEqual([
      expect.objectContaining({ node: "cp-1", state: "known", fingerprint: fp(a.hostKey) }),
    ]);
  });

  test("a changed key is refused with --yes alone and replaced with --replace", () => {
    writeFileSync(known, `[127.0.0.1]:${a.port} ${b.hostKey}\n`, { mode: 0o600 });
    const r = run("--yes");
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("CHANGED");
    expect(readFileSync(known, "utf8")).toBe(`[127.0.0.1]:${a.port} ${b.hostKey}\n`);
    const ok = run("--yes", "--replace");
    expect(ok.status).toBe(0);
    expect(readFileSync(known, "utf8")).toBe(`${a.knownHostsLine}\n`);
  });
});
