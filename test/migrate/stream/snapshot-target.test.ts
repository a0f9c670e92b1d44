// Where a snapshot may be written (issue 14, defect 6): a regular file or a
// name not taken.  Anything else is refused with one line before a byte is
// written, and left exactly as it was: the file is written beside the target
// and renamed over it, which would replace a FIFO, a device node or a
// symbolic link rather than write into it.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { XenkvmError } from '../../../src/errors.js';
import { openSnapshot, writeSnapshotFile } from '../../../src/migrate/index.js';
import { HEADER, SECTIONS } from '../../helpers/stream.js';
import { tempDir } from '../../helpers/tmp.js';

async function refused(path: string, pattern: RegExp): Promise<void> {
  try {
    await writeSnapshotFile(path, HEADER, async (w) => w.writeSection(SECTIONS[0]!));
  } catch (err) {
    assert.instance(err, XenkvmError, `${path}: a XenkvmError (one line, exit 2), got ${String(err)}`);
    const msg = (err as Error).message;
    assert.not.match(msg, /\n/, 'one line');
    assert.match(msg, pattern);
    return;
  }
  assert.unreachable(`${path}: written`);
}

/** Entries of `dir`: no temporary file may be left behind. */
const entries = (dir: string): string[] => readdirSync(dir).sort();

test('a FIFO is refused and stays a FIFO', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const fifo = join(dir, 'pipe');
    execFileSync('mkfifo', [fifo]);
    await refused(fifo, /^cannot write snapshot .*pipe: it is a FIFO \(named pipe\), not a snapshot file$/);
    assert.ok(lstatSync(fifo).isFIFO());
    assert.equal(entries(dir), ['pipe']);
  } finally {
    cleanup();
  }
});

test('a character device is refused and stays one', async (ctx) => {
  const { dir, cleanup } = tempDir();
  try {
    // A node for /dev/null's device in a scratch directory: never the real one.
    const dev = join(dir, 'null');
    try {
      execFileSync('mknod', [dev, 'c', '1', '3'], { stdio: 'ignore' });
    } catch {
      console.log(`  skip ${ctx.__test__}: mknod needs privileges`);
      return;
    }
    await refused(dev, /^cannot write snapshot .*null: it is a character device, not a snapshot file$/);
    assert.ok(lstatSync(dev).isCharacterDevice());
    assert.equal(entries(dir), ['null']);
  } finally {
    cleanup();
  }
});

test('a symbolic link is refused; neither it nor its target changes', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const target = join(dir, 'real.xks');
    writeFileSync(target, 'old contents');
    const link = join(dir, 'link.xks');
    symlinkSync(target, link);
    await refused(link, /^cannot write snapshot .*link\.xks: it is a symbolic link \(name the file it points to\)/);
    assert.ok(lstatSync(link).isSymbolicLink());
    assert.is(readlinkSync(link), target);
    assert.is(readFileSync(target, 'utf8'), 'old contents');
    // A dangling link too: renaming over it would quietly drop it.
    const dangling = join(dir, 'dangling.xks');
    symlinkSync(join(dir, 'nowhere'), dangling);
    await refused(dangling, /it is a symbolic link/);
    assert.equal(entries(dir), ['dangling.xks', 'link.xks', 'real.xks']);
  } finally {
    cleanup();
  }
});

test('a directory, an empty path and a name ending in / are refused with one line', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const sub = join(dir, 'sub');
    mkdirSync(sub);
    await refused(sub, /^cannot write snapshot .*sub: it is a directory, not a snapshot file \(EISDIR\)$/);
    await refused('', /^cannot write snapshot '': empty path$/);
    await refused(`${join(dir, 'new')}/`, /the name ends in '\/'/);
    assert.equal(entries(dir), ['sub']);
    assert.equal(entries(sub), []);
  } finally {
    cleanup();
  }
});

test('a regular file is replaced and a new name created, as before', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const old = join(dir, 'old.xks');
    writeFileSync(old, 'not a snapshot yet');
    for (const path of [old, join(dir, 'new.xks')]) {
      await writeSnapshotFile(path, HEADER, async (w) => w.writeSection(SECTIONS[0]!));
      const f = await openSnapshot(path);
      for await (const _ of f);
      await f.close();
    }
    assert.equal(entries(dir), ['new.xks', 'old.xks']);
  } finally {
    cleanup();
  }
});

test.run();
