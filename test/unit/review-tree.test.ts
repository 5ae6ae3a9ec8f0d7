// The review tree (out/<cluster>/<node>/…): written at synth for both back-ends, phase scripts
// included, byte-identical to what the steps upload, and nothing else in it.
import { describe, expect, test } from "bun:test";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { synthesize } from "../../constructs/stack.ts";
import { parseSpec } from "../../lib/spec/load.ts";
import type { ClusterSpec } from "../../lib/spec/schema.ts";
import { firstControlPlane } from "../../lib/spec/topology.ts";
import { replaceTree } from "../../lib/write-tree.ts";
import { EXAMPLE, steps, synthSpec } from "./stack-helpers.ts";

const ROOT = resolve(import.meta.dir, "../..");
const BUN = process.execPath;

/** What Terraform makes of a string: `$${` and `%%{` are escapes for `${` and `%{`. */
const tfUnescape = (s: string): string => s.replace(/([$%])\1\{/g, "$1{");

/** Every file under dir: relative path -> content and mode. */
function readTree(dir: string): Map<string, { content: string; mode: string }> {
  const out = new Map<string, { content: string; mode: string }>();
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else
        out.set(relative(dir, p), {
          content: readFileSync(p, "utf8"),
          mode: `0${(statSync(p).mode & 0o777).toString(8)}`,
        });
    }
  };
  walk(dir);
  return out;
}

interface Upload {
  node: string;
  kind: "config" | "script" | "secret";
  /** The path on the host, for config files. */
  hostPath?: string;
  content: string;
}

/** Every file provisioner of every step, with the node it uploads to. */
function uploads(spec: ClusterSpec, json: Record<string, any>): Upload[] {
  const byAddress = new Map(spec.nodes.map((n) => [n.address, n.name]));
  const out: Upload[] = [];
  for (const [id, r] of Object.entries(steps(json))) {
    for (const p of r.provisioner ?? []) {
      if (!p.file) continue;
      const host = p.file.connection?.host ?? r.connection?.host;
      // A run on the join-via control plane: its host is a lookup on var.join_via, whose default is the first.
      const node =
        byAddress.get(host) ?? (/\[var\.join_via\]\}$/.test(host) ? firstControlPlane(spec).name : undefined);
      if (!node) throw new Error(`${id}: a file provisioner to ${host}, which is no node`);
      const m = /^\/tmp\/kubeadm-ha-stage\.\$\{self\.id\}\.[\w-]+\/(root(\/.+)|run\.sh|join-via|secrets\/[\w-]+)$/.exec(
        p.file.destination,
      );
      if (!m) throw new Error(`${id}: an upload to ${p.file.destination}, which the review tree does not know`);
      // The join_via variable's value (a node name), not content of the tree.
      if (m[1] === "join-via") {
        expect(p.file.content).toBe("${var.join_via}");
        continue;
      }
      const kind = m[2] ? "config" : m[1] === "run.sh" ? "script" : "secret";
      out.push({ node, kind, hostPath: m[2], content: p.file.content });
    }
  }
  return out;
}

describe.each(["hashicorp", "builtin"] as const)("review tree (%s back-end)", (backend) => {
  const syn = synthSpec(EXAMPLE, (spec) => {
    spec.terraform.resources = backend;
  });
  const tree = readTree(syn.renderDir);
  const ups = uploads(syn.spec, syn.json);

  test("every upload that is not a secret is in the tree, byte-identical, under the node it goes to", () => {
    const unmatched = new Set(tree.keys());
    const problems: string[] = [];
    for (const u of ups) {
      const content = tfUnescape(u.content);
      if (u.kind === "secret") {
        // A secret is a Terraform expression (a variable or a value derived from one), never a value.
        expect(u.content).toMatch(/^\$\{/);
        continue;
      }
      if (u.kind === "config") {
        const path = `${u.node}${u.hostPath}`;
        if (tree.get(path)?.content !== content) problems.push(`${path} differs or is missing`);
        unmatched.delete(path);
        continue;
      }
      const script = [...unmatched].find((p) => p.startsWith(`${u.node}/phases/`) && tree.get(p)?.content === content);
      if (script) unmatched.delete(script);
      else problems.push(`a phase script for ${u.node} is not in ${u.node}/phases/`);
    }
    expect(problems).toEqual([]);
    // …and every file in the tree is something a step uploads.
    expect([...unmatched]).toEqual([]);
    expect(ups.filter((u) => u.kind === "script").length).toBe(
      [...tree.keys()].filter((p) => p.includes("/phases/")).length,
    );
  });

  test("phase scripts are numbered in build order under the node they run on, joins' runs on the first control plane too", () => {
    const names = (node: string) =>
      [...tree.keys()]
        .filter((p) => p.startsWith(`${node}/phases/`))
        .map((p) => p.slice(`${node}/phases/`.length))
        .sort();
    expect(names("cp-1")).toEqual([
      "01-prepare.sh",
      "02-loadbalancer.sh",
      // init's own runs on the join-via control plane: they mint only when cp-1 is being replaced
      "03-join-token-for-cp-1.sh",
      "04-init.sh",
      "05-join-cleanup-for-cp-1.sh",
      "06-cni.sh",
      "07-join-token-for-cp-2.sh",
      "08-join-cleanup-for-cp-2.sh",
      "09-join-token-for-cp-3.sh",
      "10-join-cleanup-for-cp-3.sh",
      "11-join-token-for-worker-1.sh",
      "12-join-cleanup-for-worker-1.sh",
      "13-join-token-for-worker-2.sh",
      "14-join-cleanup-for-worker-2.sh",
      "15-etcd-backup-timer.sh",
    ]);
    expect(names("cp-2")).toEqual(["01-prepare.sh", "02-loadbalancer.sh", "03-join.sh", "04-etcd-backup-timer.sh"]);
    expect(names("worker-1")).toEqual(["01-prepare.sh", "02-join.sh"]);
    expect(tree.get("cp-1/phases/07-join-token-for-cp-2.sh")?.content).toContain('phase "join-token" for node cp-1');
  });

  test("files keep the mode they get on the host; scripts are 0644", () => {
    for (const [path, f] of tree) {
      if (path.includes("/phases/")) expect(f.mode).toBe("0644");
    }
    expect(tree.get("cp-1/etc/kubeadm-ha/kubeadm-init.yaml")?.mode).toBe("0600");
    expect(tree.get("cp-1/etc/haproxy/haproxy.cfg")?.mode).toBe("0644");
  });

  if (backend === "hashicorp") {
    test("the local_file resources manage the tree's config files with the same content and mode", () => {
      const files = Object.values(syn.json.resource.local_file) as any[];
      const configs = [...tree.keys()].filter((p) => !p.includes("/phases/"));
      expect(files.length).toBe(configs.length);
      for (const f of files) {
        const abs = resolve(syn.stackDir, f.filename.replace("${path.module}/", ""));
        const path = relative(syn.renderDir, abs);
        expect(tree.get(path)?.content).toBe(tfUnescape(f.content));
        expect(tree.get(path)?.mode).toBe(f.file_permission);
      }
    });
  } else {
    test("no resource writes the tree: it is written at synth", () => {
      expect(syn.json.resource.local_file).toBeUndefined();
      expect(tree.size).toBeGreaterThan(0);
    });
  }
});

describe("review tree on disk", () => {
  test("a later synth replaces the tree: a removed node's files and stray files do not linger", () => {
    const first = synthSpec(EXAMPLE);
    expect(existsSync(join(first.renderDir, "worker-2/phases/02-join.sh"))).toBe(true);
    writeFileSync(join(first.renderDir, "stray.txt"), "left by hand\n");
    const smaller = parseSpec(EXAMPLE.replace(/^ {2}- \{ name: worker-2.*\n/m, ""), "smaller.yaml");
    expect(smaller.nodes.map((n) => n.name)).not.toContain("worker-2");
    synthesize(smaller, { outdir: first.dir, renderDir: first.renderDir });
    expect(existsSync(join(first.renderDir, "worker-2"))).toBe(false);
    expect(existsSync(join(first.renderDir, "stray.txt"))).toBe(false);
    expect(existsSync(join(first.renderDir, "worker-1/phases/02-join.sh"))).toBe(true);
    expect(readdirSync(dirname(first.renderDir)).filter((e) => e.startsWith("."))).toEqual([]);
  });

  test("`bun run main.ts` with the default hashicorp back-end writes out/<cluster>, phase scripts included", () => {
    const cwd = mkdtempSync(join(tmpdir(), "kha-review-"));
    writeFileSync(join(cwd, "cluster.yaml"), EXAMPLE);
    const r = Bun.spawnSync([BUN, "run", join(ROOT, "main.ts")], {
      cwd,
      env: { ...process.env, CLUSTER_SPEC: join(cwd, "cluster.yaml"), CDKTF_OUTDIR: join(cwd, "cdktf.out") },
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(r.stderr.toString()).toContain("review every file and phase script in");
    expect(r.exitCode).toBe(0);
    const tree = readTree(join(cwd, "out", "example"));
    expect(tree.get("cp-1/phases/04-init.sh")?.content).toContain("kubeadm init");
    expect(tree.get("cp-1/etc/haproxy/haproxy.cfg")?.content).toContain("backend");
    expect(existsSync(join(cwd, "cdktf.out/stacks/example/cdk.tf.json"))).toBe(true);
  });
});

describe("replaceTree", () => {
  const files = [
    { path: "a/etc/x.conf", content: "x\n", mode: "0644" },
    { path: "a/etc/secret-free.yaml", content: "y\n", mode: "0600" },
    { path: "a/phases/01-prepare.sh", content: "#!/bin/bash\n", mode: "0644" },
  ];
  const fresh = () => join(mkdtempSync(join(tmpdir(), "kha-tree-")), "example");

  test("writes exactly the files, with their modes", () => {
    const dir = fresh();
    expect(replaceTree(dir, files)).toBe(true);
    const tree = readTree(dir);
    expect([...tree.keys()].sort()).toEqual(files.map((f) => f.path).sort());
    for (const f of files) expect(tree.get(f.path)).toEqual({ content: f.content, mode: f.mode });
  });

  test("an identical tree is left alone; any difference (content, mode, an extra file or directory) rewrites it whole", () => {
    const dir = fresh();
    replaceTree(dir, files);
    const inode = statSync(join(dir, "a/etc/x.conf")).ino;
    expect(replaceTree(dir, files)).toBe(false);
    expect(statSync(join(dir, "a/etc/x.conf")).ino).toBe(inode);
    const changes: [string, () => void][] = [
      ["content", () => writeFileSync(join(dir, "a/etc/x.conf"), "changed\n")],
      ["mode", () => chmodSync(join(dir, "a/etc/secret-free.yaml"), 0o644)],
      ["extra file", () => writeFileSync(join(dir, "a/etc/stray"), "")],
      ["extra directory", () => mkdirSync(join(dir, "b"))],
      ["missing file", () => rmSync(join(dir, "a/phases/01-prepare.sh"))],
    ];
    for (const [what, change] of changes) {
      change();
      expect([what, replaceTree(dir, files)]).toEqual([what, true]);
      const tree = readTree(dir);
      expect([what, [...tree.keys()].sort()]).toEqual([what, files.map((f) => f.path).sort()]);
      expect(readdirSync(dir)).toEqual(["a"]);
      expect(readFileSync(join(dir, "a/etc/x.conf"), "utf8")).toBe("x\n");
      expect(tree.get("a/etc/secret-free.yaml")?.mode).toBe("0600");
    }
    expect(readdirSync(dirname(dir))).toEqual(["example"]);
  });

  test("refuses paths that would leave the tree", () => {
    expect(() => replaceTree(fresh(), [{ path: "../x", content: "", mode: "0644" }])).toThrow(/plain relative/);
    expect(() => replaceTree(fresh(), [{ path: "/etc/x", content: "", mode: "0644" }])).toThrow(/plain relative/);
  });
});
