// The certs:renew and node:reboot scripts. certs:renew: valid, shellcheck-clean bash whose restart order is the one that fails no
// request (apiserver out, etcd restarted, apiserver back and counted, then the others), and its
// timings taken from the spec's health checks. The order's effect is measured in the lab
// (test/e2e/cluster.test.ts).
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { renderCertsRenewScript } from "../../lib/render/certs-renew.ts";
import { renderNodeRebootScript } from "../../lib/render/node-reboot.ts";
import { loadSpec } from "../../lib/spec/load.ts";
import { requireTool } from "./tool-helpers.ts";

const spec = loadSpec("cluster.example.yaml");

/** Where `s` first occurs in `text` (it must). */
const position = (text: string) => (s: string) => {
  const i = text.indexOf(s);
  expect(i).toBeGreaterThan(-1);
  return i;
};

describe("certs:renew script", () => {
  const script = renderCertsRenewScript(spec);

  test("bash accepts it", () => {
    const r = spawnSync("bash", ["-n"], { input: script, encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  test.skipIf(!requireTool("shellcheck"))("shellcheck-clean", () => {
    const r = spawnSync("shellcheck", ["-s", "bash", "-"], { input: script, encoding: "utf8" });
    expect(r.stdout).toBe("");
    expect(r.status).toBe(0);
  });

  test("the apiserver leaves before etcd restarts and is back before the controller-manager and scheduler restart", () => {
    const at = position(script.slice(script.indexOf('say renew "kubeadm certs renew all"')));
    expect(at("stop_pod kube-apiserver")).toBeLessThan(at("restart_pod etcd"));
    expect(at("restart_pod etcd")).toBeLessThan(at("start_pod kube-apiserver"));
    expect(at("start_pod kube-apiserver")).toBeLessThan(at('sleep "$SETTLE"'));
    expect(at('sleep "$SETTLE"')).toBeLessThan(at("restart_pod kube-controller-manager"));
    expect(at("kubeadm certs renew all")).toBeLessThan(at("stop_pod kube-apiserver"));
  });

  test("a backup before the renewal; manifests held off the kubelet's directory and always put back", () => {
    expect(script.indexOf("tar -C /etc/kubernetes")).toBeLessThan(script.indexOf("out=$(kubeadm certs renew all"));
    expect(script).toContain('chmod 0600 "$backup"');
    expect(script).toContain("HOLD=$(mktemp -d /etc/kubernetes/kubeadm-ha-hold.XXXXXXXXXX)");
    expect(script).toContain("trap put_back EXIT");
  });

  test("only the last three backups stay (they hold private keys); other files are left alone", () => {
    const line = script.split("\n").find((l) => l.startsWith('find "$BACKUPS"'));
    expect(line).toBeDefined();
    const dir = mkdtempSync(join(tmpdir(), "kha-pki-backups-"));
    try {
      for (let i = 1; i <= 5; i++) {
        writeFileSync(join(dir, `pki-2026010${i}T000000Z.tar.gz`), "x");
        utimesSync(join(dir, `pki-2026010${i}T000000Z.tar.gz`), 1000 + i, 1000 + i);
      }
      writeFileSync(join(dir, "notes.txt"), "keep");
      const r = spawnSync("bash", ["-c", `set -euo pipefail; BACKUPS=${dir}; ${line}`], { encoding: "utf8" });
      expect(r.status).toBe(0);
      expect(readdirSync(dir).sort()).toEqual([
        "notes.txt",
        "pki-20260103T000000Z.tar.gz",
        "pki-20260104T000000Z.tar.gz",
        "pki-20260105T000000Z.tar.gz",
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("settle time from the spec's haproxy checks: rise x interval + 1 s", () => {
    const s = structuredClone(spec);
    s.loadBalancer.haproxy.healthCheck.rise = 4;
    s.loadBalancer.haproxy.healthCheck.interval = "2s";
    expect(renderCertsRenewScript(s)).toContain("SETTLE=9\n");
  });
});

describe("node:reboot script", () => {
  const script = renderNodeRebootScript(spec);

  test("bash accepts it", () => {
    const r = spawnSync("bash", ["-n"], { input: script, encoding: "utf8" });
    expect(r.status).toBe(0);
  });

  test.skipIf(!requireTool("shellcheck"))("shellcheck-clean", () => {
    const r = spawnSync("shellcheck", ["-s", "bash", "-"], { input: script, encoding: "utf8" });
    expect(r.stdout).toBe("");
  });

  test("the VIP leaves, then the apiserver, then etcd; the reboot is scheduled before the manifests are let go", () => {
    const at = position(script);
    expect(at("kubeadm-ha-lb-drain drain")).toBeLessThan(at("stop_pod kube-apiserver\n"));
    expect(at("stop_pod kube-apiserver\n")).toBeLessThan(at("stop_pod etcd\n"));
    expect(at("stop_pod etcd\n")).toBeLessThan(at("systemd-run"));
    // Until the reboot is scheduled, any exit puts the manifests back.
    expect(at("trap put_back EXIT")).toBeLessThan(at("systemd-run"));
    expect(at("systemd-run")).toBeLessThan(at("trap - EXIT"));
    // The scheduled step stops the kubelet before the manifests return, so it cannot start the pods.
    const step = script.slice(at('step="'), at("systemd-run"));
    expect(step.indexOf("systemctl stop kubelet")).toBeLessThan(step.indexOf("mv -f"));
    expect(step.indexOf("mv -f")).toBeLessThan(step.indexOf("systemctl reboot"));
  });
});
