// One pass over a snapshot file: header, every section (payload kept, it is
// small), and the RAM page lists without page data.  The file stays open
// for the page reads that follow (shared_info for the port table, memory
// diff, hexdump) until close().
import { open, type FileHandle } from 'node:fs/promises';
import { encode } from '@msgpack/msgpack';
import { IoError } from '../errors.js';
import {
  openSnapshot,
  PAGE_SIZE,
  PageIndexBuilder,
  PageReader,
  type ReadHeader,
  type StreamCounts,
  type StreamWarning,
} from '../migrate/index.js';

/** Guest RAM the inspector indexes at most (1 TiB): a file without a machine configuration sizes it. */
const MAX_INDEXED_PAGES = 1 << 28;

export interface RawSection {
  readonly name: string;
  readonly instance: number;
  readonly version: number;
  readonly payload: unknown;
  /** Offset of the SECTION record in the file. */
  readonly offset: number;
  /** Bytes of the record body (msgpack of name, instance, version, payload). */
  readonly bytes: number;
}

export interface LoadedSnapshot {
  readonly path: string;
  readonly size: number;
  readonly header: ReadHeader;
  readonly sections: readonly RawSection[];
  readonly pages: PageReader;
  readonly counts: Readonly<StreamCounts> | null;
  readonly warnings: readonly StreamWarning[];
  /** Guest memory size from the machine configuration, if it names one. */
  readonly memBytes: number | null;
  close(): Promise<void>;
}

/** `memBytes` of the machine configuration (xenkvm writes `{memBytes, vcpus}`), if it is a sane number. */
export function configuredMemBytes(machine: unknown): number | null {
  if (typeof machine !== 'object' || machine === null) return null;
  const m = (machine as Record<string, unknown>)['memBytes'];
  const n = typeof m === 'bigint' ? Number(m) : m;
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0 && n % PAGE_SIZE === 0 ? n : null;
}

const BODY_OPTIONS = { useBigInt64: true } as const;

export async function loadSnapshot(path: string): Promise<LoadedSnapshot> {
  const warnings: StreamWarning[] = [];
  const file = await openSnapshot(path, { skipRamData: true, onWarning: (w) => warnings.push(w) });
  let fh: FileHandle | null = null;
  try {
    const sections: RawSection[] = [];
    const builder = new PageIndexBuilder();
    for await (const rec of file) {
      if (rec.kind === 'section') {
        const s = rec.section;
        // The body is re-encoded to learn its size: the encoder is deterministic for decoded values.
        const bytes = encode(
          { name: s.name, instance: s.instance, version: s.version, payload: s.payload },
          BODY_OPTIONS,
        ).length;
        sections.push({ ...s, offset: rec.offset, bytes });
      } else if (rec.kind === 'ram' || rec.kind === 'zero') {
        builder.add(rec);
      }
    }
    try {
      fh = await open(path, 'r');
    } catch (err) {
      throw new IoError(`cannot open snapshot ${path}: ${err instanceof Error ? err.message : String(err)}`, {
        cause: err,
      });
    }
    const memBytes = configuredMemBytes(file.header.machine);
    const index = builder.build(memBytes === null ? null : memBytes / PAGE_SIZE, path, MAX_INDEXED_PAGES);
    const pages = new PageReader(index, fh, path);
    const handle = fh;
    let closed = false;
    return {
      path,
      size: file.size,
      header: file.header,
      sections,
      pages,
      counts: file.end,
      warnings,
      memBytes,
      async close() {
        if (closed) return;
        closed = true;
        await handle.close();
      },
    };
  } catch (err) {
    await fh?.close().catch(() => undefined);
    throw err;
  } finally {
    await file.close();
  }
}
