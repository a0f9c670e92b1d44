// The optional native CRC-32: dist/native/libxkcrc.so, built from
// native/*.c by tools/build-native.mjs, bound with koffi.  The library is
// loaded here, once; ram/load-lazy.ts binds its other functions through
// nativeLibrary().  It computes
// zlib's CRC-32 by carry-less multiplication (PCLMULQDQ/VPCLMULQDQ), several
// times faster than node:zlib's.  Nothing calls it but crc32() in stream/format.ts,
// which falls back to node:zlib when this returns null, and the snapshot RAM
// loader (crc32At over guest pages it read in place).
//
// Why the binding is safe: koffi passes a Uint8Array to `const uint8_t *` as
// the address of its bytes (byteOffset included, no copy) for the duration of
// the call; the C function reads exactly `n` bytes from it, writes nothing and
// keeps no pointer, and `n` is always the array's own length.  The library
// holds no state besides tables built when it is loaded.
import koffi, { type LibraryHandle } from 'koffi';
import { fileURLToPath } from 'node:url';

/** CRC-32 of `n` bytes of `bytes`, continuing from `prev`: zlib's crc32(prev, bytes, n). */
export type Crc32Fn = (prev: number, bytes: Uint8Array, n: number) => number;

export interface NativeCrc32 {
  /** The implementation the CPU allows, as the library picked it. */
  readonly crc32: Crc32Fn;
  /** "vpclmul" (AVX2 + VPCLMULQDQ), "pclmul" (SSE4.1 + PCLMULQDQ) or "table" (no carry-less multiply). */
  readonly impl: string;
  /** Each implementation this CPU can run, for tests and benchmarks. */
  readonly variants: Readonly<Record<string, Crc32Fn>>;
  /**
   * `crc32` over `n` bytes at a raw address (guest RAM): no view to create
   * and pass, which adds up over tens of thousands of single pages
   * (docs/benchmarks.md).  The caller vouches that the range is mapped.
   */
  readonly crc32At: (prev: number, addr: number, n: number) => number;
}

/** dist/native/libxkcrc.so, next to dist/src/migrate/ where this module is compiled to. */
export const NATIVE_CRC32_LIBRARY = fileURLToPath(new URL('../../native/libxkcrc.so', import.meta.url));

/** Each implementation also allows the ones after it. */
const IMPLS = ['vpclmul', 'pclmul', 'table'] as const;

let loaded: NativeCrc32 | null | undefined;
let loadError: string | null = null;
let library: LibraryHandle | null = null;

/** The loaded library, for the other native helpers; null when it did not load. */
export function nativeLibrary(): LibraryHandle | null {
  nativeCrc32();
  return library;
}

/** The native library, loaded on first use; null if it is missing or does not load. */
export function nativeCrc32(): NativeCrc32 | null {
  if (loaded === undefined) loaded = load();
  return loaded;
}

/** Why nativeCrc32() returned null, or null when it did not. */
export function nativeCrc32Error(): string | null {
  nativeCrc32();
  return loadError;
}

function load(): NativeCrc32 | null {
  try {
    const lib = koffi.load(NATIVE_CRC32_LIBRARY);
    library = lib;
    const bind = (name: string): Crc32Fn => lib.func(`uint32_t ${name}(uint32_t crc, const uint8_t *p, size_t n)`);
    const impl = String(lib.func('const char *xk_crc32_impl(void)')());
    const at = IMPLS.indexOf(impl as (typeof IMPLS)[number]);
    if (at < 0) throw new Error(`unknown implementation "${impl}"`);
    const variants = Object.fromEntries(IMPLS.slice(at).map((v) => [v, bind(`xk_crc32_${v}`)]));
    return {
      crc32: bind('xk_crc32'),
      impl,
      variants,
      crc32At: lib.func('uint32_t xk_crc32(uint32_t crc, uintptr_t p, size_t n)'),
    };
  } catch (e) {
    library = null;
    loadError = `${NATIVE_CRC32_LIBRARY}: ${(e as Error).message}`;
    return null;
  }
}
