// The lab's choice of host OS without booting anything: where the Debian 13 root's mirror comes
// from (this machine's apt configuration, never a built-in host), its cache key, the OS switch.
import { describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { aptMirror, debian13RootDir, labOsFromEnv, ROOT_CACHE_DIR } from "../lab/debian-root.ts";

function aptDir(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "kha-apt-"));
  mkdirSync(join(dir, "sources.list.d"));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

describe("Debian 13 lab root: the mirror comes from this machine's apt configuration", () => {
  test("deb822: the main suite's first URI and its Signed-By keyring; disabled, -security and deb-src stanzas skipped", () => {
    const dir = aptDir({
      "sources.list.d/a.sources": [
        "Types: deb-src\nURIs: http://src.mirror.test/debian\nSuites: bookworm\nComponents: main\n",
        "Types: deb\nURIs: http://security.mirror.test/debian-security\nSuites: bookworm-security\n",
        "Types: deb\nEnabled: no\nURIs: http://off.mirror.test/debian\nSuites: bookworm\n",
        "Types: deb\n# URIs: http://commented.mirror.test/debian\nURIs: http://main.mirror.test/debian http://second.mirror.test/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
      ].join("\n"),
    });
    try {
      expect(aptMirror(dir)).toEqual({
        uri: "http://main.mirror.test/debian",
        keyring: "/usr/share/keyrings/debian-archive-keyring.gpg",
      });
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  test("one-line sources.list, with and without signed-by", () => {
    const dir = aptDir({
      "sources.list":
        "# deb http://old.mirror.test/debian bookworm main\ndeb http://security.mirror.test/debian-security bookworm-security main\ndeb [arch=amd64 signed-by=/etc/apt/keyrings/debian.gpg] http://main.mirror.test/debian bookworm main\n",
    });
    try {
      expect(aptMirror(dir)).toEqual({
        uri: "http://main.mirror.test/debian",
        keyring: "/etc/apt/keyrings/debian.gpg",
      });
      writeFileSync(join(dir, "sources.list"), "deb http://plain.mirror.test/debian bookworm main\n");
      expect(aptMirror(dir)).toEqual({ uri: "http://plain.mirror.test/debian", keyring: undefined });
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  test("no Debian archive configured: a clear error, no built-in fallback", () => {
    const dir = aptDir({ "sources.list": "deb http://security.mirror.test/debian-security bookworm-security main\n" });
    try {
      expect(() => aptMirror(dir)).toThrow(/no Debian archive found in .*sources.list.*mirror this machine's apt uses/);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });
});

describe("lab OS switch", () => {
  test("KHA_LAB_OS picks debian12 (default) or debian13; anything else is an error naming the choices", () => {
    expect(labOsFromEnv({})).toBe("debian12");
    expect(labOsFromEnv({ KHA_LAB_OS: "" })).toBe("debian12");
    expect(labOsFromEnv({ KHA_LAB_OS: "debian13" })).toBe("debian13");
    expect(() => labOsFromEnv({ KHA_LAB_OS: "ubuntu" })).toThrow(
      /KHA_LAB_OS is "ubuntu"; use one of debian12, debian13/,
    );
  });

  test("the cached root lives under the cache dir, keyed by its recipe", () => {
    expect(debian13RootDir()).toMatch(new RegExp(`^${ROOT_CACHE_DIR}/debian13-[0-9a-f]{12}$`));
  });

  test("lab up --os refuses an unknown OS (exit 2, naming the choices) and other verbs refuse --os", () => {
    const cli = (args: string[]) =>
      Bun.spawnSync([process.execPath, "test/lab/cli.ts", ...args], { cwd: join(import.meta.dir, "../..") });
    const bad = cli(["up", "--os", "debian11"]);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr.toString()).toContain('--os "debian11" is not a lab OS. Use one of: debian12, debian13');
    const status = cli(["status", "--os", "debian13"]);
    expect(status.exitCode).toBe(2);
    expect(status.stderr.toString()).toContain("--os applies to up only");
  });
});
