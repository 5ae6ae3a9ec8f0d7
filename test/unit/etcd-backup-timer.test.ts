// The scheduled-backup step: units systemd accepts, a shellcheck-clean script, retention
// that keeps the newest verified snapshots (run against a fake etcdctl), and its removal
// when the spec drops the schedule (run as root against a systemctl stand-in).
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  BACKUP_SCRIPT,
  BACKUP_TIMER_PATHS,
  etcdBackupScript,
  etcdBackupTimerStep,
  NODE_BACKUP_DIR,
} from "../../lib/render/etcd-backup-timer.ts";
import { renderCluster } from "../../lib/render/index.ts";
import { caCertHash, generateSecrets } from "../../lib/secrets.ts";
import { parseSpec } from "../../lib/spec/load.ts";
import type { ClusterSpec } from "../../lib/spec/schema.ts";
import { requireIsolation, requireTool } from "./tool-helpers.ts";

const spec = parseSpec(`
name: prod
kubernetes: { version: "1.31.4", packages: { source: preinstalled } }
controlPlaneEndpoint: { vip: 10.0.0.10, interface: eth0, prefix: 24 }
nodes:
  - { name: cp-1, address: 10.0.0.11, role: control-plane }
  - { name: cp-2, address: 10.0.0.12, role: control-plane }
  - { name: cp-3, address: 10.0.0.13, role: control-plane }
etcd: { backup: { retention: 3, schedule: "*-*-* 03:00:00" } }
`);
const cp1 = spec.nodes[0]!;
const unscheduled = structuredClone(spec);
unscheduled.etcd.backup.schedule = "";

/**
 * A control plane for whole phase scripts: /etc, /usr/local and /var overlaid in a private mount
 * namespace (root), and a systemctl stand-in that keeps unit state in the sandbox. It is strict
 * where systemctl is: enable/disable need the unit file, start needs a daemon-reload after the
 * file appeared, enablement is the [Install] symlink.
 */
function sandbox() {
  const dir = mkdtempSync(join(tmpdir(), "kubeadm-ha-timer-host-"));
  const mounts = ["/etc", "/usr/local", "/var"];
  for (const m of mounts) for (const d of ["upper", "work"]) mkdirSync(join(dir, d, m), { recursive: true });
  for (const d of ["bin", "state"]) mkdirSync(join(dir, d));
  writeFileSync(
    join(dir, "bin", "systemctl"),
    `#!/bin/bash
set -u
echo "$*" >>"$SYSTEMD_STATE/log"
quiet=0 now=0 args=()
for a in "$@"; do
  case "$a" in --quiet | -q) quiet=1 ;; --now) now=1 ;; -*) echo "systemctl stand-in: unsupported $a" >&2; exit 2 ;; *) args+=("$a") ;; esac
done
cmd="\${args[0]:-}" unit="\${args[1]:-}"
file="/etc/systemd/system/$unit"
case "$cmd" in
  daemon-reload) ls /etc/systemd/system >"$SYSTEMD_STATE/loaded" ;;
  enable | disable)
    [ -f "$file" ] || { echo "Failed to $cmd unit: Unit file $unit does not exist." >&2; exit 1; }
    want="$(sed -n 's/^WantedBy=//p' "$file")"
    [ -n "$want" ] || { echo "The unit files have no installation config (WantedBy=...)" >&2; exit 1; }
    if [ "$cmd" = enable ]; then
      mkdir -p "/etc/systemd/system/$want.wants" && ln -sf "$file" "/etc/systemd/system/$want.wants/$unit"
      [ "$now" = 0 ] || touch "$SYSTEMD_STATE/active-$unit"
    else
      rm -f "/etc/systemd/system/$want.wants/$unit"
      [ "$now" = 0 ] || rm -f "$SYSTEMD_STATE/active-$unit"
    fi ;;
  start | restart)
    [ -f "$file" ] && grep -qxF "$unit" "$SYSTEMD_STATE/loaded" 2>/dev/null || { echo "Failed to $cmd $unit: Unit $unit not found." >&2; exit 5; }
    touch "$SYSTEMD_STATE/active-$unit" ;;
  stop) rm -f "$SYSTEMD_STATE/active-$unit" ;;
  is-active)
    if [ -e "$SYSTEMD_STATE/active-$unit" ]; then [ "$quiet" = 1 ] || echo active; exit 0; fi
    [ "$quiet" = 1 ] || echo inactive; exit 3 ;;
  *) echo "systemctl stand-in: unsupported: $*" >&2; exit 2 ;;
esac
`,
  );
  chmodSync(join(dir, "bin", "systemctl"), 0o755);
  const upper = (p: string) => join(dir, "upper", p);
  return {
    /** Where a host path ended up, if the scripts wrote it (the overlay's upper dir). */
    path: upper,
    state() {
      const files = readdirSync(join(dir, "state"));
      const wants = upper("/etc/systemd/system/timers.target.wants");
      return {
        active: files.filter((f) => f.startsWith("active-")).map((f) => f.slice("active-".length)),
        enabled: existsSync(wants) ? readdirSync(wants) : [],
      };
    },
    systemctl: () => readFileSync(join(dir, "state", "log"), "utf8"),
    /** Stage a step as the constructs upload it and run it as root inside the overlays. */
    run(step: { files: { path: string; content: string }[]; script: string }) {
      const stage = mkdtempSync(join(dir, "stage-"));
      for (const f of step.files) {
        mkdirSync(join(stage, "root", f.path, ".."), { recursive: true });
        writeFileSync(join(stage, "root", f.path), f.content);
      }
      writeFileSync(join(stage, "run.sh"), step.script);
      const overlays = mounts
        .map((m) => `mount -t overlay overlay -o lowerdir=${m},upperdir=${dir}/upper${m},workdir=${dir}/work${m} ${m}`)
        .join(" && ");
      const r = spawnSync(
        "unshare",
        ["-m", "--propagation", "private", "bash", "-c", `${overlays} && exec bash ${stage}/run.sh`],
        {
          encoding: "utf8",
          env: { ...process.env, PATH: `${dir}/bin:${process.env.PATH}`, SYSTEMD_STATE: join(dir, "state") },
        },
      );
      expect(existsSync(stage)).toBe(false);
      return { code: r.status, out: r.stdout, err: r.stderr };
    },
  };
}

describe("etcd backup timer step", () => {
  const step = etcdBackupTimerStep(spec, cp1);
  const file = (suffix: string) => step.files.find((f) => f.path.endsWith(suffix))!;

  test("timer, service and script with the spec's schedule and safe modes", () => {
    expect(step.phase).toBe("etcd-backup-timer");
    expect(file(".timer").content).toContain("OnCalendar=*-*-* 03:00:00\nPersistent=true\nRandomizedDelaySec=");
    expect(file(".service").content).toContain(`ExecStart=${BACKUP_SCRIPT}`);
    expect(file(".sh").mode).toBe("0700");
    expect(file(".sh").content).toContain(`DIR='${NODE_BACKUP_DIR}'`);
    expect(file(".sh").content).toContain("KEEP=3");
    expect(step.script).toContain("systemctl enable kubeadm-ha-etcd-backup.timer");
    expect(step.secrets).toEqual([]);
  });

  test.skipIf(!requireTool("shellcheck"))("script and phase script are shellcheck-clean", () => {
    for (const text of [file(".sh").content, step.script]) {
      const r = spawnSync("shellcheck", ["-s", "bash", "-"], { input: text, encoding: "utf8" });
      expect(r.stdout).toBe("");
      expect(r.status).toBe(0);
    }
  });

  test.skipIf(!requireTool("systemd-analyze"))("systemd-analyze verify accepts the units", () => {
    const dir = mkdtempSync(join(tmpdir(), "kubeadm-ha-timer-"));
    try {
      const script = join(dir, "etcd-backup.sh");
      writeFileSync(script, file(".sh").content, { mode: 0o700 });
      // The unit names the script's installed path; point it at the copy that exists here.
      writeFileSync(
        join(dir, "kubeadm-ha-etcd-backup.service"),
        file(".service").content.replace(BACKUP_SCRIPT, script),
      );
      writeFileSync(join(dir, "kubeadm-ha-etcd-backup.timer"), file(".timer").content);
      const r = spawnSync(
        "systemd-analyze",
        ["verify", join(dir, "kubeadm-ha-etcd-backup.timer"), join(dir, "kubeadm-ha-etcd-backup.service")],
        {
          encoding: "utf8",
          env: { ...process.env, SYSTEMD_LOG_LEVEL: "warning" },
        },
      );
      const complaints = `${r.stdout}${r.stderr}`.split("\n").filter((l) => l.includes("kubeadm-ha-etcd-backup"));
      expect(complaints).toEqual([]);
      const cal = spawnSync("systemd-analyze", ["calendar", spec.etcd.backup.schedule], { encoding: "utf8" });
      expect(cal.status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("no schedule: every control plane still gets the step, and it removes the timer instead of installing one", () => {
    const ca = generateSecrets().caCert;
    const ctx = { caCertPem: ca, caCertHash: caCertHash(ca) };
    const timerSteps = (sp: ClusterSpec) => renderCluster(sp, ctx).filter((st) => st.phase === "etcd-backup-timer");
    expect(timerSteps(spec).map((st) => [st.node.name, st.files.length, st.absent])).toEqual([
      ["cp-1", 3, undefined],
      ["cp-2", 3, undefined],
      ["cp-3", 3, undefined],
    ]);
    const steps = timerSteps(unscheduled);
    expect(steps.map((st) => st.node.name)).toEqual(["cp-1", "cp-2", "cp-3"]);
    for (const st of steps) {
      expect(st.files).toEqual([]);
      expect(st.absent).toEqual([...BACKUP_TIMER_PATHS]);
      expect(st.script).toContain("systemctl disable --now kubeadm-ha-etcd-backup.timer");
    }
    // The files the removal deletes are exactly those the scheduled step installs.
    expect(etcdBackupTimerStep(spec, cp1).files.map((f) => f.path)).toEqual([...BACKUP_TIMER_PATHS]);
  });

  test.skipIf(!requireTool("shellcheck"))("the removal script is shellcheck-clean", () => {
    const r = spawnSync("shellcheck", ["-s", "bash", "-"], {
      input: etcdBackupTimerStep(unscheduled, cp1).script,
      encoding: "utf8",
    });
    expect(r.stdout).toBe("");
    expect(r.status).toBe(0);
  });

  test.skipIf(!requireIsolation())(
    "install, then remove after the schedule is dropped, then remove again: run as root with /etc, /usr/local and /var overlaid",
    () => {
      const h = sandbox();
      const install = h.run(etcdBackupTimerStep(spec, cp1));
      expect(install.err).toBe("");
      expect(install.code).toBe(0);
      for (const p of BACKUP_TIMER_PATHS) expect(existsSync(h.path(p))).toBe(true);
      expect(h.state()).toEqual({
        active: ["kubeadm-ha-etcd-backup.timer"],
        enabled: ["kubeadm-ha-etcd-backup.timer"],
      });
      // A snapshot the timer took, and the stamp Persistent= keeps: the snapshot stays, the stamp goes.
      mkdirSync(h.path(NODE_BACKUP_DIR), { recursive: true });
      writeFileSync(h.path(`${NODE_BACKUP_DIR}/prod-cp-1-20250101T030000Z.db`), "snapshot");
      mkdirSync(h.path("/var/lib/systemd/timers"), { recursive: true });
      writeFileSync(h.path("/var/lib/systemd/timers/stamp-kubeadm-ha-etcd-backup.timer"), "");

      const remove = h.run(etcdBackupTimerStep(unscheduled, cp1));
      expect(remove.err).toBe("");
      expect(remove.code).toBe(0);
      for (const p of BACKUP_TIMER_PATHS) expect(existsSync(h.path(p))).toBe(false);
      expect(existsSync(h.path("/var/lib/systemd/timers/stamp-kubeadm-ha-etcd-backup.timer"))).toBe(false);
      expect(h.state()).toEqual({ active: [], enabled: [] });
      expect(existsSync(h.path(`${NODE_BACKUP_DIR}/prod-cp-1-20250101T030000Z.db`))).toBe(true);
      expect(remove.out).toContain("snapshots in /var/backups/kubeadm-ha/etcd are kept");
      const log = h.systemctl();
      expect(log.slice(log.indexOf("disable --now kubeadm-ha-etcd-backup.timer"))).toContain("daemon-reload");

      const again = h.run(etcdBackupTimerStep(unscheduled, cp1));
      expect(again.code).toBe(0);
      expect(again.out).toContain("nothing to remove");
    },
  );
  /**
   * The rendered backup script, runnable here: backups in `backups`, a stand-in etcdctl that writes a
   * file for `snapshot save` (and fails when `dir`/FAIL exists), and a date that prints $STAMP.
   */
  let scripts = 0;
  function runnable(dir: string, backups: string, s = spec, node = cp1) {
    const bin = join(dir, "bin");
    mkdirSync(bin, { recursive: true });
    writeFileSync(
      join(bin, "etcdctl"),
      `#!/bin/sh
case "$*" in
  version) echo "etcdctl version: 3.4.23"; exit 0;;
  *"snapshot save"*) [ -e ${dir}/FAIL ] && exit 1; for last; do :; done; echo "data $STAMP" > "$last"; exit 0;;
  *"snapshot status"*) echo '{"hash":1,"revision":2,"totalKey":3,"totalSize":4}'; exit 0;;
esac
exit 2
`,
    );
    writeFileSync(
      join(bin, "date"),
      `#!/bin/sh\nif [ "$2" = "+%Y%m%dT%H%M%SZ" ]; then echo "$STAMP"; else exec /bin/date "$@"; fi\n`,
    );
    chmodSync(join(bin, "etcdctl"), 0o755);
    chmodSync(join(bin, "date"), 0o755);
    // Not named after cluster and node: prod + eu-cp-1 and prod-eu + cp-1 would share a name.
    const script = join(dir, `backup-${++scripts}.sh`);
    writeFileSync(
      script,
      etcdBackupScript(s, node)
        .replace(`DIR='${NODE_BACKUP_DIR}'`, `DIR='${backups}'`)
        .replace("KHA_TOOLS='/var/lib/kubeadm-ha/bin'", `KHA_TOOLS='${dir}/none'`),
      { mode: 0o700 },
    );
    return (stamp: string) =>
      spawnSync("bash", [script], {
        env: { ...process.env, PATH: `${bin}:/usr/bin:/bin`, STAMP: stamp },
        encoding: "utf8",
      });
  }
  const day = (d: number) => `202501${String(d).padStart(2, "0")}T030000Z`;
  const complete = (backups: string) =>
    readdirSync(backups)
      .filter((f) => f.endsWith(".db") && existsSync(join(backups, `${f}.sha256`)))
      .sort();

  test("retention keeps the newest verified snapshots; a failed snapshot deletes nothing", () => {
    const dir = mkdtempSync(join(tmpdir(), "kubeadm-ha-timer-run-"));
    try {
      const backups = join(dir, "backups");
      const backup = runnable(dir, backups);
      for (const d of [1, 2, 3, 4]) {
        const r = backup(day(d));
        expect(r.stderr).toBe("");
        expect(r.status).toBe(0);
      }
      expect(complete(backups)).toEqual([2, 3, 4].map((d) => `prod-cp-1-${day(d)}.db`));
      // An incomplete one (no .sha256) neither counts nor goes.
      writeFileSync(join(backups, `prod-cp-1-${day(5)}.db`), "incomplete");
      const r = backup(day(6));
      expect(r.stderr).toBe("");
      expect(r.status).toBe(0);
      expect(r.stdout).toContain(`retention: removed ${backups}/prod-cp-1-${day(2)}.db`);
      expect(statSync(backups).mode & 0o777).toBe(0o700);
      expect(complete(backups)).toEqual([3, 4, 6].map((d) => `prod-cp-1-${day(d)}.db`));
      const newest = join(backups, `prod-cp-1-${day(6)}.db`);
      for (const f of [newest, `${newest}.sha256`, `${newest}.json`]) expect(statSync(f).mode & 0o777).toBe(0o600);
      const sidecar = JSON.parse(readFileSync(`${newest}.json`, "utf8"));
      expect(sidecar).toMatchObject({ cluster: "prod", node: "cp-1", status: { revision: 2 } });
      expect(`${sidecar.sha256}  prod-cp-1-${day(6)}.db\n`).toBe(readFileSync(`${newest}.sha256`, "utf8"));
      expect(existsSync(join(backups, `prod-cp-1-${day(5)}.db`))).toBe(true);
      // The next run fails: every snapshot stays.
      writeFileSync(join(dir, "FAIL"), "");
      const before = readdirSync(backups).sort();
      const f = backup(day(7));
      expect(f.status).not.toBe(0);
      expect(readdirSync(backups).sort()).toEqual(before);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a shared directory: prod's node eu-cp-1 and prod-eu's node cp-1 write the same names; each keeps its own", () => {
    const dir = mkdtempSync(join(tmpdir(), "kubeadm-ha-timer-shared-"));
    try {
      const backups = join(dir, "backups");
      const two = (name: string, node: string) =>
        parseSpec(`
name: ${name}
kubernetes: { version: "1.31.4", packages: { source: preinstalled } }
controlPlaneEndpoint: { vip: 10.0.0.10, interface: eth0, prefix: 24 }
nodes:
  - { name: ${node}, address: 10.0.0.11, role: control-plane }
  - { name: cp-2, address: 10.0.0.12, role: control-plane }
  - { name: cp-3, address: 10.0.0.13, role: control-plane }
etcd: { backup: { retention: 2, schedule: "*-*-* 03:00:00" } }
`);
      const prod = two("prod", "eu-cp-1");
      const eu = two("prod-eu", "cp-1");
      const runProd = runnable(dir, backups, prod, prod.nodes[0]!);
      const runEu = runnable(dir, backups, eu, eu.nodes[0]!);
      // Interleaved days: prod on odd days, prod-eu on even ones, and prod-eu's are newer at the end.
      for (const d of [1, 2, 3, 4, 5, 6, 8, 10]) {
        const r = (d % 2 ? runProd : runEu)(day(d));
        expect(r.stderr).toBe("");
        expect(r.status).toBe(0);
      }
      const owner = (f: string) => JSON.parse(readFileSync(join(backups, `${f}.json`), "utf8")).cluster;
      const left = complete(backups);
      expect(left).toHaveLength(4);
      expect(left.filter((f) => owner(f) === "prod")).toEqual([3, 5].map((d) => `prod-eu-cp-1-${day(d)}.db`));
      expect(left.filter((f) => owner(f) === "prod-eu")).toEqual([8, 10].map((d) => `prod-eu-cp-1-${day(d)}.db`));
      // A file with the same name shape but no sidecar proving it is ours is never touched.
      writeFileSync(join(backups, `prod-eu-cp-1-${day(0)}.db`), "someone else's");
      writeFileSync(join(backups, `prod-eu-cp-1-${day(0)}.db.sha256`), "x");
      expect(runProd(day(11)).status).toBe(0);
      expect(existsSync(join(backups, `prod-eu-cp-1-${day(0)}.db`))).toBe(true);
      expect(complete(backups).filter((f) => f !== `prod-eu-cp-1-${day(0)}.db` && owner(f) === "prod")).toEqual(
        [5, 11].map((d) => `prod-eu-cp-1-${day(d)}.db`),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
