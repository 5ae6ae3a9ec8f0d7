// The synthesized stack: order, triggers, back-end equivalence, connections, and no secrets.
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { ensureSecrets, secretsPath } from "../../lib/secrets.ts";
import { parseSpec } from "../../lib/spec/load.ts";
import type { ClusterSpec } from "../../lib/spec/schema.ts";
import { dependsOn, EXAMPLE, steps, synthSpec, triggersOf } from "./stack-helpers.ts";

const builtin = (spec: { terraform: { resources: string } }) => {
  spec.terraform.resources = "builtin";
};

describe("stack order", () => {
  const { json } = synthSpec(EXAMPLE);
  const s = steps(json);

  test("one step per phase per node, with readable addresses", () => {
    expect(Object.keys(s).sort()).toEqual(
      [
        "prepare_cp_1",
        "prepare_cp_2",
        "prepare_cp_3",
        "prepare_worker_1",
        "prepare_worker_2",
        "loadbalancer_cp_1",
        "loadbalancer_cp_2",
        "loadbalancer_cp_3",
        "init_cp_1",
        "cni_cp_1",
        "join_cp_2",
        "join_cp_3",
        "join_worker_1",
        "join_worker_2",
        "etcd_backup_timer_cp_1",
        "etcd_backup_timer_cp_2",
        "etcd_backup_timer_cp_3",
      ].sort(),
    );
  });

  test("load balancers change one control plane at a time", () => {
    expect(dependsOn(s.loadbalancer_cp_1)).toEqual(["prepare_cp_1"]);
    expect(dependsOn(s.loadbalancer_cp_2)).toEqual(["loadbalancer_cp_1", "prepare_cp_2"]);
    expect(dependsOn(s.loadbalancer_cp_3)).toEqual(["loadbalancer_cp_2", "prepare_cp_3"]);
  });

  test("init waits for every load balancer; CNI follows init", () => {
    expect(dependsOn(s.init_cp_1)).toEqual([
      "loadbalancer_cp_1",
      "loadbalancer_cp_2",
      "loadbalancer_cp_3",
      "prepare_cp_1",
    ]);
    expect(dependsOn(s.cni_cp_1)).toEqual(["init_cp_1"]);
  });

  test("control planes join strictly one at a time, workers after them in parallel", () => {
    expect(dependsOn(s.join_cp_2)).toEqual(["cni_cp_1", "loadbalancer_cp_2", "prepare_cp_2"]);
    expect(dependsOn(s.join_cp_3)).toEqual(["cni_cp_1", "join_cp_2", "loadbalancer_cp_3", "prepare_cp_3"]);
    expect(dependsOn(s.join_worker_1)).toEqual(["cni_cp_1", "join_cp_3", "prepare_worker_1"]);
    expect(dependsOn(s.join_worker_2)).toEqual(["cni_cp_1", "join_cp_3", "prepare_worker_2"]);
    expect(dependsOn(s.join_worker_1)).not.toContain("join_worker_2");
  });
});

describe("triggers", () => {
  const base = steps(synthSpec(EXAMPLE).json);

  test("a haproxy setting re-runs only the load-balancer steps", () => {
    const changed = steps(synthSpec(EXAMPLE, (spec) => (spec.loadBalancer.haproxy.timeouts.client = "2h")).json);
    const differing = Object.keys(base).filter(
      (id) => JSON.stringify(triggersOf(base[id])) !== JSON.stringify(triggersOf(changed[id])),
    );
    expect(differing.sort()).toEqual(["loadbalancer_cp_1", "loadbalancer_cp_2", "loadbalancer_cp_3"]);
  });

  test("dropping etcd.backup.schedule keeps the timer steps, same order, new triggers: deploy runs their removal", () => {
    const off = steps(synthSpec(EXAMPLE, (spec) => (spec.etcd.backup.schedule = "")).json);
    expect(Object.keys(off).sort()).toEqual(Object.keys(base).sort());
    const differing = Object.keys(base).filter(
      (id) => JSON.stringify(triggersOf(base[id])) !== JSON.stringify(triggersOf(off[id])),
    );
    const timers = ["etcd_backup_timer_cp_1", "etcd_backup_timer_cp_2", "etcd_backup_timer_cp_3"];
    expect(differing.sort()).toEqual(timers);
    expect(dependsOn(off.etcd_backup_timer_cp_1)).toEqual(["init_cp_1"]);
    expect(dependsOn(off.etcd_backup_timer_cp_2)).toEqual(["join_cp_2"]);
    for (const id of timers) {
      expect(dependsOn(off[id])).toEqual(dependsOn(base[id]));
      const uploaded = (off[id].provisioner as any[]).map((p) => p.file?.content ?? "").join("\n");
      expect(uploaded).toContain("systemctl disable --now kubeadm-ha-etcd-backup.timer");
    }
  });

  test("triggers are stable across synths (nothing random or time-based)", () => {
    const again = steps(synthSpec(EXAMPLE).json);
    for (const id of Object.keys(base)) expect(triggersOf(again[id])).toEqual(triggersOf(base[id]));
  });

  test("a Kubernetes version change keeps init/join identities (addresses) — scripts decide, nothing is reset", () => {
    const changed = steps(synthSpec(EXAMPLE.replace('"1.31.4"', '"1.32.1"')).json);
    expect(Object.keys(changed).sort()).toEqual(Object.keys(base).sort());
    for (const r of Object.values(changed)) {
      for (const p of r.provisioner ?? []) expect(p.when).toBeUndefined();
    }
  });
});

describe("back-ends", () => {
  const hashicorp = synthSpec(EXAMPLE);
  const air = synthSpec(EXAMPLE, builtin);

  test("hashicorp uses null_resource + local_file, builtin only terraform_data", () => {
    expect(Object.keys(hashicorp.json.resource).sort()).toEqual(["local_file", "null_resource"]);
    expect(Object.keys(air.json.resource)).toEqual(["terraform_data"]);
    expect(Object.keys(hashicorp.json.provider ?? {}).sort()).toEqual(["local", "null"]);
    expect(air.json.provider).toBeUndefined();
  });

  test("both back-ends have the same steps, dependencies, connections and provisioners", () => {
    const a = steps(hashicorp.json);
    const b = steps(air.json);
    expect(Object.keys(b).sort()).toEqual(Object.keys(a).sort());
    const normalize = (r: any) =>
      JSON.stringify({
        triggers: triggersOf(r),
        deps: dependsOn(r),
        connection: r.connection,
        provisioner: r.provisioner,
      });
    for (const id of Object.keys(a)) expect(normalize(b[id])).toEqual(normalize(a[id]));
  });

  test("every rendered file is reviewable: local_file (hashicorp) or written at synth (builtin)", () => {
    const files = Object.values(hashicorp.json.resource.local_file) as any[];
    expect(files.some((f) => f.filename.endsWith("/cp-1/etc/haproxy/haproxy.cfg"))).toBe(true);
    expect(files.every((f) => f.filename.startsWith("${path.module}/"))).toBe(true);
    const haproxy = join(air.renderDir, "cp-1/etc/haproxy/haproxy.cfg");
    expect(existsSync(haproxy)).toBe(true);
    expect(readFileSync(haproxy, "utf8")).toContain("backend");
  });
});

describe("secrets", () => {
  // With VRRP v2 the password reaches keepalived.conf's include (v3 has no authentication): check both.
  const vrrp2 = (spec: ClusterSpec) => {
    builtin(spec);
    spec.loadBalancer.vrrp.version = 2;
    spec.loadBalancer.vrrp.advertIntervalSeconds = 1;
  };
  test.each([
    ["VRRP v3", builtin],
    ["VRRP v2", vrrp2],
  ] as const)(
    "no secret value appears in cdk.tf.json or the rendered tree; they arrive as sensitive variables (%s)",
    (_, mutate) => {
      const syn = synthSpec(EXAMPLE, mutate);
      expect(syn.spec.loadBalancer.haproxy.stats.enabled).toBe(true);
      const secrets = ensureSecrets(syn.spec);
      const values = [secrets.vrrpPassword, secrets.statsPassword, secrets.joinSeed];
      const keyBody = secrets.caKey.split("\n")[1]!;
      for (const v of [...values, keyBody]) {
        expect(syn.text.includes(v)).toBe(false);
        expect(Bun.spawnSync(["grep", "-rqF", v, syn.renderDir]).exitCode).toBe(1);
      }
      for (const name of ["vrrp_password", "stats_password", "join_seed", "ca_key"]) {
        expect(syn.json.variable[name].sensitive).toBe(true);
        expect(syn.json.variable[name].default).toBeUndefined();
      }
    },
  );

  test("secrets file is 0600 in a 0700 directory and stable across synths", () => {
    const spec = parseSpec(EXAMPLE);
    const a = ensureSecrets(spec);
    const b = ensureSecrets(spec);
    expect(b).toEqual(a);
    expect(statSync(secretsPath(spec)).mode & 0o777).toBe(0o600);
    expect(statSync(join(secretsPath(spec), "..")).mode & 0o777).toBe(0o700);
  });

  test("remote-exec commands carry no secret, so their output stays visible", () => {
    const s = steps(synthSpec(EXAMPLE).json);
    const bodies = Object.values(s).flatMap((r) => (r.provisioner ?? []).map((p: any) => p["remote-exec"]));
    const remoteExecs = bodies.filter((b) => b !== undefined);
    // Two per run (make the stage, run the script), three runs per join and per init: an empty list would pass vacuously.
    const joins = Object.keys(s).filter((id) => id.startsWith("join_") || id.startsWith("init_")).length;
    expect(remoteExecs).toHaveLength(2 * Object.keys(s).length + 4 * joins);
    // (a run on another node carries its connection, whose host key is not a secret)
    for (const body of remoteExecs) expect(JSON.stringify(body.inline)).not.toContain("var.");
  });
});

describe("join rounds and staging", () => {
  const { json } = synthSpec(EXAMPLE);
  const s = steps(json);
  const prov = (r: any) => r.provisioner.map((p: any) => ({ type: Object.keys(p)[0]!, ...p[Object.keys(p)[0]!] }));

  test("each join mints its token on the join-via control plane, joins, then deletes the token there", () => {
    const cps = ["cp_1", "cp_2", "cp_3"];
    const lookup = (field: (cp: string) => string) =>
      `\${{${cps.map((cp) => `"${cp.replace("_", "-")}" = "${field(cp)}"`).join(", ")}}[var.join_via]}`;
    for (const id of ["init_cp_1", "join_cp_2", "join_cp_3", "join_worker_1", "join_worker_2"]) {
      const ps = prov(s[id]);
      const runs = ps.filter((p: any) => p.type === "remote-exec").map((p: any) => p.inline[0]);
      expect(runs.filter((c: string) => c.includes("/run.sh"))).toHaveLength(3);
      const onJoinVia = ps.filter((p: any) => p.connection);
      // before and after runs connect to the control plane var.join_via names, verifying that
      // one's host key; the step's own run to the node itself
      expect(new Set(onJoinVia.map((p: any) => p.connection.host))).toEqual(
        new Set([lookup((cp) => s.init_cp_1.connection.host.replace("163", String(162 + Number(cp.at(-1)))))]),
      );
      expect(new Set(onJoinVia.map((p: any) => p.connection.host_key))).toEqual(
        new Set([lookup((cp) => `var.host_key_${cp}`).replace(/"(var\.host_key_cp_\d)"/g, "$1")]),
      );
      expect(ps.filter((p: any) => !p.connection).length).toBeGreaterThan(0);
      // every run learns the join-via name; nothing else is taken from the variable
      expect(ps.filter((p: any) => p.type === "file" && p.destination.endsWith("/join-via")).length).toBeGreaterThan(0);
    }
    expect(json.variable.join_via.default).toBe("cp-1");
    expect(json.variable.join_via.validation[0].condition).toContain(
      'contains(["cp-1", "cp-2", "cp-3"], var.join_via)',
    );
  });

  test("round secrets are derived from the join seed and the step's own resource id: new on every run", () => {
    for (const id of ["init_cp_1", "join_cp_2", "join_worker_1"]) {
      const uploads = prov(s[id]).filter(
        (p: any) => p.type === "file" && /\/secrets\/(bootstrap-token|certificate-key)$/.test(p.destination),
      );
      expect(uploads.length).toBeGreaterThan(0);
      for (const u of uploads) {
        expect(u.content).toContain("var.join_seed");
        expect(u.content).toContain("self.id");
      }
    }
    expect(json.variable.bootstrap_token).toBeUndefined();
    expect(json.variable.certificate_key).toBeUndefined();
  });

  test("every stage is created exclusively, 0700, under a name that holds the resource id (nothing removed first)", () => {
    for (const r of Object.values(s)) {
      for (const p of prov(r).filter((x: any) => x.type === "remote-exec" && x.inline[0].includes("mkdir"))) {
        expect(p.inline[0]).toMatch(/^mkdir -m 0700 \/tmp\/kubeadm-ha-stage\.\$\{self\.id\}\.[a-z-]+ && /);
        expect(p.inline[0]).not.toContain("rm ");
      }
      for (const p of prov(r).filter((x: any) => x.type === "file"))
        expect(p.destination).toStartWith("/tmp/kubeadm-ha-stage.${self.id}.");
    }
  });
});

describe("connections", () => {
  test("sudo user: scripts run with sudo -n; host keys unknown -> required variables, never blind trust", () => {
    const { json } = synthSpec(EXAMPLE);
    const s = steps(json);
    const last = s.prepare_cp_1.provisioner.at(-1)["remote-exec"].inline[0];
    expect(last).toStartWith("sudo -n bash ");
    expect(s.prepare_cp_1.connection.host_key).toBe("${var.host_key_cp_1}");
    expect(json.variable.host_key_cp_1.default).toBeUndefined();
  });
});

describe("destroy and backends", () => {
  const withKey = (spec: any) => {
    spec.ssh.privateKeyPath = "/nonexistent/id_ed25519";
  };

  test("by default nothing runs on destroy: hosts are left untouched", () => {
    const s = steps(synthSpec(EXAMPLE).json);
    expect(Object.keys(s).some((id) => id.startsWith("membership_"))).toBe(false);
    for (const r of Object.values(s))
      for (const p of r.provisioner ?? []) expect(JSON.stringify(p)).not.toContain("destroy");
  });

  test("resetOnDestroy: a per-node reset that runs last on destroy and never on a settings change", () => {
    for (const resources of ["hashicorp", "builtin"]) {
      const { json } = synthSpec(EXAMPLE, (spec) => {
        withKey(spec);
        spec.terraform.resetOnDestroy = true;
        spec.terraform.resources = resources as "hashicorp";
      });
      const s = steps(json);
      const m = s.membership_cp_2;
      expect(m.provisioner).toHaveLength(1);
      expect(m.provisioner[0]["remote-exec"].when).toBe("destroy");
      const inline: string = m.provisioner[0]["remote-exec"].inline[0];
      expect(inline).toContain("kubeadm reset -f");
      // The same reset as node:remove: systemd's keepalived and haproxy stop too (kubeadm reset
      // leaves them, and a left-over keepalived takes the VIP once the others stop advertising).
      expect(inline).toContain("for unit in keepalived haproxy");
      expect(inline).toContain('systemctl disable --now --quiet "$unit"');
      // destroy-time connections may only use self
      expect(m.connection.host).toMatch(/^\$\{self\.(triggers|input)\.host\}$/);
      expect(JSON.stringify(m.connection)).not.toContain("var.");
      expect(Object.keys(triggersOf(m)).sort()).toContain("node");
      for (const id of ["prepare_cp_2", "loadbalancer_cp_2", "join_cp_2"])
        expect(dependsOn(s[id])).toContain("membership_cp_2");
    }
  });

  test("resetOnDestroy with the key only in a variable is refused, naming the field", () => {
    expect(() =>
      synthSpec(EXAMPLE, (spec) => {
        spec.ssh.privateKeyPath = undefined;
        spec.terraform.resetOnDestroy = true;
      }),
    ).toThrow(/resetOnDestroy.*ssh.privateKeyPath/);
  });

  test("terraform.cloud selects the cloud backend with the named workspace", () => {
    const { json } = synthSpec(EXAMPLE, (spec) => {
      spec.terraform.cloud = { organization: "acme", workspace: "ha-prod" };
    });
    expect(json.terraform.cloud.organization).toBe("acme");
    expect(json.terraform.cloud.workspaces.name).toBe("ha-prod");
    expect(json.terraform.backend).toBeUndefined();
  });
});

describe("local commands", () => {
  test("preflight runs before any step touches a host; the kubeconfig is fetched after init", () => {
    const s = steps(synthSpec(EXAMPLE, undefined, { specFile: "/srv/specs/cluster.yaml" }).json);
    expect(s.preflight.provisioner[0]["local-exec"].command).toEndWith(
      "'scripts/preflight.ts' '--spec' '/srv/specs/cluster.yaml'",
    );
    for (const id of Object.keys(s).filter((k) => k.startsWith("prepare_")))
      expect(dependsOn(s[id])).toContain("preflight");
    expect(dependsOn(s.kubeconfig)).toEqual(["init_cp_1"]);
    expect(s.kubeconfig.provisioner[0]["local-exec"].command).toEndWith(
      "'scripts/kubeconfig.ts' '--force' '--spec' '/srv/specs/cluster.yaml'",
    );
  });

  test("a spec file path with quotes or shell syntax is passed quoted, not refused at synth", () => {
    const file = "/srv/it's $(here)/cluster.yaml";
    const s = steps(synthSpec(EXAMPLE, undefined, { specFile: file }).json);
    // Terraform's own ${ } is escaped as $${ }; sh then sees the single-quoted path.
    expect(s.preflight.provisioner[0]["local-exec"].command).toEndWith(
      "'scripts/preflight.ts' '--spec' '/srv/it'\\''s $(here)/cluster.yaml'",
    );
  });

  test("terraform.localCommands: false (remote runners) leaves them out", () => {
    const s = steps(
      synthSpec(EXAMPLE, (spec) => (spec.terraform.localCommands = false), { specFile: "/srv/specs/cluster.yaml" })
        .json,
    );
    expect(s.preflight).toBeUndefined();
    expect(s.kubeconfig).toBeUndefined();
    expect(dependsOn(s.prepare_cp_1)).toEqual([]);
  });
});
