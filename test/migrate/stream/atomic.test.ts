// Snapshot files are replaced atomically: whatever fails (the producer, the
// rename, a full disk), the previous file at the path is intact and no
// temporary file is left behind.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { IoError } from '../../../src/errors.js';
import { openSnapshot, writeRam, writeSnapshotFile } from '../../../src/migrate/index.js';
import { HEADER, makeRam, SECTIONS } from '../../helpers/stream.js';
import { tempDir } from '../../helpers/tmp.js';

async function writeOld(path: string): Promise<Buffer> {
  await writeSnapshotFile(path, HEADER, async (w) => {
    await w.writeSection(SECTIONS[2]!);
  });
  return readFileSync(path);
}

test('producer throwing mid-way leaves the old file and no temporary file', async () => {
  const { dir, cleanup } = tempDir('migrate');
  try {
    const path = join(dir, 'vm.xkvm');
    const old = await writeOld(path);
    const boom = new Error('device refused to save');
    try {
      await writeSnapshotFile(path, HEADER, async (w) => {
        await writeRam(w, makeRam(1024, 0.5).ram); // megabytes in flight when we throw
        throw boom;
      });
      assert.unreachable();
    } catch (err) {
      assert.is(err, boom, "the producer's own error comes back unchanged");
    }
    assert.ok(readFileSync(path).equals(old));
    assert.equal(readdirSync(dir), ['vm.xkvm']);
    const f = await openSnapshot(path);
    for await (const _ of f);
    await f.close();
  } finally {
    cleanup();
  }
});

test('rename failing (a directory in the way) leaves no temporary file', async () => {
  const { dir, cleanup } = tempDir('migrate');
  try {
    const path = join(dir, 'taken');
    mkdirSync(path);
    mkdirSync(join(path, 'inside')); // rename(2) of a file over a directory fails: EISDIR
    try {
      await writeSnapshotFile(path, HEADER, async (w) => w.writeSection(SECTIONS[0]!));
      assert.unreachable();
    } catch (err) {
      assert.instance(err, IoError);
      assert.match((err as Error).message, /^cannot write snapshot .*taken: .*\(EISDIR\)$/);
    }
    assert.equal(readdirSync(dir), ['taken']);
    assert.equal(readdirSync(path), ['inside']);
  } finally {
    cleanup();
  }
});

test('full disk (1 MiB tmpfs): IoError naming ENOSPC, old file intact', async () => {
  const { dir, cleanup } = tempDir('migrate');
  const mnt = join(dir, 'small');
  mkdirSync(mnt);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt], { stdio: 'ignore' });
  } catch {
    console.log('  skipped ENOSPC case: cannot mount a tmpfs here (needs root)');
    cleanup();
    return;
  }
  try {
    const path = join(mnt, 'vm.xkvm');
    const old = await writeOld(path);
    try {
      await writeSnapshotFile(path, HEADER, async (w) => {
        await writeRam(w, makeRam(1024, 0.6, 3).ram); // ~2.4 MiB into 1 MiB
      });
      assert.unreachable();
    } catch (err) {
      assert.instance(err, IoError);
      assert.match((err as Error).message, /^cannot write snapshot .*vm\.xkvm: no space left on device \(ENOSPC\)$/);
    }
    assert.ok(readFileSync(path).equals(old));
    assert.equal(readdirSync(mnt), ['vm.xkvm']);
  } finally {
    execFileSync('umount', [mnt]);
    rmdirSync(mnt);
    cleanup();
  }
});

test.run();
