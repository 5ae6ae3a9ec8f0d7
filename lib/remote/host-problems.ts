// Failures on many hosts, said once per distinct problem: the same missing known_hosts on five
// nodes is one paragraph naming the five, not five paragraphs.
import { EXIT, UserError } from "../errors.ts";

/** Something that failed on one host; `aliases` (its addresses) are told apart like its name. */
export interface HostFailure {
  host: string;
  error: unknown;
  aliases?: string[];
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const mention = (name: string) => new RegExp(`(?<![\\w.-])${escapeRegExp(name)}(?![\\w-]|\\.\\d)`, "g");

/**
 * Per-host failures as one paragraph per distinct problem, naming the hosts it applies to: the
 * same missing known_hosts on five nodes is one paragraph, not five. Problems that differ only in
 * the host's name or address are the same problem. `exitCode` is 2 when every failure is bad input
 * (a UserError with exit 2), else 1 (an operation failed).
 */
export function hostProblems(failures: HostFailure[]): { paragraphs: string[]; text: string; exitCode: number } {
  const groups = new Map<string, { hosts: string[]; message: string }>();
  for (const f of failures) {
    const message = f.error instanceof Error ? f.error.message : String(f.error);
    let key = message;
    for (const name of [f.host, ...(f.aliases ?? [])].filter(Boolean)) key = key.replace(mention(name), "\u0000");
    const g = groups.get(key);
    if (g) g.hosts.push(f.host);
    else groups.set(key, { hosts: [f.host], message });
  }
  const paragraphs = [...groups.values()].map(({ hosts, message }) => {
    if (hosts.length === 1 && mention(hosts[0]!).test(message)) return message;
    if (hosts.length === 1 || !mention(hosts[0]!).test(message)) return `${hosts.join(", ")}: ${message}`;
    return `${message} The same on ${hosts.slice(1).join(", ")}.`;
  });
  const exitCode = failures.every((f) => f.error instanceof UserError && f.error.exitCode === EXIT.usage)
    ? EXIT.usage
    : EXIT.failed;
  return { paragraphs, text: paragraphs.join("\n\n"), exitCode };
}
