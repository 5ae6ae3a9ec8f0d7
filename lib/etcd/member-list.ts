// `etcdctl member list -w json`, parsed as JSON without losing digits. Member and cluster IDs
// are uint64, beyond what a JavaScript number holds exactly, so integers are read from their
// source text (JSON.parse source access). Every member is listed, also one that was added but
// has not started yet: etcd leaves out its name and client URLs then.

export interface MemberInfo {
  /** Hex, as etcdctl's table prints it. */
  id: string;
  /** "" for a member that has not started (added, never joined). */
  name: string;
  peerUrls: string[];
  clientUrls: string[];
  isLearner: boolean;
}

type Reviver = (this: unknown, key: string, value: unknown, context?: { source?: string }) => unknown;

/** JSON.parse, with every integer outside the safe range as a BigInt read from its digits. */
export function parseJsonLossless(text: string): unknown {
  const reviver: Reviver = (_key, value, context) => {
    if (typeof value !== "number" || Number.isSafeInteger(value)) return value;
    const source = context?.source;
    if (source === undefined)
      throw new Error("this JavaScript runtime cannot read JSON numbers from their source text: run with Bun");
    return /^-?\d+$/.test(source) ? BigInt(source) : value;
  };
  return JSON.parse(text, reviver as Parameters<typeof JSON.parse>[1]);
}

const hex = (v: unknown): string => (typeof v === "bigint" || typeof v === "number" ? BigInt(v).toString(16) : "");
const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((s): s is string => typeof s === "string") : []);

/**
 * The cluster ID (hex) and members in `out`: etcdctl's JSON, possibly with other lines around it.
 * No JSON object at all (etcdctl failed, or a script's `{}` fallback) is no members; a broken one throws.
 */
export function parseMemberList(out: string): { clusterId: string; members: MemberInfo[] } {
  const start = out.indexOf("{");
  const end = out.lastIndexOf("}");
  if (start < 0 || end < start) return { clusterId: "", members: [] };
  let j: { header?: { cluster_id?: unknown }; members?: unknown };
  try {
    j = parseJsonLossless(out.slice(start, end + 1)) as typeof j;
  } catch (e) {
    throw new Error(
      `etcdctl member list printed JSON that does not parse (${(e as Error).message}): ${out.slice(0, 200)}`,
    );
  }
  const members = (Array.isArray(j.members) ? j.members : []).map((m: Record<string, unknown>) => ({
    id: hex(m.ID),
    name: typeof m.name === "string" ? m.name : "",
    peerUrls: strings(m.peerURLs),
    clientUrls: strings(m.clientURLs),
    isLearner: m.isLearner === true,
  }));
  return { clusterId: hex(j.header?.cluster_id), members };
}
