// Load-balancer renderers (seed sections 3-5), checked with the real tools:
// keepalived -t, haproxy -c, shellcheck, and a running haproxy + check script
// against TLS servers on loopback.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { renderCheckApiserverScript, renderCheckVipHeldScript } from "../../lib/render/check-apiserver.ts";
import {
  ETCD_LEADER_AWAY_SCRIPT,
  ETCD_LEADER_AWAY_UNIT,
  renderEtcdLeaderAwayScript,
} from "../../lib/render/etcd-leader-away.ts";
import {
  HAPROXY_DROPIN,
  HAPROXY_ENV_FILE,
  HAPROXY_SERVER_STATE_FILE,
  renderHaproxyCfg,
  STATS_PASSWORD_ENV,
} from "../../lib/render/haproxy.ts";
import { type KeepalivedPaths, renderKeepalivedConf } from "../../lib/render/keepalived.ts";
import { KEEPALIVED_DROPIN, LB_DRAIN_FILE, LB_DRAIN_SCRIPT, renderLbDrainScript } from "../../lib/render/lb-drain.ts";
import { loadBalancerStep } from "../../lib/render/loadbalancer.ts";
import { type ClusterSpec, ClusterSpecSchema } from "../../lib/spec/schema.ts";
import { controlPlanes, vrrpPriority, vrrpWeights } from "../../lib/spec/topology.ts";
import { selfSignedCert } from "./tool-helpers.ts";

const CI = process.env.CI === "true";
const IFACE = "kha0";

/** A tool the test needs: fail in CI when missing, skip elsewhere. */
function have(tool: string): boolean {
  if (Bun.which(tool)) return true;
  if (CI) throw new Error(`${tool} is required in CI (install the Debian package that provides it)`);
  return false;
}
const HAVE = {
  haproxy: have("haproxy"),
  keepalived: have("keepalived") && have("unshare") && have("ip"),
  shellcheck: have("shellcheck"),
  tls: have("openssl") && have("curl"),
};

interface SpecOpts {
  cps?: number;
  unicast?: boolean;
  version?: 2 | 3;
  advert?: number;
  stats?: boolean;
  port?: number;
  statsPort?: number;
  prefix?: number;
  sticky?: boolean;
  basePriority?: number;
  base?: string;
}
function makeSpec(o: SpecOpts = {}): ClusterSpec {
  const cps = o.cps ?? 3;
  const base = o.base ?? "198.18.0.";
  const nodes = [
    ...Array.from({ length: cps }, (_, i) => ({
      name: `cp-${i + 1}`,
      address: `${base}${11 + i}`,
      role: "control-plane",
    })),
    { name: "worker-1", address: `${base}31`, role: "worker" },
  ];
  return ClusterSpecSchema.parse({
    name: "lbtest",
    kubernetes: { version: "1.31.4" },
    nodes,
    controlPlaneEndpoint: {
      vip: `${base}100`,
      port: o.port ?? 8443,
      interface: IFACE,
      ...(o.prefix ? { prefix: o.prefix } : {}),
    },
    loadBalancer: {
      vrrp: {
        unicast: o.unicast ?? true,
        version: o.version ?? 2,
        advertIntervalSeconds: o.advert ?? 1,
        ...(o.sticky === undefined ? {} : { stickyVip: o.sticky }),
        ...(o.basePriority ? { basePriority: o.basePriority } : {}),
      },
      haproxy: { stats: { enabled: o.stats ?? true, ...(o.statsPort ? { port: o.statsPort } : {}) } },
    },
  });
}

const VARIANTS: Array<[string, SpecOpts]> = [
  ["3 CPs, v2 unicast, stats on", { cps: 3 }],
  ["5 CPs, v2 unicast, stats off", { cps: 5, stats: false }],
  ["3 CPs, v2 multicast, /24", { cps: 3, unicast: false, prefix: 24 }],
  ["3 CPs, v3 unicast, 0.1 s adverts", { cps: 3, version: 3, advert: 0.1 }],
  [
    "5 CPs, v3 multicast, 0.1 s adverts, not sticky",
    { cps: 5, version: 3, advert: 0.1, unicast: false, sticky: false },
  ],
];

let tmp = "";
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "kha-lb-"));
});
afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

function run(cmd: string[], env: Record<string, string | undefined> = {}): { code: number; out: string } {
  const r = Bun.spawnSync(cmd, {
    env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", ...env },
    stderr: "pipe",
    stdout: "pipe",
  });
  return { code: r.exitCode ?? -1, out: r.stdout.toString() + r.stderr.toString() };
}

// ---- keepalived -t ------------------------------------------------------------------------

let seq = 0;
/** Test paths for the files keepalived.conf points at, inside a fresh temp dir. */
function keepalivedFixture(secretLine: string | undefined, spec: ClusterSpec): { dir: string; paths: KeepalivedPaths } {
  const dir = join(tmp, `ka-${++seq}`);
  run(["mkdir", "-m", "0755", "-p", dir]);
  const node = controlPlanes(spec)[0]!;
  const paths: KeepalivedPaths = {
    secretInclude: join(dir, "secret.conf"),
    checkApiserver: join(dir, "check_apiserver.sh"),
    checkVipHeld: join(dir, "check_vip_held.sh"),
    haproxyState: join(dir, "haproxy.state"),
    drain: join(dir, "drain"),
  };
  if (secretLine !== undefined) writeFileSync(paths.secretInclude, `${secretLine}\n`, { mode: 0o600 });
  writeFileSync(paths.checkApiserver, renderCheckApiserverScript(spec, node), { mode: 0o755 });
  writeFileSync(paths.checkVipHeld, renderCheckVipHeldScript(spec, node), { mode: 0o755 });
  return { dir, paths };
}

/** keepalived -t in a private network namespace that has the VIP interface (a veth). */
function keepalivedTest(conf: string, dir: string): { code: number; out: string } {
  const file = join(dir, `keepalived-${++seq}.conf`);
  writeFileSync(file, conf);
  const ns = process.getuid?.() === 0 ? ["unshare", "-n"] : ["unshare", "-rn"];
  return run([
    ...ns,
    "sh",
    "-c",
    `ip link add ${IFACE} type veth peer name ${IFACE}p && ip link set ${IFACE} up && ip link set ${IFACE}p up && exec keepalived -t -l -D -f "$1"`,
    "sh",
    file,
  ]);
}

describe("keepalived.conf", () => {
  for (const [name, opts] of VARIANTS) {
    test.skipIf(!HAVE.keepalived)(`keepalived -t accepts every node's config: ${name}`, () => {
      const spec = makeSpec(opts);
      const { dir, paths } = keepalivedFixture("auth_pass Fk3pW9xy", spec);
      for (const node of controlPlanes(spec)) {
        const r = keepalivedTest(renderKeepalivedConf(spec, node, paths), dir);
        expect(r.out).toBe("");
        expect(r.code).toBe(0);
      }
    });
  }

  test.skipIf(!HAVE.keepalived)("the VRRP password reaches keepalived only through the include", () => {
    const spec = makeSpec();
    const node = controlPlanes(spec)[0]!;
    const { dir, paths } = keepalivedFixture(undefined, spec); // no secret file
    const conf = renderKeepalivedConf(spec, node, paths);
    expect(conf).not.toContain("auth_pass");
    const missing = keepalivedTest(conf, dir);
    expect(missing.code).not.toBe(0);
    expect(missing.out).toContain("no password given");
    writeFileSync(paths.secretInclude, "auth_pass Fk3pW9xy\n", { mode: 0o600 });
    expect(keepalivedTest(conf, dir)).toEqual({ code: 0, out: "" });
  });

  test("v3 has no authentication block, v2 includes the secret file", () => {
    const v3 = makeSpec({ version: 3, advert: 0.1 });
    const c3 = renderKeepalivedConf(v3, controlPlanes(v3)[0]!);
    expect(c3).not.toMatch(/authentication\s*\{/);
    expect(c3).toContain("vrrp_version 3");
    expect(c3).toContain("advert_int 0.1");
    const v2 = makeSpec();
    const c2 = renderKeepalivedConf(v2, controlPlanes(v2)[0]!);
    expect(c2).toMatch(/authentication \{\n\s+auth_type PASS\n\s+include \/etc\/keepalived\/kubeadm-ha-secret\.conf\n/);
  });

  test.each([3, 5])("priorities are distinct, descending and below 255 (%i CPs)", (cps) => {
    const spec = makeSpec({ cps });
    const prios = controlPlanes(spec).map((n) =>
      Number(/\n\s+priority (\d+)\n/.exec(renderKeepalivedConf(spec, n))?.[1]),
    );
    expect(prios).toHaveLength(cps);
    for (let i = 1; i < prios.length; i++) expect(prios[i]!).toBeLessThan(prios[i - 1]!);
    expect(Math.max(...prios)).toBeLessThan(255);
    expect(Math.min(...prios)).toBeGreaterThan(0);
  });

  test("every node starts BACKUP, without nopreempt, and with the VIP on the spec interface", () => {
    for (const [prefix, want] of [
      [undefined, "/32"],
      [24, "/24"],
    ] as const) {
      const spec = makeSpec({ prefix });
      for (const node of controlPlanes(spec)) {
        const conf = renderKeepalivedConf(spec, node);
        expect(conf).toMatch(/\n\s+state BACKUP\n/);
        expect(conf).not.toMatch(/^\s*nopreempt/m);
        expect(conf).not.toMatch(/^\s*vrrp_strict/m);
        expect(conf).toContain(`198.18.0.100${want} dev ${IFACE}`);
        expect(conf).toMatch(/\n\s+interface kha0\n/);
        expect(conf).toContain("virtual_router_id 51");
        expect(conf).toMatch(/garp_master_delay 1\n/);
      }
    }
  });

  test("two masters at once end with the winner's gratuitous ARPs: the loser adverts once more as it steps down", () => {
    const spec = makeSpec();
    const conf = renderKeepalivedConf(spec, controlPlanes(spec)[0]!);
    // Global: a master that hears a higher priority sends one more (lower) advert before it becomes backup ...
    expect(/global_defs \{[^}]*\n\s+vrrp_higher_prio_send_advert true\n[^}]*\}/.exec(conf)).not.toBeNull();
    // ... and the winner, hearing a lower priority, sends gratuitous ARPs at once and 1 s later.
    const instance = conf.slice(conf.indexOf("vrrp_instance"));
    expect(instance).toMatch(/\n\s+garp_lower_prio_repeat 5\n/);
    expect(instance).toMatch(/\n\s+garp_lower_prio_delay 1\n/);
  });

  test.each([3, 5])("each other control plane is a unicast peer and the node itself is not (%i CPs)", (cps) => {
    const spec = makeSpec({ cps });
    for (const node of controlPlanes(spec)) {
      const conf = renderKeepalivedConf(spec, node);
      const peers = /unicast_peer \{\n([^}]*)\}/.exec(conf)?.[1]?.trim().split(/\s+/) ?? [];
      const others = controlPlanes(spec)
        .filter((n) => n.name !== node.name)
        .map((n) => n.address);
      expect(peers.sort()).toEqual(others.sort());
      expect(peers).not.toContain(node.address);
      expect(conf).toContain(`unicast_src_ip ${node.address}\n`);
    }
    const multicast = makeSpec({ cps, unicast: false });
    expect(renderKeepalivedConf(multicast, controlPlanes(multicast)[0]!)).not.toMatch(/unicast_(peer|src_ip)/);
  });

  // Replays every election the weights must decide, with the numbers read back from the rendered files.
  test.each([
    [3, true],
    [5, true],
    [3, false],
    [5, false],
  ])(
    "the weights move the VIP off a failing node, keep it on a healthy holder, keep it when all fail (%i CPs, sticky %p)",
    (cps, sticky) => {
      const spec = makeSpec({ cps, sticky });
      const nodes = controlPlanes(spec).map((n) => {
        const conf = renderKeepalivedConf(spec, n);
        const num = (re: RegExp) => Number(re.exec(conf)?.[1] ?? 0);
        return {
          prio: num(/\n\s+priority (\d+)\n/),
          checkWeight: num(/vrrp_script chk_apiserver \{[^}]*weight (-?\d+)/),
          bonus: num(/vrrp_script chk_vip_held \{[^}]*weight (\d+)/),
        };
      });
      expect(nodes.every((n) => n.checkWeight < 0)).toBe(true);
      const eff = (i: number, holder: number, failed: Set<number>) => {
        const n = nodes[i]!;
        const p = n.prio + (failed.has(i) ? n.checkWeight : 0) + (i === holder ? n.bonus : 0);
        expect(p).toBeGreaterThanOrEqual(1);
        expect(p).toBeLessThanOrEqual(254);
        return p;
      };
      // VRRP: the highest effective priority ends up master (no ties: asserted distinct).
      const winner = (holder: number, failed: Set<number>) => {
        const ps = nodes.map((_, i) => eff(i, holder, failed));
        expect(new Set(ps).size).toBe(ps.length);
        return ps.indexOf(Math.max(...ps));
      };
      for (let holder = 0; holder < cps; holder++) {
        for (let mask = 0; mask < 1 << cps; mask++) {
          const failed = new Set(nodes.map((_, i) => i).filter((i) => mask & (1 << i)));
          const w = winner(holder, failed);
          if (failed.size < cps) expect(failed.has(w)).toBe(false); // some healthy: a healthy node wins
          if (sticky) {
            if (failed.size === cps) expect(w).toBe(holder); // all fail: the VIP stays where it is
            if (!failed.has(holder)) expect(w).toBe(holder); // a returning node does not steal it
          } else if (failed.size === cps) {
            expect(w).toBe(0); // all fail: every node loses the same, order (and a VIP) remain
          }
        }
      }
    },
  );

  test("the weights fit VRRP's range for every allowed count with the default base priority", () => {
    for (const cps of [3, 5, 7])
      for (const sticky of [true, false]) {
        const spec = makeSpec({ cps, sticky });
        const { checkWeight, holderBonus } = vrrpWeights(spec);
        const priorities = controlPlanes(spec).map((n) => vrrpPriority(spec, n));
        expect(Math.max(...priorities) + holderBonus).toBeLessThanOrEqual(254);
        expect(Math.min(...priorities) + checkWeight).toBeGreaterThanOrEqual(1);
      }
  });
});

// ---- haproxy -c -----------------------------------------------------------------------------

function haproxyCheck(cfg: string, env: Record<string, string | undefined>): { code: number; out: string } {
  const file = join(tmp, `haproxy-${++seq}.cfg`);
  // The server state file as the load-balancer phase leaves it before its check: empty (version line only).
  const state = join(tmp, "servers.state");
  writeFileSync(state, "1\n");
  writeFileSync(file, cfg.replace(HAPROXY_SERVER_STATE_FILE, state));
  return run(["haproxy", "-c", "-f", file], env);
}

describe("haproxy.cfg", () => {
  // haproxy 2.4 (Ubuntu 22.04, the oldest supported) knows .if/.elif/.else/.endif with one
  // predicate each — defined, feature, streq, strneq — and no !, && or || (those came in 2.5,
  // per the 2.4 and 2.5 configuration manuals). No 2.4 binary is available here, so the rendered
  // conditions are held to that grammar.
  test.each([
    [true, "stats on"],
    [false, "stats off"],
  ])("conditions stay inside haproxy 2.4's grammar (%p, %s)", (stats) => {
    const spec = makeSpec({ stats });
    const cfg = renderHaproxyCfg(spec, controlPlanes(spec)[0]!);
    const conditions = cfg.split("\n").filter((l) => /^\s*\.(if|elif)\b/.test(l));
    if (stats) expect(conditions.length).toBeGreaterThan(0);
    for (const line of conditions)
      expect(line.trim()).toMatch(
        /^\.(if|elif) (defined|feature)\([A-Za-z0-9_]+\)$|^\.(if|elif) (streq|strneq)\("[^"]*","[^"]*"\)$/,
      );
  });

  const FAKE_STATS = "Zq7-fake-stats-pw-Q1";
  for (const [name, opts] of VARIANTS) {
    test.skipIf(!HAVE.haproxy)(
      `haproxy -c accepts every node's config with the password in the environment: ${name}`,
      () => {
        const spec = makeSpec(opts);
        for (const node of controlPlanes(spec)) {
          const r = haproxyCheck(renderHaproxyCfg(spec, node), { [STATS_PASSWORD_ENV]: FAKE_STATS });
          expect(r.out).toContain("Configuration file is valid");
          expect(r.out).not.toContain("WARNING");
          expect(r.code).toBe(0);
        }
      },
    );
  }

  test.skipIf(!HAVE.haproxy)(
    "without the stats password in the environment the config check FAILS (stats on) and passes (stats off)",
    () => {
      const on = makeSpec({ stats: true });
      const cfg = renderHaproxyCfg(on, controlPlanes(on)[0]!);
      for (const value of [undefined, ""]) {
        const r = haproxyCheck(cfg, { [STATS_PASSWORD_ENV]: value });
        expect(r.code).toBe(1);
        expect(r.out).toContain(`${STATS_PASSWORD_ENV} is not set`);
      }
      const off = makeSpec({ stats: false });
      expect(haproxyCheck(renderHaproxyCfg(off, controlPlanes(off)[0]!), {}).code).toBe(0);
    },
  );

  test.each([3, 5])("backend: every control plane on :6443 with an HTTPS /readyz check (%i CPs)", (cps) => {
    const spec = makeSpec({ cps });
    const cfg = renderHaproxyCfg(spec, controlPlanes(spec)[0]!);
    const directives = cfg.split("\n").filter((l) => !/^\s*#/.test(l));
    expect(directives.filter((l) => l.includes("ssl-hello-chk"))).toEqual([]);
    for (const line of [
      "mode tcp",
      "bind *:8443",
      "balance roundrobin",
      "option httpchk",
      "http-check connect ssl",
      "http-check send meth GET uri /readyz",
      "http-check expect status 200",
      "option redispatch 1",
      "retries 3",
      "timeout connect 200ms",
      "timeout check 2s",
    ])
      expect(cfg).toContain(`\n  ${line}\n`);
    expect(cfg).toMatch(
      /default-server check check-ssl verify none inter 500ms fastinter 200ms downinter 1s fall 2 rise 2 on-marked-down shutdown-sessions observe layer4 error-limit 1 on-error mark-down\n/,
    );
    const servers = [...cfg.matchAll(/^ {2}server (\S+) (\S+)$/gm)].map((m) => `${m[1]} ${m[2]}`);
    expect(servers).toEqual(controlPlanes(spec).map((n) => `${n.name} ${n.address}:6443`));
  });

  test("client/server/tunnel timeouts are at least an hour by default", () => {
    const spec = makeSpec();
    const cfg = renderHaproxyCfg(spec, controlPlanes(spec)[0]!);
    const secs = (v: string) =>
      Number.parseInt(v, 10) * ({ ms: 0.001, s: 1, m: 60, h: 3600 }[v.replace(/^\d+/, "")] ?? Number.NaN);
    for (const t of ["client", "server", "tunnel"]) {
      const v = new RegExp(`\\n  timeout ${t} (\\S+)\\n`).exec(cfg)?.[1];
      expect(v).toBeDefined();
      expect(secs(v!)).toBeGreaterThanOrEqual(3600);
    }
  });

  test("the stats page is on the configured address with auth from the environment, or absent", () => {
    const spec = makeSpec({ statsPort: 9404 });
    const cfg = renderHaproxyCfg(spec, controlPlanes(spec)[0]!);
    expect(cfg).toContain("bind 127.0.0.1:9404");
    expect(cfg).toContain(`stats auth admin:"\${${STATS_PASSWORD_ENV}}"`);
    const off = makeSpec({ stats: false });
    expect(renderHaproxyCfg(off, controlPlanes(off)[0]!)).not.toContain("stats auth");
  });
});

// ---- the phase step -------------------------------------------------------------------------

describe("loadBalancerStep", () => {
  test("installs the ten files with the right modes and names both secrets", () => {
    const spec = makeSpec();
    const step = loadBalancerStep(spec, controlPlanes(spec)[1]!);
    expect(step.phase).toBe("loadbalancer");
    expect(step.secrets).toEqual(["vrrp-password", "stats-password"]);
    expect(Object.fromEntries(step.files.map((f) => [f.path, f.mode]))).toEqual({
      "/etc/keepalived/keepalived.conf": "0644",
      "/etc/keepalived/check_apiserver.sh": "0755",
      "/etc/keepalived/check_vip_held.sh": "0755",
      "/etc/haproxy/haproxy.cfg": "0644",
      [HAPROXY_DROPIN]: "0644",
      [KEEPALIVED_DROPIN]: "0644",
      [LB_DRAIN_SCRIPT]: "0755",
      "/etc/tmpfiles.d/kubeadm-ha.conf": "0644",
      [ETCD_LEADER_AWAY_SCRIPT]: "0755",
      [ETCD_LEADER_AWAY_UNIT]: "0644",
    });
    const dropin = step.files.find((f) => f.path === HAPROXY_DROPIN)?.content ?? "";
    expect(dropin).toContain(`[Service]\nEnvironmentFile=${HAPROXY_ENV_FILE}\n`);
  });

  test("the script validates before it reloads, and reloads only what changed", () => {
    const spec = makeSpec();
    const s = loadBalancerStep(spec, controlPlanes(spec)[0]!).script;
    const at = (needle: string) => {
      const i = s.indexOf(needle);
      expect(i).toBeGreaterThan(-1);
      return i;
    };
    expect(at("haproxy -c -f")).toBeLessThan(at("systemctl reload haproxy"));
    expect(at("keepalived -t -l -D -f")).toBeLessThan(at("systemctl reload keepalived"));
    expect(at("write_secret_file '/etc/keepalived/kubeadm-ha-secret.conf'")).toBeLessThan(at("keepalived -t -l -D -f"));
    expect(s).toMatch(
      /elif changed '\/etc\/haproxy\/haproxy\.cfg'; then\n(\s+#.*\n)+\s+save_server_state\n\s+systemctl reload haproxy/,
    );
    // The server states are saved from the running process right before it is replaced, and a
    // state file exists (empty) before haproxy -c reads the config that names it.
    expect(at("save_server_state\n  systemctl restart haproxy")).toBeGreaterThan(at("any_changed '/etc/systemd"));
    expect(at("|| empty_server_state")).toBeLessThan(at("haproxy -c -f"));
    expect(s).toContain("systemctl enable --quiet haproxy keepalived");
    expect(s).toContain('ip -o -4 addr show dev "$IFACE"');
    const v3 = makeSpec({ version: 3, advert: 0.1 });
    expect(loadBalancerStep(v3, controlPlanes(v3)[0]!).script).not.toContain("kubeadm-ha-secret.conf");
  });

  test.skipIf(!HAVE.shellcheck)(
    "shellcheck is clean on the check scripts and the full phase script",
    () => {
      for (const [, opts] of VARIANTS) {
        const spec = makeSpec(opts);
        for (const node of controlPlanes(spec)) {
          const step = loadBalancerStep(spec, node);
          const files = (
            [
              ["phase.sh", step.script],
              ["check_apiserver.sh", renderCheckApiserverScript(spec, node)],
              ["check_vip_held.sh", renderCheckVipHeldScript(spec, node)],
              ["kubeadm-ha-lb-drain", renderLbDrainScript(spec)],
              ["kubeadm-ha-etcd-leader-away", renderEtcdLeaderAwayScript(spec)],
            ] as const
          ).map(([name, text]) => {
            const file = join(tmp, `${++seq}-${name}`);
            writeFileSync(file, text);
            return file;
          });
          const r = run(["shellcheck", "-s", "bash", "-S", "style", ...files]);
          expect(r.out).toBe("");
          expect(r.code).toBe(0);
        }
      }
    },
    60000,
  );
});

// ---- the runbook's mistakes, seen by the validators ------------------------------------------

// The runbook's keepalived.conf (section 3.2) on the test interface. \`secure\` adds script security,
// which the runbook lacks (keepalived -t then exits 6 before it reports anything else).
const RUNBOOK_KEEPALIVED = (authLine: string, state = "MASTER", priority = 255, secure = true) => `global_defs {
    router_id LVS_DEVEL${secure ? "\n    enable_script_security\n    script_user root" : ""}
}
vrrp_script check_apiserver {
  script "SCRIPT"
  interval 3
  weight -2
  fall 10
  rise 2
}
vrrp_instance VI_1 {
    state ${state}
    interface ${IFACE}
    virtual_router_id 151
    priority ${priority}
    authentication {
        auth_type PASS
        ${authLine}
    }
    virtual_ipaddress {
        198.18.0.100/24
    }
    track_script {
        check_apiserver
    }
}
`;

describe("the runbook's settings fail our validators", () => {
  test.skipIf(!HAVE.keepalived)(
    "keepalived -t rejects priority 255 with a tracked script (address owner ignores the check)",
    () => {
      const spec = makeSpec();
      const { dir, paths } = keepalivedFixture(undefined, spec);
      const conf = (prio: number) =>
        RUNBOOK_KEEPALIVED("auth_pass Ab3dE5gh", "MASTER", prio).replace("SCRIPT", paths.checkApiserver);
      const verbatim = keepalivedTest(
        RUNBOOK_KEEPALIVED("auth_pass Ab3dE5gh", "MASTER", 255, false).replace("SCRIPT", paths.checkApiserver),
        dir,
      );
      expect(verbatim.code).toBe(6);
      expect(verbatim.out).toContain("SECURITY VIOLATION");
      const owner = keepalivedTest(conf(255), dir);
      expect(owner.code).toBe(5);
      expect(owner.out).toContain("ignoring tracked script check_apiserver with weights due to address_owner");
      expect(keepalivedTest(conf(254), dir)).toEqual({ code: 0, out: "" });
    },
  );

  test.skipIf(!HAVE.keepalived)(
    "keepalived -t flags `state SLAVE`, a password over 8 characters, and fractional v2 adverts",
    () => {
      const spec = makeSpec();
      const { dir, paths } = keepalivedFixture(undefined, spec);
      const base = (auth: string, state: string) =>
        RUNBOOK_KEEPALIVED(auth, state, 150).replace("SCRIPT", paths.checkApiserver);
      const slave = keepalivedTest(base("auth_pass Ab3dE5gh", "SLAVE"), dir);
      expect(slave.code).not.toBe(0);
      expect(slave.out).toContain("unknown state 'SLAVE'");
      const long = keepalivedTest(base("auth_pass Ab3dE5gh9", "BACKUP"), dir);
      expect(long.code).not.toBe(0);
      expect(long.out).toContain("Truncating auth_pass to 8 characters");
      const fractional = keepalivedTest(
        base("auth_pass Ab3dE5gh", "BACKUP").replace("priority 150", "priority 150\n    advert_int 0.1"),
        dir,
      );
      expect(fractional.code).not.toBe(0);
      expect(fractional.out).toContain("must be an integer");
    },
  );

  test.skipIf(!HAVE.keepalived)(
    "keepalived -t does NOT see `#` in auth_pass (read as a comment): only our own refusal does",
    () => {
      const spec = makeSpec();
      const { dir, paths } = keepalivedFixture(undefined, spec);
      const r = keepalivedTest(
        RUNBOOK_KEEPALIVED("auth_pass P@##D321!", "BACKUP", 150).replace("SCRIPT", paths.checkApiserver),
        dir,
      );
      expect(r).toEqual({ code: 0, out: "" }); // silently truncated to "P@"
      const script = loadBalancerStep(spec, controlPlanes(spec)[0]!).script;
      // The phase script refuses such a password before writing the include (characters keepalived reads literally only).
      expect(script).toContain('"" | *[!A-Za-z0-9._+=:@%^-]*) die "the vrrp-password secret');
    },
  );

  test.skipIf(!HAVE.haproxy)(
    "haproxy -c accepts the runbook's ssl-hello-chk backend: only a running check tells (see below)",
    () => {
      const runbook = `defaults
  timeout connect 5s
  timeout server 5s
  timeout client 5s
frontend apiserver
  bind *:8443
  mode tcp
  default_backend apiserver
backend apiserver
  option httpchk GET /healthz
  http-check expect status 200
  mode tcp
  option ssl-hello-chk
  balance roundrobin
  server cp-1 198.18.0.11:6443 check
`;
      expect(haproxyCheck(runbook, {}).code).toBe(0);
    },
  );
});

// ---- running: haproxy + check script against TLS servers on loopback ---------------------------

describe("running against TLS servers on 127.0.0.0/8", () => {
  /** Status each fake apiserver answers on /healthz and /readyz; 0 = not listening. */
  const health: Record<string, number> = { "127.0.0.11": 200, "127.0.0.12": 500 };
  const servers: Array<{ stop: (force?: boolean) => void }> = [];
  let cert = "";
  let key = "";

  beforeAll(() => {
    if (!HAVE.tls) return;
    const dir = join(tmp, "tls");
    run(["mkdir", "-p", dir]);
    ({ cert, key } = selfSignedCert({
      certPath: join(dir, "cert.pem"),
      keyPath: join(dir, "key.pem"),
      cn: "kube-apiserver",
    }));
  });
  afterAll(() => {
    for (const s of servers) s.stop(true);
  });

  function serveApiserver(hostname: string, port: number) {
    const server = Bun.serve({
      hostname,
      port,
      tls: { cert, key },
      fetch: (req) => {
        const status = health[hostname] ?? 500;
        // haproxy's check sends no Host header, so req.url may be a bare path.
        // Like a real apiserver: /healthz and /readyz (what our checks ask) answer alike here.
        return ["/healthz", "/readyz"].includes(new URL(req.url, "https://apiserver").pathname)
          ? new Response(status === 200 ? "ok" : "[-]etcd failed", { status })
          : new Response("{}", { status: 403 });
      },
    });
    servers.push(server);
    return server;
  }

  async function runAsync(cmd: string[]): Promise<{ code: number; out: string }> {
    const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } });
    const [out, err, code] = await Promise.all([
      new Response(p.stdout).text(),
      new Response(p.stderr).text(),
      p.exited,
    ]);
    return { code, out: out + err };
  }

  test.skipIf(!HAVE.tls)(
    "check_apiserver.sh passes on 200, fails on 500 and on no listener, with one line",
    async () => {
      const server = serveApiserver("127.0.0.1", 0);
      const spec = makeSpec({ port: server.port! });
      const script = join(tmp, "check_apiserver.sh");
      writeFileSync(script, renderCheckApiserverScript(spec, controlPlanes(spec)[0]!));
      chmodSync(script, 0o755);
      health["127.0.0.1"] = 200;
      expect(await runAsync([script])).toEqual({ code: 0, out: "" });
      health["127.0.0.1"] = 500;
      const sick = await runAsync([script]);
      expect(sick.code).toBe(1);
      expect(sick.out).toMatch(
        /^check_apiserver: GET https:\/\/127\.0\.0\.1:\d+\/readyz failed: curl: \(22\) .*500 *\n$/,
      );
      // The runbook's script: curl without -f against / passes on any answer, even 500/403.
      const runbook = join(tmp, "runbook_check.sh");
      writeFileSync(
        runbook,
        `#!/bin/sh\ncurl --silent --max-time 2 --insecure https://localhost:${server.port}/ -o /dev/null || exit 1\n`,
      );
      chmodSync(runbook, 0o755);
      expect((await runAsync([runbook])).code).toBe(0);
      server.stop(true);
      const gone = await runAsync([script]);
      expect(gone.code).toBe(1);
      expect(gone.out.split("\n").filter(Boolean)).toHaveLength(1);
      expect(gone.out).toContain("curl: (7)");
    },
  );

  test.skipIf(!HAVE.tls || !HAVE.haproxy)(
    "our haproxy marks an apiserver answering 500 DOWN (the runbook's ssl-hello-chk keeps it UP); the check follows haproxy",
    async () => {
      // Three fake apiservers on 127.0.0.11-13:6443: healthy, /readyz 500, not listening.
      health["127.0.0.11"] = 200;
      health["127.0.0.12"] = 500;
      serveApiserver("127.0.0.11", 6443);
      serveApiserver("127.0.0.12", 6443);
      const free = () => {
        const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
        const p = s.port;
        s.stop(true);
        return p;
      };
      const lbPort = free();
      const statsPort = free();
      const spec = makeSpec({ base: "127.0.0.", port: lbPort, statsPort });
      const node = controlPlanes(spec)[0]!;
      // The rendered file, minus what needs root (privilege drop, /run socket, syslog).
      const ours = renderHaproxyCfg(spec, node)
        .split("\n")
        .filter((l) => !/^\s+(user|group|stats socket|log \/dev\/log)/.test(l))
        .join("\n");
      const runbookBackend = `backend kube_apiserver
  mode tcp
  option httpchk GET /healthz
  http-check expect status 200
  option ssl-hello-chk
  balance roundrobin
  default-server check inter 500ms fall 2 rise 2
${controlPlanes(spec)
  .map((n) => `  server ${n.name} ${n.address}:6443`)
  .join("\n")}
`;
      const runbook = ours.replace(/^backend kube_apiserver\n[\s\S]*?\n\n/m, `${runbookBackend}\n`);
      expect(runbook).toContain("ssl-hello-chk");

      const statusOf = async (cfgText: string, password: string) => {
        const file = join(tmp, `live-${++seq}.cfg`);
        writeFileSync(file, cfgText);
        const proc = Bun.spawn(["haproxy", "-db", "-f", file], {
          env: { PATH: process.env.PATH ?? "/usr/bin:/bin", [STATS_PASSWORD_ENV]: password },
          stdout: "ignore",
          stderr: "pipe",
        });
        try {
          await Bun.sleep(2500); // fall 2 x inter 500ms, plus rise for the healthy one
          const url = `http://127.0.0.1:${statsPort}/;csv`;
          const unauth = await fetch(url);
          expect(unauth.status).toBe(401);
          const res = await fetch(url, { headers: { Authorization: `Basic ${btoa(`admin:${password}`)}` } });
          expect(res.status).toBe(200);
          const rows = (await res.text()).split("\n").map((l) => l.split(","));
          const status: Record<string, string> = {};
          for (const r of rows) if (r[0] === "kube_apiserver" && r[1]?.startsWith("cp-")) status[r[1]] = r[17] ?? "";
          return { status, proc };
        } catch (e) {
          proc.kill();
          const said = await new Response(proc.stderr).text();
          throw new Error(`${e}\nhaproxy said: ${said}`);
        }
      };

      const password = "Live-test-pw-123";
      const mine = await statusOf(ours, password);
      try {
        expect(mine.status).toEqual({ "cp-1": "UP", "cp-2": "DOWN", "cp-3": "DOWN" });
        // Every request through the LB reaches the healthy apiserver.
        for (let i = 0; i < 6; i++) {
          const r = await fetch(`https://127.0.0.1:${lbPort}/healthz`, { tls: { rejectUnauthorized: false } });
          expect(r.status).toBe(200);
        }
        // The keepalived check goes through this haproxy: passes now ...
        const script = join(tmp, "check_live.sh");
        writeFileSync(script, renderCheckApiserverScript(spec, node));
        chmodSync(script, 0o755);
        expect(await runAsync([script])).toEqual({ code: 0, out: "" });
        // ... and fails once no backend is healthy.
        health["127.0.0.11"] = 500;
        await Bun.sleep(1500);
        const none = await runAsync([script]);
        expect(none.code).toBe(1);
        expect(none.out).toStartWith("check_apiserver: GET");
        health["127.0.0.11"] = 200;
      } finally {
        mine.proc.kill();
        await mine.proc.exited;
      }

      const theirs = await statusOf(runbook, password);
      try {
        // ssl-hello-chk replaces the HTTP check: the apiserver answering 500 stays UP.
        expect(theirs.status).toEqual({ "cp-1": "UP", "cp-2": "UP", "cp-3": "DOWN" });
      } finally {
        theirs.proc.kill();
        await theirs.proc.exited;
      }
    },
    20000,
  );
});

describe("a dead haproxy moves the VIP without waiting for the check script", () => {
  test("keepalived tracks the haproxy state file with the check weight; systemd writes it on start and on any stop", () => {
    const spec = makeSpec();
    const node = controlPlanes(spec)[0]!;
    const conf = renderKeepalivedConf(spec, node);
    const { checkWeight } = vrrpWeights(spec);
    expect(conf).toContain(
      `\ntrack_file haproxy_state {\n  file "/run/kubeadm-ha/haproxy.state"\n  weight ${checkWeight}`,
    );
    expect(conf).not.toContain("vrrp_track_file"); // deprecated synonym (keepalived 2.3 warns)
    // keepalived drops a track file whose directory is missing at start: tmpfiles.d makes it at boot
    const step = loadBalancerStep(spec, node);
    const tmpfiles = step.files.find((f) => f.path === "/etc/tmpfiles.d/kubeadm-ha.conf")!;
    expect(tmpfiles.content).toContain("\nd /run/kubeadm-ha 0755 root root -\n");
    expect(step.script).toContain("systemd-tmpfiles --create '/etc/tmpfiles.d/kubeadm-ha.conf'");
    expect(step.script.indexOf("systemd-tmpfiles --create")).toBeLessThan(
      step.script.indexOf("systemctl restart keepalived"),
    );
    expect(conf).toMatch(/track_file \{\s+haproxy_state\s+lb_drain\s+\}/);
    const dropin = loadBalancerStep(spec, node).files.find((f) => f.path === HAPROXY_DROPIN)!.content;
    expect(dropin).toContain(
      "ExecStartPost=/bin/sh -c 'mkdir -p /run/kubeadm-ha && echo 0 > /run/kubeadm-ha/haproxy.state'",
    );
    expect(dropin).toContain(
      "ExecStopPost=/bin/sh -c 'mkdir -p /run/kubeadm-ha && echo 1 > /run/kubeadm-ha/haproxy.state'",
    );
  });
});

describe("planned moves drain the holder first", () => {
  test("keepalived tracks the drain flag with the check weight, so a drained holder drops below every healthy peer", () => {
    const spec = makeSpec();
    const conf = renderKeepalivedConf(spec, controlPlanes(spec)[0]!);
    const { checkWeight } = vrrpWeights(spec);
    expect(conf).toContain(
      `\ntrack_file lb_drain {\n  file "${LB_DRAIN_FILE}"\n  weight ${checkWeight}\n  init_file 0\n}`,
    );
  });

  test("systemd stops keepalived and haproxy only after the drain, and gives the priority back once they run", () => {
    const spec = makeSpec();
    const step = loadBalancerStep(spec, controlPlanes(spec)[0]!);
    for (const path of [HAPROXY_DROPIN, KEEPALIVED_DROPIN]) {
      const dropin = step.files.find((f) => f.path === path)!.content;
      expect(dropin).toContain(`\nExecStop=-${LB_DRAIN_SCRIPT} drain\n`);
      expect(dropin).toContain(`\nExecStartPost=-${LB_DRAIN_SCRIPT} undrain\n`);
    }
    // A changed drop-in is loaded before the restart that needs it; a deploy ends undrained.
    expect(step.script.indexOf("systemctl daemon-reload")).toBeLessThan(
      step.script.indexOf("systemctl restart haproxy"),
    );
    expect(step.script).toContain(`\n${LB_DRAIN_SCRIPT} undrain\n`);
  });

  test("static-pod mode drains before a changed manifest is installed, and only then", () => {
    const spec = makeSpec();
    spec.loadBalancer.mode = "static-pod";
    spec.loadBalancer.staticPod = { keepalivedImage: "registry.example.com/keepalived:2.2.8" };
    const s = loadBalancerStep(spec, controlPlanes(spec)[0]!).script;
    const drain = s.indexOf("if differs '/etc/kubernetes/manifests/keepalived.yaml'");
    expect(drain).toBeGreaterThan(-1);
    expect(drain).toBeLessThan(s.indexOf('step "install files"'));
    expect(s).toContain(`bash "$STAGE/root${LB_DRAIN_SCRIPT}" drain`);
    // the entrypoint restart for a new stats password drains too
    expect(s.indexOf("lb_drain_for_restart\n    pkill -TERM")).toBeGreaterThan(-1);
  });

  test("secret files are written in the phase's own shell, so a rotated password restarts haproxy / reloads keepalived", () => {
    // Before: "printf ... | write_secret_file": the function ran in the pipeline's subshell and its
    // CHANGED_FILES entry was lost, so a rotated stats password never restarted haproxy (lab test).
    for (const mode of ["keepalived-haproxy", "static-pod"] as const) {
      const spec = makeSpec({ version: 2 });
      spec.loadBalancer.mode = mode;
      if (mode === "static-pod")
        spec.loadBalancer.staticPod = { keepalivedImage: "registry.example.com/keepalived:2.2.8" };
      const s = loadBalancerStep(spec, controlPlanes(spec)[0]!).script;
      expect(s).not.toMatch(/\|\s*write_secret_file/);
      expect(s.match(/\nwrite_secret_file '[^']+' < <\(printf /g)?.length).toBe(2);
    }
  });

  test("the drain script waits for the VIP to leave and for the VIP to answer, and is a no-op with one control plane", () => {
    const spec = makeSpec();
    const script = renderLbDrainScript(spec);
    expect(script).toContain(`VIP='${spec.controlPlaneEndpoint.vip}'`);
    expect(script).toContain('wait_for "$TIMEOUT" lost_vip');
    expect(script).toContain('wait_for "$TIMEOUT" vip_answers');
    const one = makeSpec();
    one.nodes = one.nodes.filter((n) => n.role !== "control-plane" || n === controlPlanes(one)[0]);
    expect(renderLbDrainScript(one)).toContain("one control plane: there is no peer");
    expect(renderLbDrainScript(one)).not.toContain("set_flag 1");
  });
});

describe("the etcd leader is kept off the VIP holder", () => {
  test("the systemd mode installs and (re)starts the host service with three control planes or more", () => {
    {
      const spec = makeSpec();
      const step = loadBalancerStep(spec, controlPlanes(spec)[0]!);
      expect(step.files.map((f) => f.path)).toContain(ETCD_LEADER_AWAY_SCRIPT);
      const unit = step.files.find((f) => f.path === ETCD_LEADER_AWAY_UNIT)!.content;
      expect(unit).toContain(`ExecStart=${ETCD_LEADER_AWAY_SCRIPT} watch\nRestart=always`);
      expect(step.script).toContain("systemctl enable --quiet kubeadm-ha-etcd-leader-away.service");
      expect(step.script).toMatch(
        /if any_changed '[^']+kubeadm-ha-etcd-leader-away' '[^']+\.service' \|\| ! systemctl is-active --quiet kubeadm-ha-etcd-leader-away\.service; then\n\s+systemctl restart/,
      );
    }
  });

  test("not with one control plane (no other member to lead), and kube-vip mode stops it", () => {
    const one = makeSpec();
    one.nodes = one.nodes.filter((n) => n.role !== "control-plane" || n === controlPlanes(one)[0]);
    const step = loadBalancerStep(one, controlPlanes(one)[0]!);
    expect(step.files.map((f) => f.path)).not.toContain(ETCD_LEADER_AWAY_SCRIPT);
    expect(step.script).not.toContain("kubeadm-ha-etcd-leader-away");
    const vip = makeSpec();
    vip.loadBalancer.mode = "kube-vip";
    const kv = loadBalancerStep(vip, controlPlanes(vip)[0]!);
    expect(kv.files.map((f) => f.path)).not.toContain(ETCD_LEADER_AWAY_SCRIPT);
    expect(kv.script).toContain("systemctl disable --now --quiet kubeadm-ha-etcd-leader-away.service");
  });
});
