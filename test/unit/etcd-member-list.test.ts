// etcdctl's member list, parsed without losing IDs or members: against a real etcd on loopback.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseJsonLossless, parseMemberList } from "../../lib/etcd/member-list.ts";
import { requireTool } from "./tool-helpers.ts";

const hasEtcd = requireTool("etcd") && requireTool("etcdctl");

/** n distinct free loopback ports (all held open until every one is picked). */
function freePorts(n: number): number[] {
  const sockets = Array.from({ length: n }, () =>
    Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } }),
  );
  const ports = sockets.map((s) => s.port);
  for (const s of sockets) s.stop(true);
  return ports;
}

describe("member list parser", () => {
  test("IDs beyond 2^53 keep every digit; a member without a name (not started) is listed", () => {
    const out =
      '{"header":{"cluster_id":15118495548433857066,"member_id":13668033151171901709,"raft_term":2},"members":[{"ID":9264454861608315558,"peerURLs":["http://127.0.0.1:23802"]},{"ID":13668033151171901709,"name":"m1","peerURLs":["http://127.0.0.1:23801"],"clientURLs":["http://127.0.0.1:23791"],"isLearner":true}]}';
    expect(parseMemberList(`warning on stdout\n${out}\n`)).toEqual({
      clusterId: "d1cfaf999eb97a2a",
      members: [
        { id: "8091f49c87cdeaa6", name: "", peerUrls: ["http://127.0.0.1:23802"], clientUrls: [], isLearner: false },
        {
          id: "bdae9bbc11dd390d",
          name: "m1",
          peerUrls: ["http://127.0.0.1:23801"],
          clientUrls: ["http://127.0.0.1:23791"],
          isLearner: true,
        },
      ],
    });
  });

  test("no JSON is no members; broken JSON is an error, not an empty list", () => {
    expect(parseMemberList("{}")).toEqual({ clusterId: "", members: [] });
    expect(parseMemberList("Error: context deadline exceeded")).toEqual({ clusterId: "", members: [] });
    expect(() => parseMemberList('{"members":[{"ID":1,}]}')).toThrow(/does not parse/);
  });

  test("lossless JSON: unsafe integers become BigInt from their digits, everything else as JSON.parse", () => {
    expect(parseJsonLossless('{"a":18446744073709551615,"b":-9007199254740993,"c":1.5,"d":42,"e":"7"}')).toEqual({
      a: 18446744073709551615n,
      b: -9007199254740993n,
      c: 1.5,
      d: 42,
      e: "7",
    });
  });
});

describe.skipIf(!hasEtcd)("member list of a real etcd", () => {
  const dir = mkdtempSync(join(tmpdir(), "kha-etcd-"));
  const [clientPort, peerPort, addedPort] = freePorts(3);
  const client = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const etcd = Bun.spawn(
    [
      "etcd",
      "--name=m1",
      `--data-dir=${join(dir, "data")}`,
      `--listen-client-urls=${client}`,
      `--advertise-client-urls=${client}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=m1=${peer}`,
    ],
    { stdout: "ignore", stderr: "pipe" },
  );
  afterAll(() => {
    etcd.kill();
    rmSync(dir, { recursive: true, force: true });
  });
  const etcdctl = (...args: string[]) =>
    Bun.spawnSync(["etcdctl", `--endpoints=${client}`, "--command-timeout=5s", ...args], {
      env: { ...process.env, ETCDCTL_API: "3" },
      stdout: "pipe",
      stderr: "pipe",
    });

  test("a member added but not started (no name, no client URL) is in the list, with exact IDs", async () => {
    let healthy = false;
    for (let i = 0; i < 150 && !healthy; i++) {
      healthy = etcdctl("endpoint", "health").exitCode === 0;
      if (!healthy) await Bun.sleep(100);
    }
    expect(healthy).toBe(true);
    const added = etcdctl("member", "add", "m2", `--peer-urls=http://127.0.0.1:${addedPort}`);
    expect({ code: added.exitCode, out: added.stdout.toString(), err: added.stderr.toString() }).toMatchObject({
      code: 0,
      out: expect.stringMatching(/Member +[0-9a-f]+ added to cluster +[0-9a-f]+/),
    });
    // etcdctl pads IDs with spaces to 16 places here (%16x), and prints them unpadded in its table.
    const addedId = /Member +([0-9a-f]+) added to cluster +([0-9a-f]+)/.exec(added.stdout.toString());
    const list = etcdctl("member", "list", "-w", "json");
    expect(list.exitCode).toBe(0);
    const parsed = parseMemberList(list.stdout.toString());
    expect(parsed.clusterId).toBe(addedId![2]!);
    expect(parsed.members.map((m) => m.name).sort()).toEqual(["", "m1"]);
    // The same IDs as etcdctl's own table, which prints them in hex.
    const table = etcdctl("member", "list").stdout.toString();
    const tableIds = [...table.matchAll(/^([0-9a-f]+), /gm)].map((m) => m[1]!).sort();
    expect(parsed.members.map((m) => m.id).sort()).toEqual(tableIds);
    expect(parsed.members.find((m) => m.name === "")!.id).toBe(addedId![1]!);
  });
});
