/*
 * CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320) by carry-less
 * multiplication, following Intel's "Fast CRC Computation for Generic
 * Polynomials Using PCLMULQDQ Instruction" (Gopal et al., 2009): fold the
 * message 128 bits at a time with PCLMULQDQ, then reduce the last 128 bits
 * to 32 with two more folds and a Barrett reduction.
 *
 *   uint32_t xk_crc32(uint32_t crc, const uint8_t *p, size_t n)
 *
 * has zlib's crc32() semantics (inverted on entry and exit), so results chain
 * exactly like zlib.crc32(buf, prev).  Three implementations, chosen once
 * when the library is loaded:
 *
 *   vpclmul  AVX2 + VPCLMULQDQ: four 256-bit lanes, 128 bytes per step;
 *   pclmul   SSE4.1 + PCLMULQDQ: four 128-bit lanes, 64 bytes per step;
 *   table    slice-by-8 tables, for CPUs without PCLMULQDQ.
 *
 * The vector code is compiled per function (target attributes), not for the
 * whole file, so the table path and the dispatch run on any x86-64.
 * xk_crc32_impl() names the implementation in use; xk_crc32_table,
 * xk_crc32_pclmul and xk_crc32_vpclmul call one directly (tests, benchmarks).
 *
 * Bit order.  zlib's CRC is "reflected": bit 0 of a byte is its highest
 * coefficient, and bit 0 of the CRC register is the coefficient of x^31.  A
 * little-endian 16-byte load into an xmm register therefore holds a
 * polynomial A(x) of degree < 128 with bit k as the coefficient of x^(127-k):
 * its low quadword H is the earlier (higher) half, A = H*x^64 + L.  For two
 * such 64-bit halves, PCLMULQDQ's bit k is the coefficient of x^(126-k) of
 * their product: as a 128-bit value, the product times x.
 *
 * Constants.  K(n) below is x^n mod P(x), bit-reflected in 32 bits and
 * shifted left by one (33 bits); multiplying a 64-bit half by K(n) yields
 * half * (x^n mod P) * x^32 in the 128-bit bit order above, so:
 *
 *   fold A forward by d bits:  A*x^d  ==  H*K(d+32) + L*K(d-32)   (mod P)
 *
 * which lands as a 128-bit value ready to be XORed into the block d bits
 * later.  The values were computed with polynomial arithmetic over GF(2)
 * (x^n mod P by repeated shift-and-subtract) and checked against the
 * whitepaper's table; any wrong one fails test/unit/crc32.test.ts, which
 * compares every path with zlib.
 */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#define EXPORT __attribute__((visibility("default")))

/* d = 1024: 256-bit lanes, four of them (128 bytes per step). */
#define K1056 0x1e88ef372ULL
#define K992  0x14a7fe880ULL
/* d = 512: four 128-bit lanes (64 bytes per step); two 256-bit lanes apart. */
#define K544  0x154442bd4ULL
#define K480  0x1c6e41596ULL
/* d = 256: one 256-bit lane into the next. */
#define K288  0x0f1da05aaULL
#define K224  0x15a546366ULL
/* d = 128: one 16-byte block into the next. */
#define K160  0x1751997d0ULL
#define K96   0x0ccaa009eULL
/* Final reduction: 128 -> 96 bits uses K96, 96 -> 64 bits uses K64. */
#define K64   0x163cd6124ULL
/* Barrett: P(x) and mu = floor(x^64 / P(x)), both 33 bits, bit-reflected. */
#define POLY  0x1db710641ULL
#define MU    0x1f7011641ULL

/* ---- table path (and the tails of the vector paths) ---------------------- */

static uint32_t table[8][256];

static void build_tables(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
    table[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; i++)
    for (int t = 1; t < 8; t++) table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
}

/* `c` is the CRC register (already inverted), as in every static function here. */
static uint32_t crc_table(uint32_t c, const uint8_t *p, size_t n) {
  while (n > 0 && ((uintptr_t)p & 7) != 0) {
    c = (c >> 8) ^ table[0][(c ^ *p++) & 0xff];
    n--;
  }
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w;
    __builtin_memcpy(&w, p, 8);
    uint32_t lo = c ^ (uint32_t)w, hi = (uint32_t)(w >> 32);
    c = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^ table[4][lo >> 24] ^
        table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^ table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
  }
  while (n-- > 0) c = (c >> 8) ^ table[0][(c ^ *p++) & 0xff];
  return c;
}

/* ---- PCLMULQDQ, 128-bit lanes -------------------------------------------- */

#define TARGET_PCLMUL __attribute__((target("pclmul,sse4.1")))
#define TARGET_VPCLMUL __attribute__((target("vpclmulqdq,avx2,pclmul,sse4.1")))

/* x*x^d + next, with k = {lo: K(d+32), hi: K(d-32)}. */
TARGET_PCLMUL static inline __attribute__((always_inline)) __m128i fold128(__m128i x, __m128i k, __m128i next) {
  return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11)), next);
}

/*
 * The CRC register of a message congruent to the 128-bit value x: (A*x^32)
 * mod P, A as above.  128 -> 96 bits: H*(x^96 mod P) + L*x^32; 96 -> 64 bits
 * the same with the top 32 bits and x^64; then Barrett, q = floor(hi32 * mu /
 * x^32), r = v - q*P, which lands in bits 32..63.  In the comments a value
 * "in the 128-bit order" is a polynomial V(x) with bit k the coefficient of
 * x^(127-k), so each step's result is written as what it holds times x^s.
 */
TARGET_PCLMUL static inline __attribute__((always_inline)) uint32_t reduce128(__m128i x) {
  const __m128i k = _mm_set_epi64x((long long)K64, (long long)K96);
  const __m128i low32 = _mm_set_epi32(0, 0, 0, -1);
  const __m128i pm = _mm_set_epi64x((long long)MU, (long long)POLY);
  /* (H*(x^96 mod P) + L*x^32) * x^32: 96 bits in bits 0..95. */
  __m128i v = _mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_srli_si128(x, 8));
  /* (G*(x^64 mod P) + J) * x^64, G = bits 0..31 of v, J = bits 32..95: 64 bits in bits 0..63. */
  v = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(v, low32), k, 0x10), _mm_srli_si128(v, 4));
  /* q*x^32 in bits 0..31 of t (the top half of hi32*mu), then q*P. */
  __m128i t = _mm_clmulepi64_si128(_mm_and_si128(v, low32), pm, 0x10);
  t = _mm_clmulepi64_si128(_mm_and_si128(t, low32), pm, 0x00);
  return (uint32_t)_mm_extract_epi32(_mm_xor_si128(v, t), 1);
}

/* From one 128-bit accumulator: the remaining whole blocks, then the tail by table. */
TARGET_PCLMUL static inline __attribute__((always_inline)) uint32_t finish128(__m128i x, const uint8_t *p, size_t n) {
  const __m128i k128 = _mm_set_epi64x((long long)K96, (long long)K160);
  for (; n >= 16; p += 16, n -= 16) x = fold128(x, k128, _mm_loadu_si128((const __m128i *)p));
  return crc_table(reduce128(x), p, n);
}

/* n >= 16.  The register is XORed into the first 4 bytes: c*x^(8n) == (c*x^(8n-32))*x^32. */
TARGET_PCLMUL static uint32_t crc_pclmul(uint32_t c, const uint8_t *p, size_t n) {
  const __m128i k128 = _mm_set_epi64x((long long)K96, (long long)K160);
  __m128i x0 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)p), _mm_cvtsi32_si128((int)c));
  if (n < 64) return finish128(x0, p + 16, n - 16);
  const __m128i k512 = _mm_set_epi64x((long long)K480, (long long)K544);
  __m128i x1 = _mm_loadu_si128((const __m128i *)(p + 16));
  __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32));
  __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 48));
  for (p += 64, n -= 64; n >= 64; p += 64, n -= 64) {
    x0 = fold128(x0, k512, _mm_loadu_si128((const __m128i *)p));
    x1 = fold128(x1, k512, _mm_loadu_si128((const __m128i *)(p + 16)));
    x2 = fold128(x2, k512, _mm_loadu_si128((const __m128i *)(p + 32)));
    x3 = fold128(x3, k512, _mm_loadu_si128((const __m128i *)(p + 48)));
  }
  return finish128(fold128(fold128(fold128(x0, k128, x1), k128, x2), k128, x3), p, n);
}

/* ---- VPCLMULQDQ, 256-bit lanes (two 128-bit blocks each) ----------------- */

TARGET_VPCLMUL static inline __attribute__((always_inline)) __m256i fold256(__m256i y, __m256i k, __m256i next) {
  return _mm256_xor_si256(_mm256_xor_si256(_mm256_clmulepi64_epi128(y, k, 0x00), _mm256_clmulepi64_epi128(y, k, 0x11)), next);
}

#define LOAD256(q) _mm256_loadu_si256((const __m256i *)(q))
#define BROADCAST_K(lo, hi) _mm256_set_epi64x((long long)(hi), (long long)(lo), (long long)(hi), (long long)(lo))

/* n >= 128; called from 256 bytes up (below that both paths take ~20-30 ns, nothing next to a koffi call). */
TARGET_VPCLMUL static uint32_t crc_vpclmul(uint32_t c, const uint8_t *p, size_t n) {
  const __m256i k1024 = BROADCAST_K(K1056, K992);
  __m256i y0 = _mm256_xor_si256(LOAD256(p), _mm256_zextsi128_si256(_mm_cvtsi32_si128((int)c)));
  __m256i y1 = LOAD256(p + 32), y2 = LOAD256(p + 64), y3 = LOAD256(p + 96);
  for (p += 128, n -= 128; n >= 128; p += 128, n -= 128) {
    y0 = fold256(y0, k1024, LOAD256(p));
    y1 = fold256(y1, k1024, LOAD256(p + 32));
    y2 = fold256(y2, k1024, LOAD256(p + 64));
    y3 = fold256(y3, k1024, LOAD256(p + 96));
  }
  /* Lanes 0, 1 are 512 bits before lanes 2, 3; then lane 2 is 256 bits before lane 3. */
  const __m256i k512 = BROADCAST_K(K544, K480), k256 = BROADCAST_K(K288, K224);
  __m256i y = fold256(fold256(y0, k512, y2), k256, fold256(y1, k512, y3));
  /* y's low block is 128 bits before its high block. */
  const __m128i k128 = _mm_set_epi64x((long long)K96, (long long)K160);
  __m128i x = fold128(_mm256_castsi256_si128(y), k128, _mm256_extracti128_si256(y, 1));
  return finish128(x, p, n); /* gcc adds the vzeroupper on return */
}

/* ---- dispatch ----------------------------------------------------------- */

enum impl { IMPL_TABLE, IMPL_PCLMUL, IMPL_VPCLMUL };
static enum impl impl = IMPL_TABLE;

__attribute__((constructor)) static void xk_crc32_init(void) {
  build_tables();
  __builtin_cpu_init();
  if (__builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1")) {
    impl = IMPL_PCLMUL;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("vpclmulqdq")) impl = IMPL_VPCLMUL;
  }
}

/* The register in and out, each path from the length where it starts to pay. */
static uint32_t run_pclmul(uint32_t c, const uint8_t *p, size_t n) {
  return n >= 16 ? crc_pclmul(c, p, n) : crc_table(c, p, n);
}

static uint32_t run_vpclmul(uint32_t c, const uint8_t *p, size_t n) {
  return n >= 256 ? crc_vpclmul(c, p, n) : run_pclmul(c, p, n);
}

EXPORT uint32_t xk_crc32(uint32_t crc, const uint8_t *p, size_t n) {
  switch (impl) {
    case IMPL_VPCLMUL: return ~run_vpclmul(~crc, p, n);
    case IMPL_PCLMUL: return ~run_pclmul(~crc, p, n);
    default: return ~crc_table(~crc, p, n);
  }
}

/* Each implementation on its own, for tests and benchmarks: the caller checks xk_crc32_impl() first. */
EXPORT uint32_t xk_crc32_table(uint32_t crc, const uint8_t *p, size_t n) { return ~crc_table(~crc, p, n); }
EXPORT uint32_t xk_crc32_pclmul(uint32_t crc, const uint8_t *p, size_t n) { return ~run_pclmul(~crc, p, n); }
EXPORT uint32_t xk_crc32_vpclmul(uint32_t crc, const uint8_t *p, size_t n) { return ~run_vpclmul(~crc, p, n); }

/* "vpclmul", "pclmul" or "table": what xk_crc32 uses on this CPU (each implies the ones after it). */
EXPORT const char *xk_crc32_impl(void) {
  return impl == IMPL_VPCLMUL ? "vpclmul" : impl == IMPL_PCLMUL ? "pclmul" : "table";
}
