// Formats of the spec's free-text fields (and of the command-line flags that take the
// same kinds of value). Each check returns undefined when the value is fine, else the
// text that follows the value in a problem: what is wrong and what to write instead.
// Strict on purpose: these values end up in shell scripts, YAML, TOML, systemd units and
// Terraform JSON on root-run hosts, so anything outside the plain form is refused here
// rather than quoted for each of those languages.
import { isIPv4, isIPv6 } from "node:net";
import { posix } from "node:path";

/** Characters a path field may hold: no spaces, quotes, $, `, ;, globs or other shell syntax. */
const PATH_CHARS_TEXT = "letters, digits and . _ - + @ /";

function pathCharsProblem(value: string): string | undefined {
  const bad = /[^A-Za-z0-9._/@+-]/.exec(value);
  return bad
    ? `contains ${JSON.stringify(bad[0])}; a path here holds only ${PATH_CHARS_TEXT} (no spaces, quotes or shell syntax)`
    : undefined;
}

/** An absolute, normalized path on the hosts, e.g. /var/lib/etcd. */
export function absolutePathProblem(value: string, example: string): string | undefined {
  if (!value.startsWith("/")) return `is not an absolute path; write e.g. ${example}`;
  const chars = pathCharsProblem(value);
  if (chars) return chars;
  if (value === "/") return `is the root directory; write e.g. ${example}`;
  const normal = posix.normalize(value).replace(/\/+$/, "");
  if (normal !== value) return `is not in normal form (no //, /./, /../ or trailing /); write ${normal}`;
  return undefined;
}

/** A path on the machine running the tool: relative to the spec file, absolute, or under ~/. */
export function localPathProblem(value: string, example: string): string | undefined {
  if (value === "") return `is empty; write e.g. ${example}`;
  const rest = value.startsWith("~/") ? value.slice(2) : value;
  const chars = pathCharsProblem(rest);
  if (chars) return `${chars.replace("a path here holds", "a path here holds (after a leading ~/)")}`;
  const normal = posix.normalize(rest).replace(/(.)\/+$/, "$1");
  if (normal !== rest)
    return `is not in normal form (no //, /./ or trailing /); write ${value.slice(0, value.length - rest.length)}${normal}`;
  return undefined;
}

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** A lowercase DNS name (RFC 1123 subdomain), as Kubernetes wants for its cluster domain. */
export function dnsNameProblem(value: string, example: string): string | undefined {
  const labels = value.split(".");
  if (value.length > 253 || !labels.every((l) => DNS_LABEL.test(l)))
    return (
      "is not a DNS name: lowercase labels of letters, digits and '-' (not at either end), at most 63 characters each, " +
      `joined by dots; write e.g. ${example}`
    );
  return undefined;
}

const HOST_NAME =
  /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** A host name or an IP address. */
export const isHostName = (host: string): boolean => isIPv4(host) || isIPv6(host) || HOST_NAME.test(host);

/** A login name for SSH (and sudo): what useradd accepts, without the trailing $ of machine accounts. */
export function loginNameProblem(value: string): string | undefined {
  if (/^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/.test(value)) return undefined;
  return "is not a user name: a letter or _ first, then letters, digits, '.', '_' or '-', at most 32 characters; write e.g. ubuntu";
}

/** A Terraform Cloud organization or workspace name. */
export function terraformNameProblem(value: string, example: string): string | undefined {
  if (/^[A-Za-z0-9_-]{1,90}$/.test(value)) return undefined;
  return `may hold only letters, digits, '-' and '_' (at most 90); write e.g. ${example}`;
}

// An OCI image reference (the grammar of the distribution project's reference package):
// [registry[:port]/]path[:tag][@algorithm:hex]. Lowercase path, no spaces or shell syntax.
const PATH_COMPONENT = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
const DOMAIN_COMPONENT = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const DOMAIN = `${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*(?::[0-9]+)?`;
const IMAGE_REFERENCE = new RegExp(
  `^(?:${DOMAIN}/)?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*` +
    "(?::[\\w][\\w.-]{0,127})?" +
    "(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$",
);

/** An image reference such as registry.k8s.io/pause:3.10 or nginx@sha256:<64 hex>. */
export function imageReferenceProblem(value: string, example: string): string | undefined {
  if (value.length <= 255 + 128 + 80 && IMAGE_REFERENCE.test(value)) {
    const name = value.split("@")[0]!.replace(/:[\w][\w.-]{0,127}$/, "");
    if (name.length <= 255) return undefined;
  }
  return `is not an image reference ([registry[:port]/]lowercase/path[:tag][@sha256:digest]); write e.g. ${example}`;
}

/** A registry and path images are pulled from, e.g. registry.example.com:5000/k8s (kubeadm's imageRepository). */
export function imageRepositoryProblem(value: string, example: string): string | undefined {
  if (value.length <= 255 && IMAGE_REFERENCE.test(`${value}/pause`) && !/[:@]/.test(value.replace(/^[^/]*/, "")))
    return undefined;
  return `is not an image repository ([registry[:port]/]lowercase/path, no tag); write e.g. ${example}`;
}

/** Characters a URL may hold unencoded (RFC 3986): no spaces, quotes, backslashes, braces or backticks. */
const URL_CHARS = /^[A-Za-z0-9\-._~:/?#@!$&'()*+,;=%]+$/;

/**
 * undefined when `value` is an https URL (after {minor} is filled in, where `placeholders`
 * allows it); otherwise what is wrong with it. The URL must be usable as it is written:
 * its characters are those a URL holds unencoded, and it parses to the same text.
 */
export function httpsUrlProblem(value: string, example: string, placeholders = false): string | undefined {
  const filled = placeholders ? value.replaceAll("{minor}", "v1.31") : value;
  const placeholder = /\{[^}]*\}/.exec(filled);
  if (placeholder)
    return placeholders
      ? `contains ${placeholder[0]}; the only placeholder is {minor} (e.g. v1.31)`
      : `contains ${placeholder[0]}, which a URL cannot hold unencoded; write e.g. ${example}`;
  if (value.startsWith("http://"))
    return `uses plain http, so anyone on the path could swap what is downloaded; write https://${value.slice("http://".length)}`;
  let url: URL | undefined;
  try {
    url = new URL(filled);
  } catch {
    url = undefined;
  }
  if (!url || !/^[a-z][a-z0-9+.-]*:\/\//i.test(filled))
    return `is not a URL; write a full https URL such as ${example}`;
  if (url.protocol !== "https:") return `must be an https URL such as ${example}`;
  const bad = /[^A-Za-z0-9\-._~:/?#@!$&'()*+,;=%]/.exec(filled);
  if (bad || !URL_CHARS.test(filled))
    return `contains ${JSON.stringify(bad?.[0] ?? "")}, which a URL cannot hold unencoded (write it percent-encoded); e.g. ${example}`;
  const authority = /^https:\/\/([^/?#]*)/i.exec(filled)?.[1] ?? "";
  const host = /^(.*?)(?::\d{1,5})?$/.exec(authority)?.[1] ?? "";
  if (!isHostName(host))
    return `has no valid host name (and no user or password) after https://; write e.g. ${example}`;
  return undefined;
}
