// The one-pass snapshot check used while a backup downloads: the whole-file sha256 and etcd's
// embedded checksum from the same bytes, fed in chunks of any size, agree with the file-based checks.
import { afterAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkEmbeddedHash, fileSha256, StreamingSnapshotCheck } from "../../lib/etcd/snapshot.ts";

const work = mkdtempSync(join(tmpdir(), "kubeadm-ha-snapstream-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A snapshot-shaped file: a database of whole 512-byte pages plus its sha256, as etcd streams it. */
function snapshotBytes(pages: number): Buffer {
  const db = Buffer.alloc(pages * 512);
  for (let i = 0; i < db.length; i++) db[i] = (i * 2654435761) >>> 24;
  return Buffer.concat([db, createHash("sha256").update(db).digest()]);
}

/** Fed with the size known up front (an SFTP download) or not (a stream that ends when it ends). */
function feed(data: Buffer, chunk: number, sizeKnown = true): ReturnType<StreamingSnapshotCheck["result"]> {
  const c = new StreamingSnapshotCheck();
  for (let o = 0; o < data.length; o += chunk)
    c.update(data.subarray(o, o + chunk), o, sizeKnown ? data.length : undefined);
  return c.result();
}

describe("StreamingSnapshotCheck", () => {
  test("a good snapshot: sha256 as sha256sum computes it, embedded checksum ok, for any chunking", async () => {
    const data = snapshotBytes(300);
    const file = join(work, "good.db");
    writeFileSync(file, data);
    const want = await fileSha256(file);
    expect(want).toBe(createHash("sha256").update(data).digest("hex"));
    for (const chunk of [1, 7, 31, 32, 33, 512, 32 * 1024, data.length])
      for (const sizeKnown of [true, false]) {
        const r = feed(data, chunk, sizeKnown);
        expect(r.sha256).toBe(want);
        expect(r.embedded).toEqual({ ok: true });
      }
    // Asked twice (the backup checks, then records the sha256): the same answer, no error.
    const c = new StreamingSnapshotCheck();
    c.update(data);
    expect(c.result()).toEqual(c.result());
  });

  test("a flipped byte, a truncated file and a too-small file fail the embedded check like the file-based check", async () => {
    const flipped = snapshotBytes(64);
    flipped[1000]! ^= 0x01;
    const truncated = snapshotBytes(64).subarray(0, 64 * 512);
    const tiny = Buffer.from("not a snapshot");
    for (const [name, data] of [
      ["flipped", flipped],
      ["truncated", truncated],
      ["tiny", tiny],
    ] as const) {
      const file = join(work, `${name}.db`);
      writeFileSync(file, data);
      const fileCheck = await checkEmbeddedHash(file);
      expect(fileCheck.ok).toBe(false);
      for (const chunk of [5, 4096])
        for (const sizeKnown of [true, false]) {
          const r = feed(data, chunk, sizeKnown);
          expect(r.embedded).toEqual(fileCheck);
          expect(r.sha256).toBe(await fileSha256(file));
        }
    }
  });

  test("bytes out of order or missing are an error, not a wrong hash", () => {
    const data = snapshotBytes(4);
    const c = new StreamingSnapshotCheck();
    expect(() => c.update(data.subarray(512, 1024), 512, data.length)).toThrow(/out of order/);
    const d = new StreamingSnapshotCheck();
    d.update(data.subarray(0, 512), 0, data.length);
    expect(() => d.result()).toThrow(/saw 512 of/);
  });
});
