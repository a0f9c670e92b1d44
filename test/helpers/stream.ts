// Shared fixtures for the record-stream suites: a deterministic guest RAM
// image, a header and sections, a sink that collects a whole stream in
// memory, and a connected socket pair to stream through.
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { PAGE_SIZE } from '../../src/migrate/stream/format.js';
import type { Section, StreamHeader } from '../../src/migrate/stream/records.js';

/** xorshift32: fixed seeds make failures reproducible. */
export function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>>= 0);
  };
}

/** `pages` pages of which about `share` are random non-zero; returns the image and its non-zero page indexes. */
export function makeRam(pages: number, share: number, seed = 7): { ram: Uint8Array; nonZero: number[] } {
  const ram = new Uint8Array(pages * PAGE_SIZE);
  const words = new Uint32Array(ram.buffer);
  const r = rng(seed);
  const nonZero: number[] = [];
  for (let p = 0; p < pages; p++) {
    if (r() / 2 ** 32 >= share) continue;
    nonZero.push(p);
    for (let w = p * 1024; w < (p + 1) * 1024; w++) words[w] = r();
  }
  return { ram, nonZero };
}

export const HEADER: StreamHeader = {
  producer: 'xenkvm test',
  machine: { memMiB: 4, vcpus: 2, cpuid: [0x40000000, 'XenVMMXenVMM'] },
  schemas: { cpu: { version: 3, fields: ['rax', 'rbx'] }, evtchn: { version: 1, fields: [] } },
};

export const SECTIONS: Section[] = [
  {
    name: 'cpu',
    instance: 0,
    version: 3,
    payload: { rax: 1n << 63n, rbx: 42, flags: [true, false], blob: new Uint8Array([1, 2, 3]) },
  },
  { name: 'cpu', instance: 1, version: 3, payload: { rax: 0n, rbx: -1, flags: [], blob: new Uint8Array(0) } },
  { name: 'evtchn', instance: 0, version: 1, payload: null },
];

/** A sink that keeps everything; `bytes()` joins it. */
export { memorySink } from '../../src/migrate/stream/byte-sink.js';

/** A connected unix-socket pair at `path`: [client, accepted].  `pauseOnConnect` leaves the accepted end unread (for socketSource). */
export async function socketPair(path: string, opts: { pauseOnConnect?: boolean } = {}): Promise<[Socket, Socket]> {
  const server = createServer({ pauseOnConnect: opts.pauseOnConnect ?? false });
  server.listen(path);
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const client = connect(path);
  await once(client, 'connect');
  const [peer] = await accepted;
  server.close();
  return [client, peer];
}
