// Stand-ins for modules cdktf requires when it loads, registered by main.ts before cdktf loads
// (a Bun plugin): they make `bun run main.ts` about a third faster and change nothing it writes.
// - archiver (zip, for TerraformAsset, about half of cdktf's import): never used by this stack;
//   the stand-in throws if it is ever called.
// - semver (45 files): only a Terraform version check of some constructs calls it; loaded on first use.
// - json-stable-stringify (writes cdk.tf.json; with its helper packages ~10-30 ms to load, ~10 ms
//   to run): the same algorithm without them; calls with options other than `space` go to the real one.
// - cdktf's own tokens/private/stack-trace.js: every token, Lazy and intrinsic cdktf makes records
//   a full JS stack trace (Error.stackTraceLimit = MAX_SAFE_INTEGER), used only to say where a token
//   was made when it fails to resolve; about a tenth of a 200-worker synth. The stand-in records
//   none (KUBEADM_HA_DEBUG=1 keeps the real one, for such an error).
// test/unit/synth-output.test.ts checks that main.ts writes the same cdk.tf.json as cdktf's own
// modules, and test/unit/module-stand-ins.test.ts compares the stringify with the real one.
// No cdktf import here.

import { createRequire } from "node:module";
import { join } from "node:path";
import type { BunPlugin } from "bun";

// The real packages, by absolute path, resolved now: once the plugin is registered the bare
// names resolve to the stand-ins themselves.
const cdktfRequire = createRequire(join(import.meta.dir, "..", "node_modules", "cdktf", "package.json"));
const REAL: Record<string, string> = {
  semver: cdktfRequire.resolve("semver"),
  "json-stable-stringify": cdktfRequire.resolve("json-stable-stringify"),
};
const realPath = (name: string): string => REAL[name]!;

const unavailable = (name: string, why: string) => () => {
  throw new Error(`${name} is not loaded in kubeadm-ha's synth (${why}); see constructs/module-stand-ins.ts`);
};

/** A module loaded on the first access to any of its properties. */
function lazy(name: string): object {
  let real: Record<string | symbol, unknown> | undefined;
  const load = () => {
    real ??= cdktfRequire(realPath(name)) as Record<string | symbol, unknown>;
    return real;
  };
  return new Proxy({}, { get: (_t, key) => load()[key], has: (_t, key) => key in load() });
}

type StableStringify = (value: unknown, opts?: { space?: string | number } & Record<string, unknown>) => string;

/**
 * json-stable-stringify 1.3 (the version cdktf 0.21 pins), for the case cdktf uses: object keys
 * sorted by code unit, `space` indentation, toJSON honoured, undefined and functions left out of
 * objects and null in arrays, a circular object refused, empty objects printed open ("{\n}").
 */
export const stableStringify: StableStringify = (value, opts) => {
  if (typeof opts === "function" || (opts && Object.keys(opts).some((k) => k !== "space")))
    return (cdktfRequire(realPath("json-stable-stringify")) as StableStringify)(value, opts);
  const space = typeof opts?.space === "number" ? " ".repeat(opts.space) : (opts?.space ?? "");
  const seen: object[] = [];
  const visit = (input: unknown, level: number): string | undefined => {
    const indent = space ? `\n${space.repeat(level)}` : "";
    let node = input;
    if (node && typeof (node as { toJSON?: unknown }).toJSON === "function")
      node = (node as { toJSON: () => unknown }).toJSON();
    if (node === undefined) return undefined;
    if (typeof node !== "object" || node === null) return JSON.stringify(node);
    if (Array.isArray(node)) {
      const out: string[] = [];
      for (const item of node) out.push(indent + space + (visit(item, level + 1) || "null"));
      return `[${out.join(",")}${indent}]`;
    }
    if (seen.includes(node)) throw new TypeError("Converting circular structure to JSON");
    seen.push(node);
    const out: string[] = [];
    for (const key of Object.keys(node).sort()) {
      const v = visit((node as Record<string, unknown>)[key], level + 1);
      if (v) out.push(`${indent}${space}${JSON.stringify(key)}${space ? ": " : ":"}${v}`);
    }
    seen.splice(seen.indexOf(node), 1);
    return `{${out.join(",")}${indent}}`;
  };
  return visit(value, 0) as string;
};

// __esModule + default: require(name) returns `default` itself, as with the real CommonJS modules.
const commonJs = (value: unknown) => ({ loader: "object" as const, exports: { __esModule: true, default: value } });

/** cdktf's stack-trace module, recording nothing (see the top of this file). */
export const NO_STACK_TRACE = { __esModule: true, captureStackTrace: (): string[] => [] };

export const MODULE_STAND_INS: BunPlugin = {
  name: "kubeadm-ha synth module stand-ins",
  setup(build) {
    if (!process.env.KUBEADM_HA_DEBUG)
      build.onLoad({ filter: /[\\/]cdktf[\\/]lib[\\/]tokens[\\/]private[\\/]stack-trace\.js$/ }, () => ({
        loader: "object",
        exports: NO_STACK_TRACE,
      }));
    build.module("archiver", () => commonJs(unavailable("archiver", "the stack has no TerraformAsset to zip")));
    build.module("semver", () => commonJs(lazy("semver")));
    build.module("json-stable-stringify", () => commonJs(stableStringify));
  },
};
