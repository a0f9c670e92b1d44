// Guest time: Xen system time (ns since boot, carried across snapshots) as
// every vcpu_time_info publishes it, and the wallclock in shared_info.  One
// reference (tsc0, ns0, mul, shift) serves all vCPUs, so their clocks agree
// exactly and never go backwards; the emulator evaluates the very same
// formula on the host TSC (guest TSC = host TSC + KVM's offset).
import { readHostTsc } from '../../kvm/tsc.js';
import { PVCLOCK_TSC_STABLE_BIT, SharedInfo, TimeInfo, VcpuInfo } from '../abi.js';
import { INVALID_GPA } from '../domain.js';
import { ClockField, VcpuField, type XenShared } from '../tables.js';
import type { XenContext } from '../context.js';

/** Bytes of a vcpu_time_info. */
const TIME_INFO_SIZE = 32;

const NS_PER_SEC = 1_000_000_000n;

/** Xen's set_time_scale: `ns = ((tsc_delta << shift) * mul) >> 32`, shift may be negative. */
export function timeScale(tscHz: bigint): { mul: bigint; shift: number } {
  let tps = tscHz;
  let shift = 0;
  while (tps > NS_PER_SEC * 2n) {
    tps >>= 1n;
    shift--;
  }
  while (tps <= NS_PER_SEC) {
    tps <<= 1n;
    shift++;
  }
  return { mul: (NS_PER_SEC << 32n) / tps, shift };
}

export function scaleDelta(delta: bigint, mul: bigint, shift: number): bigint {
  const d = shift < 0 ? delta >> BigInt(-shift) : delta << BigInt(shift);
  return (d * mul) >> 32n;
}

/**
 * Sets the reference so that guest system time is `ns0` now.  `tscOffset` is
 * the vCPUs' guest-minus-host TSC offset; `realtimeNs` dates the wallclock.
 */
export function setClockReference(
  shared: XenShared,
  tscKhz: number,
  tscOffset: bigint,
  ns0: bigint,
  realtimeNs: bigint,
): void {
  const { mul, shift } = timeScale(BigInt(tscKhz) * 1000n);
  const guestTsc = readHostTsc() + tscOffset;
  shared.setClockWord(ClockField.mul, mul);
  shared.setClockWord(ClockField.shift, BigInt(shift));
  shared.setClockWord(ClockField.tscOffset, tscOffset);
  shared.setClockWord(ClockField.tsc0, guestTsc);
  shared.setClockWord(ClockField.ns0, ns0);
  const wc = realtimeNs - ns0;
  shared.setClockWord(ClockField.wcSec, wc / NS_PER_SEC);
  shared.setClockWord(ClockField.wcNsec, wc % NS_PER_SEC);
}

/** Guest system time now, as the guest's pvclock computes it. */
export function guestNowNs(shared: XenShared): bigint {
  const tsc = readHostTsc() + shared.clockWord(ClockField.tscOffset);
  const delta = tsc - shared.clockWord(ClockField.tsc0);
  return (
    shared.clockWord(ClockField.ns0) +
    scaleDelta(delta < 0n ? 0n : delta, shared.clockWord(ClockField.mul), Number(shared.clockWord(ClockField.shift)))
  );
}

/** Writes a vcpu_time_info at RAM offset `at` with Xen's odd/even version protocol. */
export function writeTimeInfo(ctx: XenContext, at: number): void {
  if (at < 0) return;
  const v = ctx.phys.view(at);
  const o = ctx.phys.within(at);
  const s = ctx.shared;
  const version = v.getUint32(o + TimeInfo.version, true) | 1;
  v.setUint32(o + TimeInfo.version, version, true);
  v.setBigUint64(o + TimeInfo.tscTimestamp, s.clockWord(ClockField.tsc0), true);
  v.setBigUint64(o + TimeInfo.systemTime, s.clockWord(ClockField.ns0), true);
  v.setUint32(o + TimeInfo.mul, Number(s.clockWord(ClockField.mul)), true);
  v.setInt8(o + TimeInfo.shift, Number(s.clockWord(ClockField.shift)));
  v.setUint8(o + TimeInfo.flags, PVCLOCK_TSC_STABLE_BIT);
  v.setUint32(o + TimeInfo.version, (version + 1) >>> 0, true);
}

/** Refreshes every time area of vCPU `vcpu` (its vcpu_info's and a registered one). */
export function publishVcpuTime(ctx: XenContext, vcpu: number): void {
  const vi = ctx.vcpuInfo(vcpu);
  if (vi >= 0) writeTimeInfo(ctx, vi + (ctx.shared.domain.longMode ? VcpuInfo.time64 : VcpuInfo.time32));
  const extra = ctx.shared.vcpu(vcpu, VcpuField.timeInfoGpa);
  if (extra !== INVALID_GPA) writeTimeInfo(ctx, ctx.phys.offsetOf(extra, TIME_INFO_SIZE));
}

/** Writes wc_sec/wc_nsec (and wc_sec_hi) into shared_info. */
export function publishWallclock(ctx: XenContext): void {
  const siGpa = ctx.shared.domain.sharedInfoGpa;
  if (siGpa === INVALID_GPA) return;
  const at = ctx.phys.offsetOf(siGpa, 4096);
  if (at < 0) return;
  const si = ctx.phys.within(at);
  const long = ctx.shared.domain.longMode;
  const v = ctx.phys.view(at);
  const ver = si + (long ? SharedInfo.wcVersion64 : SharedInfo.wcVersion32);
  const version = v.getUint32(ver, true) | 1;
  v.setUint32(ver, version, true);
  const sec = ctx.shared.clockWord(ClockField.wcSec);
  v.setUint32(si + (long ? SharedInfo.wcSec64 : SharedInfo.wcSec32), Number(sec & 0xffffffffn), true);
  v.setUint32(
    si + (long ? SharedInfo.wcNsec64 : SharedInfo.wcNsec32),
    Number(ctx.shared.clockWord(ClockField.wcNsec)),
    true,
  );
  v.setUint32(si + (long ? SharedInfo.wcSecHi64 : SharedInfo.wcSecHi32), Number(sec >> 32n), true);
  v.setUint32(ver, (version + 1) >>> 0, true);
}
