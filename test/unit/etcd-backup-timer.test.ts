// The scheduled-backup step: units systemd accepts, a shellcheck-clean script, and
// retention that keeps the newest verified snapshots (run against a fake etcdctl).
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  BACKUP_SCRIPT,
  etcdBackupScript,
  etcdBackupTimerStep,
  NODE_BACKUP_DIR,
} from "../../lib/render/etcd-backup-timer.ts";
import { parseSpec } from "../../lib/spec/load.ts";

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

const tool = (name: string) => spawnSync("sh", ["-c", `command -v ${name}`]).status === 0;
const inCI = process.env.CI === "true";

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

  test("script and phase script are shellcheck-clean", () => {
    if (!tool("shellcheck")) {
      if (inCI) throw new Error("shellcheck is not installed");
      return;
    }
    for (const text of [file(".sh").content, step.script]) {
      const r = spawnSync("shellcheck", ["-s", "bash", "-"], { input: text, encoding: "utf8" });
      expect(r.stdout).toBe("");
      expect(r.status).toBe(0);
    }
  });

  test("systemd-analyze verify accepts the units", () => {
    if (!tool("systemd-analyze")) {
      if (inCI) throw new Error("systemd-analyze is not installed");
      return;
    }
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

  test("no schedule: the step removes a timer instead of installing one", () => {
    const off = structuredClone(spec);
    off.etcd.backup.schedule = "";
    const s = etcdBackupTimerStep(off, cp1);
    expect(s.files).toEqual([]);
    expect(s.script).toContain("systemctl disable --now kubeadm-ha-etcd-backup.timer");
  });

  test("retention keeps the newest verified snapshots; a failed snapshot deletes nothing", () => {
    const dir = mkdtempSync(join(tmpdir(), "kubeadm-ha-timer-run-"));
    try {
      const bin = join(dir, "bin");
      const backups = join(dir, "backups");
      mkdirSync(bin);
      // A stand-in etcdctl: writes a file for `snapshot save`, JSON for `snapshot status`, fails when FAIL exists.
      writeFileSync(
        join(bin, "etcdctl"),
        `#!/bin/sh
case "$*" in
  version) echo "etcdctl version: 3.4.23"; exit 0;;
  *"snapshot save"*) [ -e ${dir}/FAIL ] && exit 1; for last; do :; done; echo data > "$last"; exit 0;;
  *"snapshot status"*) echo '{"hash":1,"revision":2,"totalKey":3,"totalSize":4}'; exit 0;;
esac
exit 2
`,
      );
      chmodSync(join(bin, "etcdctl"), 0o755);
      const script = join(dir, "backup.sh");
      writeFileSync(
        script,
        etcdBackupScript(spec, cp1)
          .replace(`DIR='${NODE_BACKUP_DIR}'`, `DIR='${backups}'`)
          .replace("KHA_TOOLS='/var/lib/kubeadm-ha/bin'", `KHA_TOOLS='${dir}/none'`),
        { mode: 0o700 },
      );
      const env = { ...process.env, PATH: `${bin}:/usr/bin:/bin` };
      // Older snapshots from earlier days, plus an incomplete one (no .sha256) that must not count.
      mkdirSync(backups, { mode: 0o755 });
      for (const d of ["20250101", "20250102", "20250103", "20250104"]) {
        writeFileSync(join(backups, `prod-cp-1-${d}T030000Z.db`), "old");
        writeFileSync(join(backups, `prod-cp-1-${d}T030000Z.db.sha256`), "x");
      }
      writeFileSync(join(backups, "prod-cp-1-20250105T030000Z.db"), "incomplete");
      const r = spawnSync("bash", [script], { env, encoding: "utf8" });
      expect(r.stderr).toBe("");
      expect(r.status).toBe(0);
      expect(statSync(backups).mode & 0o777).toBe(0o700);
      const good = readdirSync(backups)
        .filter((f) => f.endsWith(".db") && existsSync(join(backups, `${f}.sha256`)))
        .sort();
      expect(good.length).toBe(3);
      expect(good.slice(0, 2)).toEqual(["prod-cp-1-20250103T030000Z.db", "prod-cp-1-20250104T030000Z.db"]);
      const newest = good[2]!;
      expect(statSync(join(backups, newest)).mode & 0o777).toBe(0o600);
      expect(statSync(join(backups, `${newest}.sha256`)).mode & 0o777).toBe(0o600);
      expect(existsSync(join(backups, "prod-cp-1-20250105T030000Z.db"))).toBe(true);
      // The next run fails: every snapshot stays.
      writeFileSync(join(dir, "FAIL"), "");
      const before = readdirSync(backups).sort();
      const f = spawnSync("bash", [script], { env, encoding: "utf8" });
      expect(f.status).not.toBe(0);
      expect(readdirSync(backups).sort()).toEqual(before);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
