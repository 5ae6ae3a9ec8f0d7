// OpenSSH known_hosts, read the way ssh reads it: plain and hashed (|1|) host
// names, [host]:port for non-standard ports, simple wildcards, @revoked keys.
// Used by the ssh2 layer (verify every connection) and by the constructs
// (Terraform's connection.host_key), so neither ever trusts a host blindly.
import { createHash, createHmac } from "node:crypto";

export interface KnownHostEntry {
  marker?: "@cert-authority" | "@revoked";
  hosts: string[];
  keyType: string;
  key: string;
}

export function parseKnownHosts(text: string): KnownHostEntry[] {
  const entries: KnownHostEntry[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const fields = line.split(/\s+/);
    let marker: KnownHostEntry["marker"];
    if (fields[0] === "@cert-authority" || fields[0] === "@revoked")
      marker = fields.shift() as KnownHostEntry["marker"];
    const [hosts, keyType, key] = fields;
    if (!hosts || !keyType || !key) continue;
    entries.push({ marker, hosts: hosts.split(","), keyType, key });
  }
  return entries;
}

/** The name ssh looks up: "host" on port 22, "[host]:port" otherwise. */
export const knownHostsName = (host: string, port = 22): string => (port === 22 ? host : `[${host}]:${port}`);

function globToRegExp(pattern: string): RegExp {
  const body = pattern
    .replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replace(/\*/g, ".*")
    .replace(/\?/g, ".");
  return new RegExp(`^${body}$`, "i");
}

function patternMatches(pattern: string, name: string): boolean {
  if (pattern.startsWith("|1|")) {
    const [, , salt, hash] = pattern.split("|");
    if (!salt || !hash) return false;
    const digest = createHmac("sha1", Buffer.from(salt, "base64")).update(name).digest("base64");
    return digest === hash;
  }
  return globToRegExp(pattern).test(name);
}

/** An entry applies when some pattern matches and no negated (!) pattern does. */
function entryMatches(entry: KnownHostEntry, name: string): boolean {
  let hit = false;
  for (const p of entry.hosts) {
    if (p.startsWith("!")) {
      if (patternMatches(p.slice(1), name)) return false;
    } else if (patternMatches(p, name)) hit = true;
  }
  return hit;
}

function keysFor(text: string, host: string, port: number): KnownHostEntry[] {
  const name = knownHostsName(host, port);
  return parseKnownHosts(text).filter((e) => e.marker !== "@cert-authority" && entryMatches(e, name));
}

/** The trusted key of host:port as "type base64" (authorized_keys form, as Terraform's host_key wants), if any. */
export function hostKeyFor(text: string, host: string, port = 22): string | undefined {
  const entry = keysFor(text, host, port).find((e) => e.marker !== "@revoked");
  return entry ? `${entry.keyType} ${entry.key}` : undefined;
}

export type HostKeyVerdict = "match" | "mismatch" | "unknown";

/** Compare a presented key with known_hosts: a revoked key or a different key of a known host is a mismatch. */
export function knownHostsMatches(
  text: string,
  host: string,
  port: number,
  keyType: string,
  keyBase64: string,
): HostKeyVerdict {
  const entries = keysFor(text, host, port);
  if (entries.some((e) => e.marker === "@revoked" && e.key === keyBase64)) return "mismatch";
  const trusted = entries.filter((e) => e.marker !== "@revoked");
  if (trusted.length === 0) return "unknown";
  return trusted.some((e) => e.keyType === keyType && e.key === keyBase64) ? "match" : "mismatch";
}

/** OpenSSH's SHA256:... fingerprint of a base64 public key blob, for messages people compare by eye. */
export const fingerprint = (keyBase64: string): string =>
  `SHA256:${createHash("sha256").update(Buffer.from(keyBase64, "base64")).digest("base64").replace(/=+$/, "")}`;

/** A known_hosts line for host:port. */
export const knownHostsLine = (host: string, port: number, keyType: string, keyBase64: string): string =>
  `${knownHostsName(host, port)} ${keyType} ${keyBase64}`;

/**
 * Host key types Terraform's SSH communicator can pin through connection.host_key, with the
 * size of their key blob where it is fixed (type name, curve name and point, or the 32-byte key).
 */
export const PINNABLE_HOST_KEY_TYPES: Readonly<Record<string, number | undefined>> = {
  "ssh-ed25519": 51,
  "ecdsa-sha2-nistp256": 104,
  "ecdsa-sha2-nistp384": 136,
  "ecdsa-sha2-nistp521": 172,
  "ssh-rsa": undefined,
  "sk-ssh-ed25519@openssh.com": undefined,
  "sk-ecdsa-sha2-nistp256@openssh.com": undefined,
};

const B64 = "[A-Za-z0-9+/]";

/**
 * The base64 of a key blob of `type`: it starts with the blob's uint32 length and its own type
 * name (the whole characters of that are fixed), then the key, exactly as long as the type's
 * blob when that is fixed.
 */
function blobPattern(type: string, bytes: number | undefined): string {
  const head = Buffer.concat([Buffer.alloc(4), Buffer.from(type)]);
  head.writeUInt32BE(type.length);
  const fixedGroups = Math.floor(head.length / 3);
  const prefix = head.subarray(0, fixedGroups * 3).toString("base64");
  const padding = ["", `${B64}{3}=`, `${B64}{2}==`];
  if (bytes === undefined) return `${prefix}(?:${B64}{4}){8,}(?:${padding[1]}|${padding[2]})?`;
  const rest = bytes % 3 === 0 ? "" : bytes % 3 === 2 ? padding[1] : padding[2];
  return `${prefix}(?:${B64}{4}){${Math.floor(bytes / 3) - fixedGroups}}${rest}`;
}

/**
 * "type base64" as host_key wants it, in syntax both JavaScript and Terraform (RE2) read: a
 * known type, one space, and base64 whose blob names the same type. An empty value (which
 * makes Terraform skip the host-key check), a placeholder, a known_hosts line with its host
 * name, a truncated key or a type that does not match the key all fail.
 */
export const HOST_KEY_PATTERN = `^(?:${Object.entries(PINNABLE_HOST_KEY_TYPES)
  .map(([t, bytes]) => `${t.replace(/\./g, "[.]")} ${blobPattern(t, bytes)}`)
  .join("|")})$`;

export const isPinnableHostKey = (value: string): boolean => new RegExp(HOST_KEY_PATTERN).test(value);
