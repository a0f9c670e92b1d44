// RAM_PAGES bodies forged by hand, for tests of what a reader or loader
// does with a batch that breaks FORMAT.md's rules: deflated data that
// inflates to more (or less) than count x 4096 bytes.
import { constants, deflateRawSync } from 'node:zlib';
import { RAM_HEAD_BYTES } from '../../src/migrate/stream/format.js';
import { fillRamHead, writePfns } from '../../src/migrate/stream/ram-body.js';

const WINDOW = Buffer.alloc(32 << 10);
const CHUNK = 16 << 20;

/**
 * Raw DEFLATE of `n` zero bytes without deflating n bytes: 32 KiB flushed to
 * a byte boundary, then one 16 MiB chunk (compressed against a window of
 * zeros, which is what precedes it whenever it is inflated) repeated, then
 * the rest.  A 1 GiB stream is ~1 MB and takes milliseconds to make.
 */
export function deflatedZeros(n: number): Uint8Array {
  if (n <= 2 * WINDOW.length) return deflateRawSync(Buffer.alloc(n), { level: 9 });
  const chunk = deflateRawSync(Buffer.alloc(CHUNK), {
    level: 9,
    dictionary: WINDOW,
    finishFlush: constants.Z_SYNC_FLUSH,
  });
  const rest = n - WINDOW.length;
  const k = Math.floor(rest / CHUNK);
  const parts: Uint8Array[] = [deflateRawSync(WINDOW, { level: 9, finishFlush: constants.Z_SYNC_FLUSH })];
  for (let i = 0; i < k; i++) parts.push(chunk);
  parts.push(deflateRawSync(Buffer.alloc(rest - k * CHUNK), { level: 9, dictionary: WINDOW }));
  return Buffer.concat(parts);
}

/** A RAM_PAGES body holding `data` (stored as `encoding`) for frames `pfns`, its head and checksum filled. */
export function ramPagesBody(data: Uint8Array, pfns: readonly number[], encoding: number): Uint8Array {
  const body = new Uint8Array(RAM_HEAD_BYTES + data.length + pfns.length * 8);
  body.set(data, RAM_HEAD_BYTES);
  writePfns(body, RAM_HEAD_BYTES + data.length, pfns, pfns.length);
  fillRamHead(body, pfns.length, encoding, RAM_HEAD_BYTES, data.length);
  return body;
}
