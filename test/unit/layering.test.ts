// The import rules, checked on the import graph of every TypeScript file in the repository
// (parsed from the sources, type-only imports included; no bundler):
// - renderers (lib/render, lib/spec) never reach the remote layer (lib/remote, ssh2), even
//   through another module;
// - nothing outside test/ imports test/;
// - cdktf (and its constructs and provider packages) is imported only in constructs/ and main.ts;
// - main.ts loads cdktf only through its dynamic import (so its module stand-ins are registered
//   first) and synth loads no SSH code.
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "../..");
const SKIP_DIRS = new Set(["node_modules", "out", "cdktf.out", ".kubeadm-ha", ".git", ".tf", "tmp"]);

/** Every .ts file of the repository: path relative to ROOT -> text. */
function repositorySources(): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (dir: string) => {
    for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
      const rel = dir ? `${dir}/${e.name}` : e.name;
      if (e.isDirectory()) {
        if (!SKIP_DIRS.has(e.name)) walk(rel);
      } else if (e.name.endsWith(".ts") && !e.name.endsWith(".d.ts")) {
        out.set(rel, readFileSync(join(ROOT, rel), "utf8"));
      }
    }
  };
  walk("");
  return out;
}

interface Import {
  specifier: string;
  /** Type-only imports are erased at run time but still a dependency between layers. */
  kind: "static" | "type" | "dynamic";
}

// import x from / import x, { a } from / import { a, type b } from / import * as x from /
// import type … from / export { … } from / export * from
const STATEMENT =
  /^[ \t]*(?:import|export)\s+(type\s+)?(?:([\w$]+)\s*,\s*)?(?:\*(?:\s+as\s+[\w$]+)?|\{([^}]*)\}|[\w$]+)\s+from\s*["']([^"']+)["']/gm;
const SIDE_EFFECT = /^[ \t]*import\s*["']([^"']+)["']/gm;
const transpiler = new Bun.Transpiler({ loader: "ts" });

/** Whether a statement imports types only: `import type`, or braces whose every name is `type …`. */
function typeOnly(
  typeKeyword: string | undefined,
  defaultName: string | undefined,
  braces: string | undefined,
): boolean {
  if (typeKeyword) return true;
  if (defaultName || braces === undefined) return false;
  const names = braces
    .split(",")
    .map((n) => n.trim())
    .filter(Boolean);
  return names.length > 0 && names.every((n) => n.startsWith("type "));
}

/** The imports of one file: statements parsed from the text, dynamic imports and require() from Bun's parser. */
function importsOf(text: string): Import[] {
  const out: Import[] = [];
  for (const m of text.matchAll(STATEMENT))
    out.push({ specifier: m[4]!, kind: typeOnly(m[1], m[2], m[3]) ? "type" : "static" });
  for (const m of text.matchAll(SIDE_EFFECT)) out.push({ specifier: m[1]!, kind: "static" });
  for (const i of transpiler.scanImports(text))
    if (i.kind === "dynamic-import" || i.kind === "require-call") out.push({ specifier: i.path, kind: "dynamic" });
  return out;
}

interface Edge {
  /** A repository file (relative path) or a package name. */
  target: string;
  isFile: boolean;
  kind: Import["kind"];
}

const BUILTIN = (s: string) => s.startsWith("node:") || s.startsWith("bun:") || s === "bun";
const packageName = (s: string) => (s.startsWith("@") ? s.split("/").slice(0, 2).join("/") : s.split("/")[0]!);

/** The import graph of `files`; an import of a file that is not there is an error. */
function importGraph(files: Map<string, string>): Map<string, Edge[]> {
  const graph = new Map<string, Edge[]>();
  for (const [file, text] of files) {
    const edges: Edge[] = [];
    for (const imp of importsOf(text)) {
      if (BUILTIN(imp.specifier)) continue;
      if (imp.specifier.startsWith(".")) {
        const target = normalize(join(dirname(file), imp.specifier));
        if (!files.has(target)) throw new Error(`${file}: imports ${imp.specifier}, which is not a file here`);
        edges.push({ target, isFile: true, kind: imp.kind });
      } else {
        edges.push({ target: packageName(imp.specifier), isFile: false, kind: imp.kind });
      }
    }
    graph.set(file, edges);
  }
  return graph;
}

/** A shortest import chain from `file` to a target matching `hit`, following `follow` edges, or undefined. */
function chain(
  graph: Map<string, Edge[]>,
  file: string,
  hit: (e: Edge) => boolean,
  follow: (e: Edge) => boolean = () => true,
): string[] | undefined {
  const previous = new Map<string, string>([[file, ""]]);
  const queue = [file];
  while (queue.length) {
    const f = queue.shift()!;
    for (const e of graph.get(f) ?? []) {
      if (!follow(e)) continue;
      if (hit(e)) {
        const path = [e.target, f];
        for (let p = previous.get(f); p; p = previous.get(p)) path.push(p);
        return path.reverse();
      }
      if (e.isFile && !previous.has(e.target)) {
        previous.set(e.target, f);
        queue.push(e.target);
      }
    }
  }
  return undefined;
}

const CDKTF_PACKAGES = (e: Edge) =>
  !e.isFile && (e.target === "cdktf" || e.target === "constructs" || e.target.startsWith("@cdktf/"));
const REMOTE = (e: Edge) => (e.isFile && e.target.startsWith("lib/remote/")) || (!e.isFile && e.target === "ssh2");
const SSH = (e: Edge) => (e.isFile && e.target === "lib/remote/ssh.ts") || (!e.isFile && e.target === "ssh2");

/** Every broken rule, one line each, naming the import chain. */
function violations(files: Map<string, string>): string[] {
  const graph = importGraph(files);
  const out: string[] = [];
  for (const [file, edges] of graph) {
    if (file.startsWith("lib/render/") || file.startsWith("lib/spec/")) {
      const c = chain(graph, file, REMOTE);
      if (c) out.push(`renderer reaches the remote layer: ${c.join(" -> ")}`);
    }
    if (!file.startsWith("test/"))
      for (const e of edges)
        if (e.isFile && e.target.startsWith("test/")) out.push(`outside test/ imports test/: ${file} -> ${e.target}`);
    if (!file.startsWith("constructs/") && file !== "main.ts")
      for (const e of edges)
        if (CDKTF_PACKAGES(e)) out.push(`cdktf import outside constructs/ and main.ts: ${file} -> ${e.target}`);
  }
  if (graph.has("main.ts")) {
    const early = chain(
      graph,
      "main.ts",
      (e) => CDKTF_PACKAGES(e) && e.kind === "static",
      (e) => e.kind === "static",
    );
    if (early) out.push(`main.ts loads cdktf before its module stand-ins are registered: ${early.join(" -> ")}`);
    const ssh = chain(
      graph,
      "main.ts",
      (e) => SSH(e) && e.kind !== "type",
      (e) => e.kind !== "type",
    );
    if (ssh) out.push(`synth loads SSH code: ${ssh.join(" -> ")}`);
  }
  return out;
}

describe("the repository's imports", () => {
  const files = repositorySources();

  test("the sources are all there (the walk found the layers)", () => {
    for (const f of ["main.ts", "constructs/stack.ts", "lib/render/index.ts", "lib/remote/ssh.ts", "lib/shell.ts"])
      expect(files.has(f)).toBe(true);
    expect(files.size).toBeGreaterThan(100);
  });

  test("follow the layering rules", () => {
    expect(violations(files)).toEqual([]);
  });

  test("the statement parser finds every import Bun's own parser sees", () => {
    const missed: string[] = [];
    for (const [file, text] of files) {
      const ours = new Set(importsOf(text).map((i) => i.specifier));
      for (const i of transpiler.scanImports(text)) if (!ours.has(i.path)) missed.push(`${file}: ${i.path}`);
    }
    expect(missed).toEqual([]);
  });
});

describe("the checker catches what it is for", () => {
  const repo = (entries: Record<string, string>) => new Map(Object.entries(entries));

  test("a renderer that reaches lib/remote through another module, naming the chain", () => {
    const v = violations(
      repo({
        "lib/render/haproxy.ts": `import {\n  helper,\n  type Other,\n} from "../etcd/tools.ts";\n`,
        "lib/etcd/tools.ts": `export { sq } from "../remote/ssh.ts";\n`,
        "lib/remote/ssh.ts": `import { Client } from "ssh2";\n`,
      }),
    );
    expect(v).toEqual([
      "renderer reaches the remote layer: lib/render/haproxy.ts -> lib/etcd/tools.ts -> lib/remote/ssh.ts",
    ]);
  });

  test("a type-only import counts; so does ssh2 itself and a require()", () => {
    expect(
      violations(
        repo({ "lib/spec/x.ts": `import type { Remote } from "../remote/ssh.ts";\n`, "lib/remote/ssh.ts": "" }),
      ),
    ).toHaveLength(1);
    expect(violations(repo({ "lib/render/y.ts": `const { Client } = require("ssh2");\n` }))).toEqual([
      "renderer reaches the remote layer: lib/render/y.ts -> ssh2",
    ]);
  });

  test("scripts, lib and bench importing test/", () => {
    const v = violations(
      repo({
        "scripts/lab.ts": `import { labUp } from "../test/lab/lab.ts";\n`,
        "bench/failover.ts": `import * as lab from "../test/lab/lab.ts";\n`,
        "test/lab/lab.ts": "",
        "test/lab/cli.ts": `import { labUp } from "./lab.ts";\n`,
      }),
    );
    expect(v).toEqual([
      "outside test/ imports test/: scripts/lab.ts -> test/lab/lab.ts",
      "outside test/ imports test/: bench/failover.ts -> test/lab/lab.ts",
    ]);
  });

  test("cdktf, its providers and constructs outside constructs/ and main.ts", () => {
    const v = violations(
      repo({
        "lib/ops/x.ts": `import { App } from "cdktf";\n`,
        "test/unit/y.ts": `import type { Construct } from "constructs";\n`,
        "scripts/z.ts": `import { File } from "@cdktf/provider-local/lib/file";\n`,
        "constructs/ok.ts": `import { TerraformStack } from "cdktf";\n`,
      }),
    );
    expect(v).toEqual([
      "cdktf import outside constructs/ and main.ts: lib/ops/x.ts -> cdktf",
      "cdktf import outside constructs/ and main.ts: test/unit/y.ts -> constructs",
      "cdktf import outside constructs/ and main.ts: scripts/z.ts -> @cdktf/provider-local",
    ]);
  });

  test("main.ts that loads cdktf statically, or SSH code at all", () => {
    const stack = { "constructs/stack.ts": `import { App } from "cdktf";\nimport "../lib/ops/connect.ts";\n` };
    const connect = {
      "lib/ops/connect.ts": `import { connectNode } from "../remote/ssh.ts";\n`,
      "lib/remote/ssh.ts": "",
    };
    expect(
      violations(repo({ "main.ts": `import { synthesize } from "./constructs/stack.ts";\n`, ...stack, ...connect })),
    ).toEqual([
      "main.ts loads cdktf before its module stand-ins are registered: main.ts -> constructs/stack.ts -> cdktf",
      "synth loads SSH code: main.ts -> constructs/stack.ts -> lib/ops/connect.ts -> lib/remote/ssh.ts",
    ]);
    expect(
      violations(
        repo({
          "main.ts": `const { synthesize } = await import("./constructs/stack.ts");\n`,
          ...stack,
          "lib/ops/connect.ts": "",
        }),
      ),
    ).toEqual([]);
  });

  test("an import of a file that does not exist is an error, not a pass", () => {
    expect(() => violations(repo({ "lib/render/a.ts": `import { b } from "./b.ts";\n` }))).toThrow(/not a file here/);
  });
});
