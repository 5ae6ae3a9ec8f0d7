// known_hosts handling checked against files that OpenSSH's own ssh-keygen writes (plain and hashed).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fingerprint, hostKeyFor, isPinnableHostKey, knownHostsMatches } from "../../lib/remote/known-hosts.ts";

let dir: string;
let key1: string[]; // [type, base64]
let key2: string[];
let plain: string;
let hashed: string;

const sh = (cmd: string[]) => {
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${r.stderr.toString()}`);
  return r.stdout.toString();
};

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "kh-"));
  for (const k of ["k1", "k2"]) sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", join(dir, k)]);
  key1 = readFileSync(join(dir, "k1.pub"), "utf8").split(" ").slice(0, 2);
  key2 = readFileSync(join(dir, "k2.pub"), "utf8").split(" ").slice(0, 2);
  plain = `# comment\n10.0.0.1,cp-1 ${key1.join(" ")}\n[10.0.0.2]:2222 ${key2.join(" ")}\n`;
  writeFileSync(join(dir, "known_hosts"), plain);
  sh(["ssh-keygen", "-H", "-f", join(dir, "known_hosts")]);
  hashed = readFileSync(join(dir, "known_hosts"), "utf8");
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("known_hosts", () => {
  test("plain and hashed entries give the same keys", () => {
    for (const text of [plain, hashed]) {
      expect(hostKeyFor(text, "10.0.0.1")).toBe(key1.join(" "));
      expect(hostKeyFor(text, "10.0.0.2", 2222)).toBe(key2.join(" "));
      // port matters: the 2222 entry does not vouch for port 22
      expect(hostKeyFor(text, "10.0.0.2")).toBeUndefined();
      expect(hostKeyFor(text, "10.0.0.3")).toBeUndefined();
    }
    expect(hashed).not.toContain("10.0.0.1");
  });

  test("verdicts: match, mismatch for another key, unknown host", () => {
    const [t1, b1] = key1 as [string, string];
    const [, b2] = key2 as [string, string];
    for (const text of [plain, hashed]) {
      expect(knownHostsMatches(text, "10.0.0.1", 22, t1, b1)).toBe("match");
      expect(knownHostsMatches(text, "10.0.0.1", 22, t1, b2)).toBe("mismatch");
      expect(knownHostsMatches(text, "10.9.9.9", 22, t1, b1)).toBe("unknown");
    }
  });

  test("a @revoked key is a mismatch even when also listed as trusted", () => {
    const [t1, b1] = key1 as [string, string];
    const text = `${plain}@revoked * ${key1.join(" ")}\n`;
    expect(knownHostsMatches(text, "10.0.0.1", 22, t1, b1)).toBe("mismatch");
  });

  test("fingerprint equals ssh-keygen -l", () => {
    const out = sh(["ssh-keygen", "-lf", join(dir, "k1.pub")]);
    expect(out).toContain(fingerprint(key1[1] as string));
  });

  test("host_key values: every key type ssh-keygen makes passes; empty and malformed ones fail", () => {
    for (const [type, bits] of [
      ["ed25519", ""],
      ["ecdsa", "256"],
      ["ecdsa", "384"],
      ["ecdsa", "521"],
      ["rsa", "2048"],
    ]) {
      const f = join(dir, `t-${type}${bits}`);
      sh(["ssh-keygen", "-q", "-t", type!, ...(bits ? ["-b", bits] : []), "-N", "", "-f", f]);
      const key = readFileSync(`${f}.pub`, "utf8").split(" ").slice(0, 2).join(" ");
      expect(isPinnableHostKey(key)).toBe(true);
    }
    const [t1, b1] = key1 as [string, string];
    for (const bad of [
      "",
      " ",
      t1,
      `${t1} AAAAtest`,
      `${t1}  ${b1}`,
      `cp-1 ${t1} ${b1}`,
      `ssh-rsa ${b1}`,
      `${t1} ${b1.slice(0, -4)}`,
      `${t1} ${b1}\n${t1} ${b1}`,
    ])
      expect([bad, isPinnableHostKey(bad)]).toEqual([bad, false]);
  });
});
