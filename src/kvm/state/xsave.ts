// FPU, SSE and AVX state: the XSAVE area, and the XCRs (XCR0 selects which
// XSAVE components the guest uses).  The XSAVE area's legacy region is the
// FXSAVE image, so the FPU needs no separate KVM_GET_FPU.
//
// The area is `struct kvm_xsave` (4096 bytes) unless KVM_CAP_XSAVE2 on the VM
// reports more (AMX state), in which case KVM_GET_XSAVE2 fills that many.  In
// state: the first 4096 bytes in `xsave`, the rest (if any) in 64-byte lines
// in `xsave_ext` (zero-padded), and the exact size in `xsave_size`, so a
// 4096-byte host's state stays small and a bigger one is not truncated.
import { bytes, struct, u32, u64, varArray } from '../../vmstate/index.js';
import { KVM_MAX_XCRS, kvm_xcr, kvm_xcrs, kvm_xsave } from '../structs.js';
import { offsetOf } from '../layout.js';
import { bindStruct } from './bind.js';

export const XSAVE_LEGACY_SIZE = kvm_xsave.size;
export const XSAVE_LINE = 64;
/** Largest XSAVE area accepted: 64 KiB, well above AMX's 11008 bytes. */
export const XSAVE_MAX_SIZE = 64 << 10;
export const XSAVE_MAX_EXT_LINES = (XSAVE_MAX_SIZE - XSAVE_LEGACY_SIZE) / XSAVE_LINE;

export const xsaveFields = {
  /** Bytes of the XSAVE area on the host that saved it (4096, or KVM_CAP_XSAVE2). */
  xsave_size: u32(),
  xsave: bytes(XSAVE_LEGACY_SIZE),
  xsave_ext_lines: u32(),
  xsave_ext: varArray(bytes(XSAVE_LINE), { lengthField: 'xsave_ext_lines', max: XSAVE_MAX_EXT_LINES }),
};

export const xcrFields = { xcr: u32(), value: u64() };
export const xcrsFields = {
  nr_xcrs: u32(),
  xcrs: varArray(struct(xcrFields), { lengthField: 'nr_xcrs', max: KVM_MAX_XCRS }),
};

type XsaveState = { xsave_size: number; xsave: Uint8Array; xsave_ext_lines: number; xsave_ext: Uint8Array[] };
type XcrsState = { nr_xcrs: number; xcrs: Array<{ xcr: number; value: bigint }> };

/** Splits a KVM XSAVE buffer of `size` bytes into state.  Copies; the buffer is reused. */
export function readXsave(buf: Uint8Array, size: number): XsaveState {
  const ext: Uint8Array[] = [];
  for (let o = XSAVE_LEGACY_SIZE; o < size; o += XSAVE_LINE) {
    const line = new Uint8Array(XSAVE_LINE);
    line.set(buf.subarray(o, Math.min(o + XSAVE_LINE, size)));
    ext.push(line);
  }
  return { xsave_size: size, xsave: buf.slice(0, XSAVE_LEGACY_SIZE), xsave_ext_lines: ext.length, xsave_ext: ext };
}

/**
 * Fills `buf` (the destination's XSAVE buffer, `buf.length` its KVM size) from
 * state.  Returns null, or why the state does not fit this host: bytes the
 * destination has no room for are refused only if they are not zero (zero is
 * the init state of a component, which the destination gets anyway).
 */
export function writeXsave(buf: Uint8Array, s: XsaveState): string | null {
  if (s.xsave.length !== XSAVE_LEGACY_SIZE) return `xsave holds ${s.xsave.length} bytes, not ${XSAVE_LEGACY_SIZE}`;
  if (s.xsave_ext.length !== s.xsave_ext_lines)
    return `xsave_ext has ${s.xsave_ext.length} lines but xsave_ext_lines says ${s.xsave_ext_lines}`;
  const lines = Math.ceil(Math.max(0, s.xsave_size - XSAVE_LEGACY_SIZE) / XSAVE_LINE);
  if (s.xsave_size < XSAVE_LEGACY_SIZE || s.xsave_size > XSAVE_MAX_SIZE || lines !== s.xsave_ext_lines) {
    return `xsave_size ${s.xsave_size} does not match ${s.xsave_ext_lines} extension lines`;
  }
  buf.fill(0);
  buf.set(s.xsave, 0);
  for (let i = 0; i < s.xsave_ext_lines; i++) {
    const line = s.xsave_ext[i]!;
    if (line.length !== XSAVE_LINE) return `xsave_ext[${i}] holds ${line.length} bytes, not ${XSAVE_LINE}`;
    const at = XSAVE_LEGACY_SIZE + i * XSAVE_LINE;
    const room = Math.max(0, Math.min(XSAVE_LINE, buf.length - at));
    if (room > 0) buf.set(line.subarray(0, room), at);
    for (let j = room; j < XSAVE_LINE; j++) {
      if (line[j] !== 0) {
        return (
          `the XSAVE area was saved with ${s.xsave_size} bytes (KVM_CAP_XSAVE2 on the source) and holds state at byte ${at + j}, ` +
          `beyond the ${buf.length} bytes this host's KVM takes: the destination lacks an XSAVE component the guest uses`
        );
      }
    }
  }
  return null;
}

const xcrBinding = bindStruct(xcrFields, kvm_xcr);
const XCRS_NR = offsetOf(kvm_xcrs, 'nr_xcrs');
const XCRS_AT = offsetOf(kvm_xcrs, 'xcrs');

export function readXcrs(v: DataView): XcrsState {
  const n = Math.min(v.getUint32(XCRS_NR, true), KVM_MAX_XCRS);
  const xcrs = Array.from({ length: n }, (_, i) => xcrBinding.read(v, XCRS_AT + i * kvm_xcr.size));
  return { nr_xcrs: n, xcrs };
}

/** Returns null, or why the state cannot be written. */
export function writeXcrs(v: DataView, s: XcrsState): string | null {
  if (s.xcrs.length !== s.nr_xcrs || s.nr_xcrs > KVM_MAX_XCRS)
    return `nr_xcrs ${s.nr_xcrs} with ${s.xcrs.length} entries (at most ${KVM_MAX_XCRS})`;
  new Uint8Array(v.buffer, v.byteOffset, kvm_xcrs.size).fill(0);
  v.setUint32(XCRS_NR, s.nr_xcrs, true);
  s.xcrs.forEach((x, i) => xcrBinding.write(v, XCRS_AT + i * kvm_xcr.size, x));
  return null;
}
