// The reviewable tree of a cluster: every file a step uploads, under the node that receives
// it, and every script a step runs, under the node it runs on, numbered in build order.
//   <node>/<absolute path on the host>      e.g. cp-1/etc/haproxy/haproxy.cfg
//   <node>/phases/<n>-<run>.sh              e.g. cp-1/phases/03-init.sh, cp-1/phases/05-join-token-for-cp-2.sh
// Pure: main.ts writes it at synth (both back-ends); hashicorp's local_file resources manage the
// same config files again at apply, with the same content.
import type { NodeRun, Step } from "./types.ts";

export interface TreeFile {
  /** Path relative to the tree's root, starting with the node's name. */
  path: string;
  content: string;
  /** Octal mode string, e.g. "0644". */
  mode: string;
}

/** Where a config file of `node` sits in the tree (the constructs' local_file uses the same path). */
export const treeConfigPath = (node: string, hostPath: string): string => `${node}/${hostPath.replace(/^\/+/, "")}`;

/** The name of a run in the tree: the step's phase, or for a run on another node, its own name and the step's node. */
const runName = (step: Step, run: NodeRun, role: "before" | "own" | "after"): string =>
  role === "own" ? step.phase : `${run.name ?? `${step.phase}-${role}`}-for-${step.node.name}`;

export function reviewTree(steps: Step[]): TreeFile[] {
  const files = new Map<string, TreeFile>();
  const scripts = new Map<string, { name: string; script: string }[]>();
  for (const step of steps) {
    const runs = [
      [step.before, "before"],
      [step, "own"],
      [step.after, "after"],
    ] as const;
    for (const [run, role] of runs) {
      if (!run) continue;
      const node = run.node.name;
      for (const f of run.files) {
        const path = treeConfigPath(node, f.path);
        const seen = files.get(path);
        // Two runs installing different content at one path would fight on the host too.
        if (seen && (seen.content !== f.content || seen.mode !== f.mode))
          throw new Error(`review tree: two different files for ${path}`);
        files.set(path, { path, content: f.content, mode: f.mode });
      }
      const list = scripts.get(node) ?? [];
      list.push({ name: runName(step, run, role), script: run.script });
      scripts.set(node, list);
    }
  }
  const phases: TreeFile[] = [];
  for (const [node, list] of scripts) {
    // Zero-padded so `ls` lists them in build order.
    const width = Math.max(2, String(list.length).length);
    list.forEach(({ name, script }, i) => {
      phases.push({
        path: `${node}/phases/${String(i + 1).padStart(width, "0")}-${name}.sh`,
        content: script,
        mode: "0644",
      });
    });
  }
  return [...files.values(), ...phases];
}
