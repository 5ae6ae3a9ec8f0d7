// The failure picture chaos and the failover bench write: well-formed XML (checked by
// @xmldom/xmldom, the XML parser already in node_modules, with every warning fatal), one mark per request, nothing external.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DOMParser, type Element } from "@xmldom/xmldom";
import type { CaseResult } from "../../lib/ops/chaos.ts";
import { writeChaosReport } from "../../lib/ops/chaos-report.ts";
import { renderTimelineSvg, type Timeline } from "../../lib/ops/timeline-svg.ts";

interface Parsed {
  root: string;
  elements: { name: string; attrs: Record<string, string> }[];
  text: string;
}
/** Strict: every warning or error of the parser (unclosed tag, bare &, ...) throws. */
function parseXml(xml: string): Parsed {
  const doc = new DOMParser({
    onError: (level, message) => {
      throw new Error(`XML ${level}: ${message}`);
    },
  }).parseFromString(xml, "image/svg+xml");
  const root = doc.documentElement;
  if (!root) throw new Error("no root element");
  const elements: Parsed["elements"] = [];
  const walk = (el: Element) => {
    const attrs: Record<string, string> = {};
    for (let i = 0; i < el.attributes.length; i++) attrs[el.attributes[i]!.name] = el.attributes[i]!.value;
    elements.push({ name: el.tagName, attrs });
    for (let c = el.firstChild; c; c = c.nextSibling) if (c.nodeType === 1) walk(c as Element);
  };
  walk(root);
  return { root: root.tagName, elements, text: root.textContent ?? "" };
}

const timeline = (): Timeline => {
  const requests = Array.from({ length: 120 }, (_, i) => ({ at: i * 50, ok: !(i >= 20 && i < 31) }));
  return {
    title: 'k=1: isolate cp-1 <holder> & "friends"',
    hosts: ["cp-1", "cp-2", "cp-3"],
    requests,
    vip: [
      { at: 0, holders: ["cp-1"] },
      { at: 1400, holders: [] },
      { at: 1500, holders: ["cp-2"] },
    ],
    etcd: [
      { at: 0, up: 3 },
      { at: 1100, up: 2 },
      { at: 5000, up: 3 },
    ],
    etcdMembers: 3,
    events: [
      { at: 1000, label: "fault: isolate cp-1" },
      { at: 4500, label: "restore" },
    ],
  };
};

describe("failure timeline SVG", () => {
  test("parses as XML with an svg root, one mark per request (failed ones marked so), the VIP bars and the events", () => {
    const t = timeline();
    const p = parseXml(renderTimelineSvg(t));
    expect(p.root).toBe("svg");
    const reqs = p.elements.filter((e) => e.attrs.class?.split(" ").includes("req"));
    expect(reqs).toHaveLength(t.requests.length);
    expect(reqs.filter((e) => e.attrs.class === "req failed")).toHaveLength(t.requests.filter((r) => !r.ok).length);
    expect(p.elements.filter((e) => e.attrs.class === "vip")).toHaveLength(2);
    expect(p.elements.filter((e) => e.attrs.class === "event")).toHaveLength(2);
    expect(p.text).toContain('k=1: isolate cp-1 <holder> & "friends"');
    expect(p.text).toContain("120 requests, 11 failed");
  });

  test("self-contained: no script, no external reference", () => {
    const svg = renderTimelineSvg(timeline());
    expect(svg).not.toMatch(/<script|href=|url\(|@import/i);
  });

  test("the parser is strict: a broken file fails (so the test above can fail)", () => {
    const svg = renderTimelineSvg(timeline());
    expect(() => parseXml(svg.replace("</svg>", ""))).toThrow();
    expect(() => parseXml(svg.replace("<title>", "<title>&"))).toThrow();
  });

  test("an empty record still renders", () => {
    const p = parseXml(renderTimelineSvg({ ...timeline(), requests: [], vip: [], etcd: [], events: [] }));
    expect(p.root).toBe("svg");
  });

  test("chaos --out: chaos.md showing one SVG per case, chaos.json with the timeline, the SVGs parse", () => {
    const dir = mkdtempSync(join(tmpdir(), "kha-chaos-report-"));
    try {
      const c = (down: number): CaseResult => ({
        down,
        nodes: ["cp-1", "cp-2", "cp-3"].slice(0, down),
        mode: "isolate",
        holderBefore: "cp-1",
        expected: { tcp: true, healthz: true, quorum: true, vip: "moves", text: "VIP moves" },
        observed: {
          vipOn: ["cp-2"],
          vipOnIsolated: [],
          tcp: true,
          healthzStatus: 200,
          etcdHealthy: ["cp-2", "cp-3"],
          quorum: true,
          runningPods: null,
          availability: 0.9,
          probes: 100,
          lastFailureMs: 600,
        },
        match: true,
        mismatches: [],
        restored: true,
        recoverySeconds: 4.2,
        timeline: timeline(),
      });
      const files = writeChaosReport(dir, {
        cluster: "lab",
        mode: "isolate",
        holderBefore: "cp-1",
        cases: [c(1), c(2)],
      });
      expect(readdirSync(dir).sort()).toEqual(["chaos-k1.svg", "chaos-k2.svg", "chaos.json", "chaos.md"]);
      expect(files).toHaveLength(4);
      const md = readFileSync(join(dir, "chaos.md"), "utf8");
      expect(md).toContain("](chaos-k1.svg)");
      expect(md).toContain("](chaos-k2.svg)");
      const json = JSON.parse(readFileSync(join(dir, "chaos.json"), "utf8"));
      expect(json.cases[0].timeline.requests).toHaveLength(120);
      const p = parseXml(readFileSync(join(dir, "chaos-k2.svg"), "utf8"));
      expect(p.elements.filter((e) => e.attrs.class?.startsWith("req"))).toHaveLength(120);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
