// What the kubelet (and the container runtime) would refuse or break in a static pod that the
// kubelet stand-in, running containers[0] as a host process, would otherwise get away with:
// - no hostNetwork: the pod gets its own network namespace, so it cannot bind the host's ports
//   or add the VIP to the host's interface (the stand-in's processes always share the host's);
// - a file the process reads that no volumeMount brings into the container: in a container only
//   the image and the mounts exist (the stand-in sees the whole host), checked for the paths
//   in the command and in the config files the command names (one level deeper: the scripts
//   and state files a keepalived.conf or an entrypoint script names);
// - a hostPath of type Directory/File that does not exist on the host (the kubelet refuses to
//   start the pod: "hostPath type check failed");
// - keepalived or kube-vip without the capabilities they need (adding addresses, raw VRRP/ARP
//   sockets): EPERM in a container, while the stand-in runs them as root.
// Pure: the stand-in and the unit tests pass in how to look at the filesystem.

export interface PodDoc {
  kind?: string;
  spec?: {
    hostNetwork?: boolean;
    containers?: {
      command?: string[];
      args?: string[];
      securityContext?: { privileged?: boolean; capabilities?: { add?: string[] } };
      volumeMounts?: { name?: string; mountPath?: string }[];
    }[];
    volumes?: { name?: string; hostPath?: { path?: string; type?: string } }[];
  };
}

export interface Fs {
  kind(path: string): "file" | "dir" | undefined;
  read(path: string): string | undefined;
}

/** Host paths a container never sees unless mounted; image content and kernel filesystems are not checked. */
const HOST_ONLY = /^\/(etc|run|var|srv|opt|home|root|mnt)\//;
const ABSOLUTE_PATH = /(?<![\w.:/-])\/(?:etc|run|var|srv|opt|home|root|mnt)\/[\w.@+/-]*[\w]/g;
/** What each daemon needs to do its job in a container (keepalived's and kube-vip's documented manifests). */
export const REQUIRED_CAPABILITIES: Readonly<Record<string, readonly string[]>> = {
  keepalived: ["NET_ADMIN", "NET_BROADCAST", "NET_RAW"],
  "kube-vip": ["NET_ADMIN", "NET_RAW"],
};

const under = (path: string, dir: string) => path === dir || path.startsWith(dir.endsWith("/") ? dir : `${dir}/`);

/**
 * Problems that would stop this pod working under a real kubelet; empty when none. `imagePaths`:
 * directories that stand for the image's own content (the lab's stand-in programs run from the
 * checkout bound into the hosts, as an image would carry its binary).
 */
export function podProblems(pod: PodDoc, fs: Fs, imagePaths: readonly string[] = []): string[] {
  const problems: string[] = [];
  const c = pod.spec?.containers?.[0];
  if (!c) return ["no containers"];
  const argv = [...(c.command ?? []), ...(c.args ?? [])].map(String);
  if (pod.spec?.hostNetwork !== true)
    problems.push("hostNetwork is not true: the pod would get its own network namespace, not the host's");

  const volumes = new Map((pod.spec?.volumes ?? []).map((v) => [v.name ?? "", v]));
  const mounts: string[] = [];
  for (const m of c.volumeMounts ?? []) {
    const v = volumes.get(m.name ?? "");
    if (!v) {
      problems.push(`volumeMount ${m.name} names no volume`);
      continue;
    }
    const hp = v.hostPath;
    if (hp?.path) {
      const kind = fs.kind(hp.path);
      if (hp.type === "Directory" && kind !== "dir")
        problems.push(`hostPath ${hp.path} (type Directory) does not exist`);
      if (hp.type === "File" && kind !== "file") problems.push(`hostPath ${hp.path} (type File) does not exist`);
    }
    if (m.mountPath) mounts.push(m.mountPath);
  }

  const inImage = (p: string) => imagePaths.some((d) => under(p, d));
  const mounted = (p: string) => mounts.some((m) => under(p, m)) || inImage(p);
  const pathsIn = (text: string) => [...text.matchAll(ABSOLUTE_PATH)].map((m) => m[0]);
  const fromArgv = argv.flatMap((a) => pathsIn(a)).filter((p) => HOST_ONLY.test(p));
  const seen = new Set<string>();
  const check = (paths: string[], where: string, depth: number) => {
    for (const p of paths) {
      if (seen.has(p)) continue;
      seen.add(p);
      if (!mounted(p)) {
        problems.push(`${p} (${where}) is under no volumeMount: the container would not see it`);
        continue;
      }
      // The image's own files are its business (what a binary reads is not a config the pod brings).
      if (depth > 0 && !inImage(p) && fs.kind(p) === "file") {
        const text = fs.read(p);
        if (text !== undefined) check(pathsIn(text), `named in ${p}`, depth - 1);
      }
    }
  };
  check(fromArgv, "in the command", 2);

  const binary = argv[0]?.split("/").pop() ?? "";
  const needed = REQUIRED_CAPABILITIES[binary === "kube-vip" || argv.includes("manager") ? "kube-vip" : binary];
  if (needed && !c.securityContext?.privileged) {
    const have = new Set(c.securityContext?.capabilities?.add ?? []);
    const missing = needed.filter((cap) => !have.has(cap) && !have.has(`CAP_${cap}`));
    if (missing.length > 0)
      problems.push(`${binary} needs capabilities ${missing.join(", ")} (securityContext.capabilities.add)`);
  }
  return problems;
}
