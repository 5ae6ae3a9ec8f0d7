// The one table every ops command prints: a row per host and check, its status,
// what was seen, and the fix when something is wrong. JSON carries the same rows.

/** pass: as needed. fail: must be fixed. warn: works, but worth fixing (or fixed by a phase). info: a fact. */
export type Status = "pass" | "fail" | "warn" | "info";

export interface CheckRow {
  /** Node name, "vip", "cluster" or "local". */
  host: string;
  /** What was checked, e.g. "port 6443 free" or "haproxy backends". */
  check: string;
  status: Status;
  /** What was seen; never a secret. */
  detail: string;
  /** How to fix it (for fail and warn rows). */
  fix?: string;
}

export interface Summary {
  pass: number;
  fail: number;
  warn: number;
  info: number;
}

const LABEL: Record<Status, string> = { pass: "ok", fail: "FAIL", warn: "warn", info: "info" };

export function summarize(rows: CheckRow[]): Summary {
  const s: Summary = { pass: 0, fail: 0, warn: 0, info: 0 };
  for (const r of rows) s[r.status]++;
  return s;
}

/** Plain-text table with aligned columns; the fix column is last so long fixes do not push the others. */
export function formatTable(rows: CheckRow[], title?: string): string {
  const header = ["HOST", "CHECK", "STATUS", "DETAIL", "FIX"];
  const cells = rows.map((r) => [r.host, r.check, LABEL[r.status], oneLine(r.detail), oneLine(r.fix ?? "")]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  // The last two columns can be long: cap what they make the others wait for.
  widths[3] = Math.min(widths[3]!, 70);
  const line = (c: string[]) =>
    c
      .map((v, i) => (i === c.length - 1 ? v : v.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  const out = [line(header), line(widths.map((w) => "-".repeat(w))), ...cells.map(line)];
  const s = summarize(rows);
  const tail = `${s.pass} ok, ${s.fail} failed, ${s.warn} warnings, ${s.info} info`;
  return `${title ? `${title}\n` : ""}${out.join("\n")}\n${tail}\n`;
}

const oneLine = (s: string): string => s.replace(/\s*\n\s*/g, " | ").trim();

/** The `data` of a check command's JSON envelope: the cluster, the counts and every row. */
export function reportData(cluster: string, rows: CheckRow[], extra: Record<string, unknown> = {}) {
  return { cluster, summary: summarize(rows), ...extra, rows };
}

/** "2 checks failed (cp-1 ssh, vip /healthz through the VIP)": the envelope's error for failed rows. */
export function failedRowsMessage(rows: CheckRow[], strict = false): string | undefined {
  const bad = rows.filter((r) => r.status === "fail" || (strict && r.status === "warn"));
  if (!bad.length) return undefined;
  const names = bad.map((r) => `${r.host} ${r.check}`);
  const shown = names.length > 8 ? [...names.slice(0, 8), `${names.length - 8} more`] : names;
  return `${bad.length} check${bad.length === 1 ? "" : "s"} failed (${shown.join(", ")}); each row has its fix.`;
}

/** Sort rows by the spec's node order (then vip/cluster rows), keeping each host's checks in the order made. */
export function sortRows(rows: CheckRow[], hostOrder: string[]): CheckRow[] {
  const rank = (h: string) => {
    const i = hostOrder.indexOf(h);
    return i < 0 ? hostOrder.length : i;
  };
  return rows
    .map((r, i) => ({ r, i }))
    .sort((a, b) => rank(a.r.host) - rank(b.r.host) || a.i - b.i)
    .map((x) => x.r);
}
