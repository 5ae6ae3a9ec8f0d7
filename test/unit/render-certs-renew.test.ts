// The certs:renew script: valid, shellcheck-clean bash whose restart order is the one that fails no
// request (apiserver out, etcd restarted, apiserver back and counted, then the others), and its
// timings taken from the spec's health checks. The order's effect is measured in the lab
// (test/e2e/cluster.test.ts).
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { renderCertsRenewScript } from "../../lib/render/certs-renew.ts";
import { loadSpec } from "../../lib/spec/load.ts";
import { requireTool } from "./tool-helpers.ts";

const spec = loadSpec("cluster.example.yaml");

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
    const body = script.slice(script.indexOf('say renew "kubeadm certs renew all"'));
    const at = (s: string) => {
      const i = body.indexOf(s);
      expect(i).toBeGreaterThan(-1);
      return i;
    };
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

  test("settle time from the spec's haproxy checks: rise x interval + 1 s", () => {
    const s = structuredClone(spec);
    s.loadBalancer.haproxy.healthCheck.rise = 4;
    s.loadBalancer.haproxy.healthCheck.interval = "2s";
    expect(renderCertsRenewScript(s)).toContain("SETTLE=9\n");
  });
});
