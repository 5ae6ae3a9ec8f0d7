// systemd OnCalendar expressions (systemd.time(7)), checked here so a schedule systemd
// would refuse fails `validate`, not the timer unit on every control plane. Accepts a
// subset of what systemd accepts — the shorthands (daily, hourly, weekly ...), and
// "[weekdays] [[year-]month-day] [hour:minute[:second]] [UTC]" with *, lists, ranges
// (a..b), repetitions (a/b) and end-of-month days (~) — and nothing systemd refuses
// (test/unit/spec-calendar.test.ts compares a table with `systemd-analyze calendar`).
// Deliberately refused although systemd takes them: time zones other than UTC (a host
// without that zone refuses the timer), @timestamps (one instant is not a schedule),
// repeated spaces and more than 6 decimals of a second.

const SHORTHANDS = new Set([
  "minutely",
  "hourly",
  "daily",
  "weekly",
  "monthly",
  "quarterly",
  "semiannually",
  "semi-annually",
  "biannually",
  "bi-annually",
  "yearly",
  "annually",
]);

const DAY_NAMES = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

/** Monday = 0 .. Sunday = 6 for a full or three-letter day name (any case); undefined otherwise. */
function dayNumber(word: string): number | undefined {
  const w = word.toLowerCase();
  const i = DAY_NAMES.findIndex((d) => d === w || d.slice(0, 3) === w);
  return i < 0 ? undefined : i;
}

/** "Mon..Fri", "Sat,Sun", "Mon-Wed,Fri," (a trailing comma is allowed, as systemd does). */
function weekdaysProblem(token: string): string | undefined {
  const items = token.endsWith(",") ? token.slice(0, -1).split(",") : token.split(",");
  for (const item of items) {
    const m = /^([A-Za-z]+)(?:(?:\.\.|-)([A-Za-z]+))?$/.exec(item);
    const from = m ? dayNumber(m[1]!) : undefined;
    const to = m?.[2] === undefined ? from : dayNumber(m[2]);
    if (from === undefined || to === undefined)
      return `"${item}" is not a day of the week or a range of them (Mon..Sun, Monday..Sunday)`;
    if (from > to) return `the range "${item}" runs backwards; days go Mon..Sun`;
  }
  return undefined;
}

interface Bounds {
  what: string;
  from: number;
  to: number;
  /** Microseconds (the seconds field takes decimals). */
  usec?: boolean;
  /** Two-digit years mean 19xx / 20xx, as systemd reads them. */
  year?: boolean;
  /** Days counted from the end of the month (month~day). */
  endOfMonth?: boolean;
}

const INTEGER = /^\d{1,9}$/;
const DECIMAL = /^\d{1,9}(?:\.\d{1,6})?$/;

function number(text: string, b: Bounds): number | undefined {
  if (!(b.usec ? DECIMAL : INTEGER).test(text)) return undefined;
  if (!b.usec) return Number(text);
  const [whole = "0", fraction = ""] = text.split(".");
  return Number(whole) * 1_000_000 + Number(fraction.padEnd(6, "0"));
}

const fixYear = (y: number): number => (y < 70 ? y + 2000 : y < 100 ? y + 1900 : y);
const shown = (v: number, b: Bounds): string => (b.usec ? String(v / 1_000_000) : String(v));

/** One field: "*", or comma-separated values, ranges a..b and repetitions a/r, a..b/r. */
function chainProblem(text: string, b: Bounds): string | undefined {
  if (text === "*") return undefined;
  const to = b.endOfMonth ? b.to - 3 : b.to;
  for (const part of text.split(",")) {
    const m = /^([^./]+(?:\.[^./]+)?)(?:\.\.([^./]+(?:\.[^./]+)?))?(?:\/(.+))?$/.exec(part);
    const rawStart = m ? number(m[1]!, b) : undefined;
    const rawStop = m?.[2] === undefined ? -1 : number(m[2], b);
    const rawRepeat = m?.[3] === undefined ? undefined : number(m[3], b);
    if (rawStart === undefined || rawStop === undefined || (m?.[3] !== undefined && rawRepeat === undefined))
      return `${b.what} "${part}" is not a number, a range a..b or a repetition a/b`;
    const start = b.year ? fixYear(rawStart) : rawStart;
    const stop = b.year && rawStop >= 0 ? fixYear(rawStop) : rawStop;
    const repeat = rawRepeat ?? (stop >= 0 ? (b.usec ? 1_000_000 : 1) : 0);
    const range = `${b.from}-${b.endOfMonth ? `${to} (days before the month's end)` : to}`;
    if (rawRepeat === 0) return `${b.what} "${part}" repeats every 0`;
    if (start < b.from || start > to || (stop >= 0 && (stop < b.from || stop > to)))
      return `${b.what} "${part}" is outside ${range}`;
    if (repeat > to - b.from) return `${b.what} "${part}" repeats less often than the field allows`;
    if (stop >= 0 && start + repeat > stop)
      return `${b.what} range "${part}" is empty or backwards (${shown(start, b)}..${shown(stop, b)})`;
    if (stop < 0 && repeat > 0 && (b.endOfMonth ? start - repeat < b.from : start + repeat > to))
      return `${b.what} "${part}" never repeats inside ${range}`;
  }
  return undefined;
}

const YEAR: Bounds = { what: "year", from: 1970, to: 2199, year: true };
const MONTH: Bounds = { what: "month", from: 1, to: 12 };
const DAY: Bounds = { what: "day", from: 1, to: 31 };
const HOUR: Bounds = { what: "hour", from: 0, to: 23 };
const MINUTE: Bounds = { what: "minute", from: 0, to: 59 };
const SECOND: Bounds = { what: "second", from: 0, to: 60 * 1_000_000 - 1, usec: true };

/** "month-day" or "year-month-day"; "~" before the day counts from the end of the month. */
function dateProblem(token: string): string | undefined {
  const m = /^([^-~]+)([-~])([^-~]+)(?:([-~])([^-~]+))?$/.exec(token);
  if (!m) return `"${token}" is not a date (month-day or year-month-day, e.g. *-*-01 or 2030-01-31)`;
  const [, first = "", sep1, second = "", sep2, third] = m;
  if (third === undefined)
    return chainProblem(first, MONTH) ?? chainProblem(second, { ...DAY, endOfMonth: sep1 === "~" });
  if (sep1 === "~") return `"${token}": "~" (days before the month's end) goes between month and day`;
  return (
    chainProblem(first, YEAR) ??
    chainProblem(second, MONTH) ??
    chainProblem(third, { ...DAY, endOfMonth: sep2 === "~" })
  );
}

/** "hour:minute" or "hour:minute:second". */
function timeProblem(token: string): string | undefined {
  const parts = token.split(":");
  if (parts.length < 2 || parts.length > 3) return `"${token}" is not a time (hour:minute[:second], e.g. 02:00)`;
  const [h = "", m = "", s] = parts;
  return chainProblem(h, HOUR) ?? chainProblem(m, MINUTE) ?? (s === undefined ? undefined : chainProblem(s, SECOND));
}

const EXAMPLES = 'e.g. daily, "*-*-* 02:00:00" or "Mon..Fri 02:00"';

/** undefined when systemd accepts `expr` as OnCalendar=; otherwise what is wrong and an example. */
export function onCalendarProblem(expr: string): string | undefined {
  const bad = /[^A-Za-z0-9*.,:/~ -]/.exec(expr);
  if (bad)
    return `contains ${JSON.stringify(bad[0])}, which no OnCalendar expression holds (only letters, digits, spaces and * . , : / ~ -); write ${EXAMPLES}`;
  if (expr.trim() === "") return `is blank; write ${EXAMPLES}, or remove the key for no timer`;
  if (/^ | $| {2}/.test(expr))
    return `has a leading, trailing or double space; write ${JSON.stringify(expr.trim().replace(/ +/g, " "))}`;
  const fail = (why: string) =>
    `is not an OnCalendar expression systemd accepts: ${why}. Write ${EXAMPLES} (systemd.time(7); systemd-analyze calendar checks one)`;
  const body = / utc$/i.test(expr) ? expr.slice(0, -4) : expr;
  const tokens = body.split(" ");
  const last = tokens[tokens.length - 1] ?? "";
  if (
    tokens.length > 1 &&
    (/\//.test(last) ? /^[A-Za-z]/.test(last) : /^[A-Z]{3,5}$/.test(last)) &&
    dayNumber(last) === undefined
  )
    return `names the time zone ${last}: only UTC is accepted (systemd refuses the timer on a host without that zone). Write the time in UTC followed by " UTC", e.g. "*-*-* 02:00:00 UTC", or leave the zone out for the hosts' local time`;
  if (tokens.length === 1 && SHORTHANDS.has(body.toLowerCase())) return undefined;
  if (body.startsWith("@")) return fail("@timestamp is a single instant, not a schedule");
  let i = 0;
  if (/^[A-Za-z]/.test(tokens[0] ?? "")) {
    const p = weekdaysProblem(tokens[0]!);
    if (p) return fail(SHORTHANDS.has((tokens[0] ?? "").toLowerCase()) ? `a shorthand (${tokens[0]}) stands alone` : p);
    i++;
  }
  if (i < tokens.length && !tokens[i]!.includes(":")) {
    const p = dateProblem(tokens[i]!);
    if (p) return fail(p);
    i++;
  }
  if (i < tokens.length) {
    const p = timeProblem(tokens[i]!);
    if (p) return fail(p);
    i++;
  }
  if (i < tokens.length) return fail(`"${tokens.slice(i).join(" ")}" is left over after [weekdays] [date] [time]`);
  return undefined;
}
