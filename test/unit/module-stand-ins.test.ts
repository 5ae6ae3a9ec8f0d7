// The stand-ins main.ts gives cdktf (constructs/module-stand-ins.ts), against the real modules.
import { describe, expect, test } from "bun:test";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { MODULE_STAND_INS, stableStringify } from "../../constructs/module-stand-ins.ts";

const ROOT = resolve(import.meta.dir, "../..");
const cdktfRequire = createRequire(join(ROOT, "node_modules/cdktf/package.json"));
const realStringify = cdktfRequire("json-stable-stringify") as (v: unknown, o?: unknown) => string;

describe("json-stable-stringify stand-in", () => {
  class WithToJSON {
    toJSON() {
      return { b: 1, a: [undefined, () => 0] };
    }
  }
  const cases: [string, unknown][] = [
    ["nested objects and arrays", { z: { y: [1, { b: "x", a: null }], x: true }, a: -0.5, é: 'ü\u2028\n"' }],
    ["empty object and array", { a: {}, b: [], c: [{}], d: [[]] }],
    ["undefined and functions", { a: undefined, b: () => 1, c: [undefined, () => 1, Symbol("s")], d: 1 }],
    ["keys that look like numbers sort as text", { "10": 1, "2": 2, "1": 3, b: 4, B: 5, _: 6 }],
    ["toJSON", { when: new Date(0), obj: new WithToJSON() }],
    ["a terraform-like resource", { resource: { null_resource: { x: { triggers: { b: "${a}", a: "$${b}" } } } } }],
    ["top-level primitives", "text"],
    ["top-level null", null],
  ];
  for (const space of [2, "  ", "\t", 0, undefined])
    test.each(cases)(`%s (space ${JSON.stringify(space)})`, (_name, value) => {
      const opts = space === undefined ? undefined : { space };
      expect(stableStringify(value, opts)).toBe(realStringify(value, opts));
    });

  test("a circular object is refused, like the real one; a shared one is not circular", () => {
    const loop: Record<string, unknown> = { a: 1 };
    loop.self = loop;
    expect(() => realStringify(loop, { space: 2 })).toThrow(/circular/);
    expect(() => stableStringify(loop, { space: 2 })).toThrow(/circular/);
    const shared = { x: 1 };
    expect(stableStringify({ a: shared, b: [shared] }, { space: 2 })).toBe(
      realStringify({ a: shared, b: [shared] }, { space: 2 }),
    );
  });

  test("options the stand-in does not implement go to the real module", () => {
    const cmp = (a: { key: string }, b: { key: string }) => (a.key < b.key ? 1 : -1);
    expect(stableStringify({ a: 1, b: 2 }, { cmp } as never)).toBe(realStringify({ a: 1, b: 2 }, { cmp }));
    expect(stableStringify({ a: 1, b: 2 }, { cmp } as never)).toBe('{"b":2,"a":1}');
  });
});

describe("the plugin, as main.ts registers it before cdktf loads", () => {
  test("cdktf loads without archiver; semver loads on first use and works; archiver throws a clear error if called", () => {
    const script = `
      import { plugin } from "bun";
      import { MODULE_STAND_INS } from ${JSON.stringify(join(ROOT, "constructs/module-stand-ins.ts"))};
      plugin(MODULE_STAND_INS);
      require("cdktf");
      const loaded = (name) => Object.keys(require.cache).some((k) => k.includes("/node_modules/" + name + "/"));
      const before = { archiver: loaded("archiver"), semver: loaded("semver") };
      const semver = require("semver");
      const works = semver.satisfies("1.9.8", ">=1.4") && !semver.satisfies("1.3.0", ">=1.4");
      let error = "";
      try { require("archiver")("zip"); } catch (e) { error = e.message; }
      console.log(JSON.stringify({ before, works, semverLoaded: loaded("semver"), error }));`;
    const r = Bun.spawnSync([process.execPath, "-e", script], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    expect(r.stderr.toString()).toBe("");
    expect(JSON.parse(r.stdout.toString())).toEqual({
      before: { archiver: false, semver: false },
      works: true,
      semverLoaded: true,
      error: expect.stringContaining("archiver is not loaded in kubeadm-ha's synth"),
    });
    expect(MODULE_STAND_INS.name).toContain("stand-ins");
  });
});
