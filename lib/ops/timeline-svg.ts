// One failure as a picture: a self-contained SVG (no scripts, fonts or links) with, on one time
// axis, every request through the VIP (a green tick answered, a red one failed), which control
// plane held the VIP, how many etcd members answered, and the moments of fault and restore.
// Written by `chaos` and the failover bench next to their Markdown and JSON.

export interface Timeline {
  title: string;
  /** Control planes, top to bottom in the VIP lane. */
  hosts: string[];
  /** ms since the start of the record; ok = answered 200. */
  requests: { at: number; ok: boolean }[];
  /** Who held the VIP from `at` until the next sample (empty = nobody). */
  vip: { at: number; holders: string[] }[];
  /** etcd members answering from `at` until the next sample. */
  etcd: { at: number; up: number }[];
  etcdMembers: number;
  /** Fault, restore and other moments, e.g. {at, label: "fault: cp-1 link down"}. */
  events: { at: number; label: string }[];
  /** End of the record (ms); default the last sample. */
  endMs?: number;
}

const W = 960;
const LEFT = 110;
const RIGHT = 20;
const LANE = 22;
const HOST_COLORS = ["#4e79a7", "#f28e2b", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#9c755f"];

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** Round to 0.1 px: short files, stable output. */
const n = (v: number) => String(Math.round(v * 10) / 10);

export function renderTimelineSvg(t: Timeline): string {
  const lastSample = Math.max(
    0,
    ...t.requests.map((r) => r.at),
    ...t.vip.map((v) => v.at),
    ...t.etcd.map((e) => e.at),
    ...t.events.map((e) => e.at),
  );
  const end = Math.max(t.endMs ?? lastSample, 1);
  const plotW = W - LEFT - RIGHT;
  const x = (ms: number) => LEFT + (Math.min(Math.max(ms, 0), end) / end) * plotW;

  const reqTop = 40;
  const reqH = 40;
  const vipTop = reqTop + reqH + 30;
  const etcdTop = vipTop + t.hosts.length * LANE + 30;
  const etcdH = 50;
  const axisY = etcdTop + etcdH + 10;
  const height = axisY + 40 + t.events.length * 14;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${n(height)}" viewBox="0 0 ${W} ${n(height)}" font-family="sans-serif" font-size="11">`,
    `<title>${esc(t.title)}</title>`,
    `<rect width="${W}" height="${n(height)}" fill="#ffffff"/>`,
    `<text x="${LEFT}" y="20" font-size="14" font-weight="bold">${esc(t.title)}</text>`,
  );

  // Requests: one tick per request, up for ok, down (and red) for failed.
  const failed = t.requests.filter((r) => !r.ok).length;
  out.push(
    `<text x="8" y="${reqTop + reqH / 2 + 4}">requests</text>`,
    `<text x="${W - RIGHT}" y="${reqTop - 6}" text-anchor="end">${t.requests.length} requests, ${failed} failed</text>`,
    `<line x1="${LEFT}" x2="${W - RIGHT}" y1="${reqTop + reqH / 2}" y2="${reqTop + reqH / 2}" stroke="#ccc"/>`,
    `<g id="requests">`,
  );
  for (const r of t.requests) {
    const mid = reqTop + reqH / 2;
    out.push(
      r.ok
        ? `<line class="req ok" x1="${n(x(r.at))}" x2="${n(x(r.at))}" y1="${mid}" y2="${reqTop + 4}" stroke="#2e7d32"/>`
        : `<line class="req failed" x1="${n(x(r.at))}" x2="${n(x(r.at))}" y1="${mid}" y2="${reqTop + reqH - 2}" stroke="#c62828" stroke-width="2"/>`,
    );
  }
  out.push("</g>");

  // VIP holder: a bar in the holder's lane for each interval.
  out.push(`<text x="8" y="${vipTop - 8}">VIP held by</text>`, `<g id="vip">`);
  t.hosts.forEach((h, i) => {
    const y = vipTop + i * LANE;
    out.push(
      `<text x="20" y="${y + LANE / 2 + 4}">${esc(h)}</text>`,
      `<rect x="${LEFT}" y="${y + 3}" width="${plotW}" height="${LANE - 6}" fill="#f3f3f3"/>`,
    );
  });
  t.vip.forEach((v, i) => {
    const until = t.vip[i + 1]?.at ?? end;
    for (const h of v.holders) {
      const lane = t.hosts.indexOf(h);
      if (lane < 0) continue;
      out.push(
        `<rect class="vip" x="${n(x(v.at))}" y="${vipTop + lane * LANE + 3}" width="${n(Math.max(0.5, x(until) - x(v.at)))}" height="${LANE - 6}" fill="${HOST_COLORS[lane % HOST_COLORS.length]}"/>`,
      );
    }
  });
  out.push("</g>");

  // etcd members up: a step line.
  out.push(
    `<text x="8" y="${etcdTop + etcdH / 2 + 4}">etcd up</text>`,
    `<rect x="${LEFT}" y="${etcdTop}" width="${plotW}" height="${etcdH}" fill="#fafafa" stroke="#eee"/>`,
  );
  const ey = (up: number) =>
    etcdTop + etcdH - (Math.min(up, t.etcdMembers) / Math.max(1, t.etcdMembers)) * (etcdH - 6) - 3;
  if (t.etcd.length) {
    const pts: string[] = [];
    t.etcd.forEach((e, i) => {
      const until = t.etcd[i + 1]?.at ?? end;
      pts.push(`${n(x(e.at))},${n(ey(e.up))}`, `${n(x(until))},${n(ey(e.up))}`);
    });
    out.push(`<polyline id="etcd" points="${pts.join(" ")}" fill="none" stroke="#6a1b9a" stroke-width="2"/>`);
  }
  out.push(
    `<text x="${LEFT - 4}" y="${n(ey(t.etcdMembers) + 4)}" text-anchor="end">${t.etcdMembers}</text>`,
    `<text x="${LEFT - 4}" y="${n(ey(0) + 4)}" text-anchor="end">0</text>`,
  );

  // Time axis: a tick per second (or per 5/10 s on long records).
  const step = end > 120_000 ? 10_000 : end > 30_000 ? 5000 : 1000;
  out.push(`<line x1="${LEFT}" x2="${W - RIGHT}" y1="${axisY}" y2="${axisY}" stroke="#333"/>`);
  for (let ms = 0; ms <= end; ms += step) {
    out.push(
      `<line x1="${n(x(ms))}" x2="${n(x(ms))}" y1="${axisY}" y2="${axisY + 4}" stroke="#333"/>`,
      `<text x="${n(x(ms))}" y="${axisY + 15}" text-anchor="middle">${ms / 1000} s</text>`,
    );
  }

  // Events: a dashed line across every lane, labelled below the axis.
  out.push(`<g id="events">`);
  t.events.forEach((e, i) => {
    out.push(
      `<line class="event" x1="${n(x(e.at))}" x2="${n(x(e.at))}" y1="${reqTop - 2}" y2="${axisY}" stroke="#000" stroke-dasharray="4 3"/>`,
      // Labels right of the middle end at their line, so none runs off the picture.
      `<text x="${n(x(e.at))}" y="${axisY + 30 + i * 14}"${x(e.at) > LEFT + plotW / 2 ? ' text-anchor="end"' : ""}>${esc(`${(e.at / 1000).toFixed(2)} s ${e.label}`)}</text>`,
    );
  });
  out.push("</g>", "</svg>");
  return `${out.join("\n")}\n`;
}
