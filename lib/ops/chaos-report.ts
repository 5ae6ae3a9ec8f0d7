// chaos --out DIR: the matrix as Markdown, the JSON data, and one SVG per case (timeline-svg.ts).
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type CaseResult, type ChaosMode, markdownMatrix } from "./chaos.ts";
import { renderTimelineSvg } from "./timeline-svg.ts";

export interface ChaosReport {
  cluster: string;
  mode: ChaosMode;
  holderBefore: string;
  cases: CaseResult[];
}

/** Writes the report files into `dir` (created if missing); returns their paths. */
export function writeChaosReport(dir: string, report: ChaosReport): string[] {
  mkdirSync(dir, { recursive: true });
  const svgs = report.cases.map((c) => ({ name: `chaos-k${c.down}.svg`, c }));
  const md = [
    `# Failure matrix for ${report.cluster} (${report.mode})`,
    "",
    markdownMatrix(report.cases).trimEnd(),
    "",
    ...svgs.map(({ name, c }) => `![k=${c.down}: ${c.nodes.join(", ")}](${name})`),
    "",
  ].join("\n");
  const written: [string, string][] = [
    ["chaos.md", md],
    ["chaos.json", `${JSON.stringify(report, null, 2)}\n`],
    ...svgs.map(({ name, c }): [string, string] => [name, renderTimelineSvg(c.timeline)]),
  ];
  for (const [name, text] of written) writeFileSync(join(dir, name), text);
  return written.map(([name]) => join(dir, name));
}
