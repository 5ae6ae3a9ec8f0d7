// The free-text formats of the spec: OnCalendar expressions checked against the real
// `systemd-analyze calendar`, image references, paths, DNS names and URLs.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { onCalendarProblem } from "../../lib/spec/calendar.ts";
import {
  absolutePathProblem,
  dnsNameProblem,
  httpsUrlProblem,
  imageReferenceProblem,
  localPathProblem,
  loginNameProblem,
} from "../../lib/spec/formats.ts";
import { checkSpecText } from "../../lib/spec/load.ts";
import { requireTool, run } from "./tool-helpers.ts";

/** [expression, accepted by us]; `stricter` marks what systemd takes and we refuse on purpose. */
const CALENDAR: Array<[string, boolean, { stricter?: string }?]> = [
  // shorthands, any case
  ["daily", true],
  ["hourly", true],
  ["weekly", true],
  ["minutely", true],
  ["monthly", true],
  ["yearly", true],
  ["annually", true],
  ["quarterly", true],
  ["semiannually", true],
  ["semi-annually", true],
  ["biannually", true],
  ["Daily", true],
  ["DAILY", true],
  ["daily UTC", true],
  ["weekly utc", true],
  // the common forms
  ["*-*-* 02:00:00", true],
  ["*-*-* 02:00", true],
  ["Mon..Fri *-*-* 02:00", true],
  ["mon..fri 02:00", true],
  ["Mon-Fri 02:00", true],
  ["Sat,Sun 03:30", true],
  ["Sat..Sun", true],
  ["Monday", true],
  ["Mon..Mon", true],
  ["Mon,", true],
  ["Wed, 17:48", true],
  ["Sat,Thu,Mon..Wed,Sat..Sun", true],
  ["*:0/15", true],
  ["*:2/3", true],
  ["*:*:0/10", true],
  ["0/15:00", true],
  ["2..10/2:00", true],
  ["03:00..04:00", true],
  ["12,14,13,12:20,10,30", true],
  ["*-*-01,15 03:00", true],
  ["Mon *-*-1..7", true],
  ["*-*-7 0:0:0", true],
  ["10-15", true],
  ["03-05 08:05:40", true],
  ["*-02~03", true],
  ["*-02~28/2", true],
  ["2030-01-31 04:00", true],
  ["12-*-* 2,1:23", true],
  ["mon,fri *-1/2-1,3 *:30:45", true],
  ["05:40:23.42/3.17", true],
  ["*-*-* 02:00:00.123456", true],
  ["*-*-* 1:2", true],
  ["001:00", true],
  ["*-*-* 00:00:00 UTC", true],
  ["2199-01-01", true],
  ["70-01-01", true],
  // garbage and what systemd refuses
  ["", false],
  [" daily", false],
  ["daily ", false],
  ["every day", false],
  ["daily,hourly", false],
  ["daily 02:00", false],
  ["Fri..Mon 02:00", false],
  ["Mo", false],
  ["Mond", false],
  ["Mon..Wed..Fri", false],
  ["Mon,,Tue", false],
  ["*-*-1..7 Mon", false],
  ["*-*-* 24:00", false],
  ["*-*-* 23:60", false],
  ["*-*-* 23:59:60", false],
  ["*-13-01", false],
  ["*-*-32", false],
  ["*-02~29", false],
  ["*-02~28..27", false],
  ["2024~02-03", false],
  ["1969-01-01", false],
  ["2200-01-01", false],
  ["3..1:00", false],
  ["*-*-* 5..3:00", false],
  ["1/0:00", false],
  ["*/2:00", false],
  ["*-*/2", false],
  ["5", false],
  ["*", false],
  ["1.5:00", false],
  ["UTC", false],
  ["+02:00", false],
  ["*-*-* 02:00 +0200", false],
  ["02:00 Z", false],
  ["daily Foo/Bar", false],
  ["02:00 ;", false],
  // shell and unit-file syntax never gets through
  ["*-*-* 02:00; touch /tmp/x", false],
  ["daily\nExecStart=/bin/sh", false],
  ["$(touch /tmp/x)", false],
  ["`id`", false],
  ["daily'", false],
  ['daily"', false],
  ["daily ${IFS}", false],
  ["%h", false],
  // systemd takes these; we refuse them on purpose
  ["daily Europe/Berlin", false, { stricter: "a zone the hosts may lack" }],
  ["@1700000000", false, { stricter: "one instant is not a schedule" }],
  ["Mon  02:00", false, { stricter: "repeated spaces" }],
  ["*-*-* 02:00:00.1234567", false, { stricter: "more than 6 decimals" }],
];

describe("OnCalendar expressions", () => {
  for (const [expr, ok] of CALENDAR) {
    test(`${JSON.stringify(expr)} is ${ok ? "accepted" : "refused"}`, () => {
      const problem = onCalendarProblem(expr);
      expect(problem === undefined).toBe(ok);
      if (problem) expect(problem).toMatch(/write|Write/);
    });
  }

  const haveSystemd = requireTool("systemd-analyze");
  test.skipIf(!haveSystemd)("the table agrees with systemd-analyze calendar", () => {
    const disagree: string[] = [];
    for (const [expr, ok, note] of CALENDAR) {
      if (expr.includes("\n")) continue; // not one argument systemd-analyze can be given as a unit line
      const systemd = run(["systemd-analyze", "calendar", expr]).code === 0;
      const expected = note?.stricter ? true : ok;
      if (systemd !== expected) disagree.push(`${JSON.stringify(expr)}: systemd ${systemd ? "accepts" : "refuses"}`);
    }
    expect(disagree).toEqual([]);
  });
});

describe("image references", () => {
  const ok = [
    "registry.k8s.io/pause:3.10",
    "nginx",
    "nginx:1.27",
    "library/nginx:latest",
    "localhost:5000/team/app_x:v1.2-rc.1",
    "mirror.example.internal/k8s/pause@sha256:7c38f24774e3cbd906d2d33c38354ccf787635581c122965132c9bd309754d4a",
    "my-registry.example.com:8443/a/b/c:tag@sha256:7c38f24774e3cbd906d2d33c38354ccf787635581c122965132c9bd309754d4a",
  ];
  const bad = [
    "",
    "Nginx",
    "registry.k8s.io/Pause:3.10",
    "nginx:",
    "nginx:1.27 ",
    "nginx;id",
    "nginx:$(id)",
    "nginx`id`",
    "nginx@sha256:short",
    "-nginx",
    "nginx//x",
    "a".repeat(256),
  ];
  for (const v of ok) test(`${v} is accepted`, () => expect(imageReferenceProblem(v, "x")).toBeUndefined());
  for (const v of bad)
    test(`${JSON.stringify(v.slice(0, 40))} is refused`, () => expect(imageReferenceProblem(v, "x")).toBeDefined());
});

describe("paths, names and URLs", () => {
  test("absolute paths on the hosts", () => {
    for (const v of ["/var/lib/etcd", "/data/etcd-1", "/srv/k8s/etcd.d", "/a"])
      expect(absolutePathProblem(v, "/x")).toBeUndefined();
    for (const v of ["var/lib/etcd", "/", "/var/lib/etcd/", "/var//lib", "/var/./lib", "/var/../etc", "/var/lib etcd"])
      expect(absolutePathProblem(v, "/x")).toBeDefined();
    for (const v of ['/a"b', "/a'b", "/a$b", "/a`b", "/a;b", "/a\nb", "/a*b", "/a\\b", "/a~b"])
      expect(absolutePathProblem(v, "/x")).toContain("contains");
  });

  test("local paths: relative, absolute or under ~/", () => {
    for (const v of ["backups", ".kubeadm-ha/known_hosts", "~/.ssh/id_ed25519", "/home/ops/keys/id", "../keys/id"])
      expect(localPathProblem(v, "x")).toBeUndefined();
    for (const v of ["", "~", "a b", "keys//id", "keys/", "~user/id", "a$(id)", "x;y"])
      expect(localPathProblem(v, "x")).toBeDefined();
  });

  test("an empty privateKeyPath is refused with the way to use the agent instead", () => {
    const text = readFileSync(join(import.meta.dir, "../fixtures/specs/valid/minimal.yaml"), "utf8");
    const r = checkSpecText(`${text}ssh: { privateKeyPath: "" }\n`);
    expect(r.problems.map((p) => p.path)).toEqual(["ssh.privateKeyPath"]);
    expect(r.problems[0]?.message).toContain("remove privateKeyPath to use ssh.agent");
  });

  test("DNS names and user names", () => {
    for (const v of ["cluster.local", "k8s.example.com", "a"]) expect(dnsNameProblem(v, "x")).toBeUndefined();
    for (const v of ["", "Cluster.local", "cluster_local", "cluster..local", "-a.local", "a-.local", "a.local."])
      expect(dnsNameProblem(v, "x")).toBeDefined();
    for (const v of ["root", "ubuntu", "ops.team", "_svc", "deploy-1"]) expect(loginNameProblem(v)).toBeUndefined();
    for (const v of ["", "1ops", "a b", "ops;id", "a$", `u${"x".repeat(32)}`])
      expect(loginNameProblem(v)).toBeDefined();
  });

  test("https URLs: RFC 3986 characters only, https, a host", () => {
    for (const v of [
      "https://example.com/calico.yaml",
      "https://example.com:8443/a/b.yaml?x=1&y=2#frag",
      "https://10.0.0.5/m.yaml",
      "https://example.com/x$(touch$IFS/F).yaml", // only legal URL characters: the scripts quote it
      "https://example.com/it's;fine",
    ])
      expect(httpsUrlProblem(v, "x")).toBeUndefined();
    for (const v of [
      "http://example.com/a.yaml",
      "ftp://example.com/a.yaml",
      "example.com/a.yaml",
      "https://example.com/a b.yaml",
      "https://example.com/x$(touch F).yaml",
      'https://example.com/a".yaml',
      "https://example.com/a`id`.yaml",
      "https://example.com/${IFS}",
      "https://example.com/a\\b",
      "https://example.com/a\nb",
      "https://exa mple.com/",
      "https:///a",
    ])
      expect(httpsUrlProblem(v, "x")).toBeDefined();
    expect(httpsUrlProblem("https://m.example/{minor}/", "x", true)).toBeUndefined();
    expect(httpsUrlProblem("https://m.example/{version}/", "x", true)).toContain("only placeholder is {minor}");
  });
});
