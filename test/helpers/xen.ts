// A Xen domain without KVM, for the hypercall handlers: the real XenContext
// and shared tables over fresh SharedArrayBuffers, guest RAM as a plain
// buffer, and services that record what the handlers asked of the machine.
// Guest-virtual addresses resolve through real page tables built here
// (4-level long mode), or identically with paging off (compat callers).
import { Hypercall } from '../../src/xen/abi.js';
import { XenContext, type XenThreadResources } from '../../src/xen/context.js';
import { GuestAccess } from '../../src/xen/guest-access.js';
import { dispatchHypercall } from '../../src/xen/hypercall/dispatch.js';
import type { HypercallEnv } from '../../src/xen/hypercall/types.js';
import { XenShared } from '../../src/xen/tables.js';
import { setClockReference } from '../../src/xen/time/clock.js';
import { Ctl } from '../../src/xen/vcpu/control-block.js';

export const PAGE = 4096;
/** Guest time when the domain is made (the clock then runs with the host TSC). */
export const BOOT_NS = 10_000_000_000n;

/**
 * The long-mode address space: guest-virtual = guest-physical for the first
 * 4 MiB, in 4 KiB pages below 2 MiB and one 2 MiB page above, except:
 */
export const VA = {
  /** Not present. */
  hole: 0x10000n,
  /** Present, read-only: reads work, writes fault. */
  readOnly: 0x11000n,
  /** Mapped (2 MiB page) to guest-physical 4 MiB, past the end of RAM. */
  pastRam: 0x400000n,
  /** Not canonical. */
  nonCanonical: 0x0000800000000000n,
} as const;
/** Where tests put hypercall arguments (mapped, writable, otherwise unused). */
export const ARGS = 0x100000;
/** Paging structures (pages 1..4). */
const PML4 = 0x1000;
const PDPT = 0x2000;
const PD = 0x3000;
const PT = 0x4000;

export interface FakeDomainOptions {
  vcpus?: number;
  /** Guest RAM; 4 MiB unless a test needs a larger address space. */
  memBytes?: number;
  /** 64-bit guest (long-mode paging, 64-bit shared_info) or compat (paging off, 32-bit layouts). */
  mode?: '64' | 'compat';
}

export interface FakeDomain {
  env: HypercallEnv;
  xen: XenContext;
  ram: Uint8Array;
  view: DataView;
  is64: boolean;
  /** Upcall MSIs sent, as [apicId, vector]. */
  msis: Array<[number, number]>;
  /** warnOnce calls, by key. */
  warnings: Map<string, string>;
  console: string[];
  shutdowns: string[];
  blocks: number[];
  polls: Array<{ vcpu: number; ports: number[]; timeoutNs: bigint }>;
  started: number[];
  /** Backend ids notified by EVTCHNOP_send on backend ports. */
  backendKicks: number[];
  /** What block() and poll() return. */
  answer: bigint;
  /** Continuations followed by call() (a long hypercall re-entered with its progress). */
  restarts: number;
  /** Issues hypercall `nr` from `vcpu` (default 0) with up to five arguments. */
  call(nr: number, args: Array<bigint | number>, vcpu?: number): bigint;
  /** Writes `size` bytes at ARGS (zeroed first, then `fill`), returns ARGS. */
  args(size: number, fill?: (v: DataView) => void): bigint;
  /** The `size` bytes at ARGS as the handler left them. */
  out(size?: number): DataView;
  /** XENMEM_add_to_physmap of shared_info at `gpfn`; returns the GPA. */
  placeSharedInfo(gpfn?: number): number;
}

function buildPageTables(view: DataView): void {
  const P = 1n;
  const RW = 2n;
  const PS = 0x80n;
  view.setBigUint64(PML4, BigInt(PDPT) | P | RW, true);
  view.setBigUint64(PDPT, BigInt(PD) | P | RW, true);
  view.setBigUint64(PD, BigInt(PT) | P | RW, true); // 0-2 MiB: 4 KiB pages
  view.setBigUint64(PD + 8, 0x200000n | P | RW | PS, true); // 2-4 MiB
  view.setBigUint64(PD + 16, 0x400000n | P | RW | PS, true); // 4-6 MiB: beyond a 4 MiB RAM
  for (let i = 0; i < 512; i++) {
    const page = BigInt(i * PAGE);
    if (page === VA.hole) continue;
    view.setBigUint64(PT + i * 8, page | P | (page === VA.readOnly ? 0n : RW), true);
  }
}

export function fakeDomain(opts: FakeDomainOptions = {}): FakeDomain {
  const vcpus = opts.vcpus ?? 2;
  const memBytes = opts.memBytes ?? 4 << 20;
  const is64 = (opts.mode ?? '64') === '64';
  const shared = XenShared.create(vcpus, memBytes);
  shared.domain.longMode = is64;
  setClockReference(shared, 2_000_000, 0n, BOOT_NS, 1_700_000_000_000_000_000n);
  const ram = new Uint8Array(memBytes);
  const view = new DataView(ram.buffer);
  const msis: Array<[number, number]> = [];
  const resources: XenThreadResources = {
    ramAddr: 0n,
    ramSize: memBytes,
    xenPagesAddr: 0n,
    vmFd: -1,
    xen: shared.buffers,
    control: new SharedArrayBuffer(vcpus * Ctl.SIZE * 4),
  };
  const xen = new XenContext(resources, [ram], { send: (apicId, vector) => void msis.push([apicId, vector]) });
  const mem = new GuestAccess(xen.phys);
  if (is64) {
    buildPageTables(view);
    // CR0.PG|PE, CR3, CR4.PAE, EFER.LMA|LME
    mem.setPaging(0x80000001n, BigInt(PML4), 0x20n, 0x500n);
  } else {
    mem.setPaging(0x11n, 0n, 0n, 0n);
  }
  const d: FakeDomain = {
    xen,
    ram,
    view,
    is64,
    msis,
    warnings: new Map(),
    console: [],
    shutdowns: [],
    blocks: [],
    polls: [],
    started: [],
    backendKicks: [],
    answer: 0n,
    restarts: 0,
    env: undefined as unknown as HypercallEnv,
    call(nr, args, vcpu = 0) {
      const a = new BigUint64Array(5);
      args.forEach((x, i) => (a[i] = BigInt.asUintN(64, BigInt(x))));
      // Compat callers pass 32-bit registers, zero-extended (vcpu-worker.ts).
      if (!is64) for (let i = 0; i < 5; i++) a[i] = a[i]! & 0xffffffffn;
      const call = { nr, args: a, is64, vcpu, restart: null as bigint | null };
      let r = dispatchHypercall(d.env, call);
      // A continuation: the guest re-enters the stub with the new first argument.
      while (call.restart !== null) {
        d.restarts++;
        a[0] = call.restart;
        r = dispatchHypercall(d.env, call);
      }
      return r;
    },
    args(size, fill) {
      ram.fill(0, ARGS, ARGS + size);
      fill?.(new DataView(ram.buffer, ARGS, size));
      return BigInt(ARGS);
    },
    out(size = 64) {
      return new DataView(ram.buffer, ARGS, size);
    },
    placeSharedInfo(gpfn = 0x200) {
      const ptr = d.args(is64 ? 24 : 16, (v) => {
        v.setUint16(0, 0x7ff0, true); // DOMID_SELF
        v.setUint32(4, 0, true); // XENMAPSPACE_shared_info
        if (is64) v.setBigUint64(16, BigInt(gpfn), true);
        else v.setUint32(12, gpfn, true);
      });
      const r = d.call(Hypercall.memory_op, [7, ptr]);
      if (r !== 0n) throw new Error(`add_to_physmap(shared_info, ${gpfn}) = ${r}`);
      return gpfn * PAGE;
    },
  };
  d.env = {
    xen,
    domain: xen.shared.domain,
    mem,
    services: {
      consoleWrite: (bytes) => void d.console.push(Buffer.from(bytes).toString('latin1')),
      shutdown: (reason) => void d.shutdowns.push(reason),
      warnOnce: (key, message) => void (d.warnings.has(key) || d.warnings.set(key, message)),
      block: (vcpu) => {
        d.blocks.push(vcpu);
        return d.answer;
      },
      poll: (vcpu, ports, timeoutNs) => {
        d.polls.push({ vcpu, ports, timeoutNs });
        return d.answer;
      },
      startVcpu: (vcpu) => void d.started.push(vcpu),
      notifyBackend: (id) => void d.backendKicks.push(id),
    },
  };
  return d;
}
