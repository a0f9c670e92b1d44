// What an in-process backend (domain 0 here) does with a grant reference the
// guest gave it: map the granted page or copy to or from it, with the checks
// and flag updates Xen makes for the same operations (grant_table.c:
// map_grant_ref, unmap_common_complete, acquire/release_grant_for_copy), and
// Xen's GNTST_* answers (docs/xen-abi.md, "Grant tables: the backend API").
//
// The entry's flags word is shared with the guest, which may change it at any
// time: it is read and updated with compare-and-exchange, a few times at
// most, as Xen does.  Pins (which grants are mapped, how) are the backend's
// own, kept in this object: a backend maps and unmaps within one kick, so no
// pin outlives a pause and nothing here needs saving (GTF_reading/writing are
// all clear whenever a snapshot is taken).
import { Gntst, Gtf } from '../abi.js';
import type { GuestPhys } from '../memory/guest-phys.js';
import { GRANT_ENTRIES_PER_FRAME, GRANT_ENTRY_V1_SIZE, grantFrameOffset, type GrantTable } from './table.js';

export type GrantStatus = (typeof Gntst)[keyof typeof Gntst];

/** A mapped grant: the granted page as a view (writable only when !readonly, by contract). */
export interface GrantMapping {
  readonly ref: number;
  readonly readonly: boolean;
  readonly page: Uint8Array;
}

export type MapResult = { status: typeof Gntst.okay; mapping: GrantMapping } | { status: GrantStatus; mapping: null };

interface Pin {
  /** RAM offset of the granted page, fixed at the first pin as Xen fixes act->mfn. */
  offset: number;
  readers: number;
  writers: number;
}

/** Xen retries the compare-and-exchange of a guest-shared entry this many times before calling it unstable. */
const CMPXCHG_TRIES = 5;

export class GrantAccess {
  private readonly pins = new Map<number, Pin>();
  private readonly live = new WeakSet<GrantMapping>();

  /** `domid`: the backend's domain, which entries must name. */
  constructor(
    private readonly phys: GuestPhys,
    private readonly table: GrantTable,
    readonly domid = 0,
  ) {}

  /** Maps grant `ref` for reading, or reading and writing (GNTTABOP_map_grant_ref with GNTMAP_host_map). */
  map(ref: number, readonly: boolean): MapResult {
    if (!this.validRef(ref)) return { status: Gntst.bad_gntref, mapping: null };
    const pin = this.acquire(ref, readonly, true);
    if (typeof pin === 'number') return { status: pin as GrantStatus, mapping: null };
    const mapping: GrantMapping = { ref, readonly, page: this.phys.bytes(pin.offset, 4096) };
    this.live.add(mapping);
    return { status: Gntst.okay, mapping };
  }

  /** Ends a mapping (GNTTABOP_unmap_grant_ref): GTF_writing and GTF_reading clear with the last pins of their kind. */
  unmap(mapping: GrantMapping): GrantStatus {
    if (!this.live.has(mapping)) return Gntst.bad_handle;
    this.live.delete(mapping);
    this.release(mapping.ref, mapping.readonly);
    return Gntst.okay;
  }

  /** Copies `into.length` bytes from offset `offset` of granted page `ref` (GNTTABOP_copy, source a gref). */
  copyFrom(ref: number, offset: number, into: Uint8Array): GrantStatus {
    return this.copy(ref, offset, into.length, true, (page) => into.set(page));
  }

  /** Copies `data` to offset `offset` of granted page `ref` (GNTTABOP_copy, destination a gref). */
  copyTo(ref: number, offset: number, data: Uint8Array): GrantStatus {
    return this.copy(ref, offset, data.length, false, (page) => page.set(data));
  }

  /** Grants currently mapped by this backend (for diagnostics). */
  get pinned(): number {
    return this.pins.size;
  }

  private copy(
    ref: number,
    offset: number,
    len: number,
    readonly: boolean,
    move: (p: Uint8Array) => void,
  ): GrantStatus {
    if (!this.validRef(ref)) return Gntst.bad_gntref;
    const pin = this.acquire(ref, readonly, false);
    if (typeof pin === 'number') return pin as GrantStatus;
    try {
      // Xen checks the range once the grant is held (gnttab_copy_buf).
      if (!Number.isInteger(offset) || offset < 0 || len > 0xffff || offset + len > 4096) return Gntst.bad_copy_arg;
      move(this.phys.bytes(pin.offset + offset, len));
      return Gntst.okay;
    } finally {
      this.release(ref, readonly);
    }
  }

  private validRef(ref: number): boolean {
    return Number.isInteger(ref) && ref >= 0 && ref < this.table.nrEntries;
  }

  private entryOffset(ref: number): number {
    return (
      grantFrameOffset(Math.floor(ref / GRANT_ENTRIES_PER_FRAME)) +
      (ref % GRANT_ENTRIES_PER_FRAME) * GRANT_ENTRY_V1_SIZE
    );
  }

  /** Pins `ref` (Xen's _set_status_v1 then get_paged_frame): the pin, or the GNTST error. */
  private acquire(ref: number, readonly: boolean, mapping: boolean): Pin | number {
    const at = this.entryOffset(ref);
    let pin = this.pins.get(ref);
    if (!pin || (!readonly && pin.writers === 0)) {
      const rc = this.setStatus(at, readonly, mapping, pin !== undefined);
      if (rc !== Gntst.okay) return rc;
      if (!pin) {
        const frame = this.phys.getU32(at + 4);
        const offset = this.phys.offsetOf(frame * 4096, 4096);
        if (offset < 0) {
          this.clearFlags(at, readonly ? Gtf.reading : Gtf.reading | Gtf.writing);
          return Gntst.bad_page;
        }
        pin = { offset, readers: 0, writers: 0 };
        this.pins.set(ref, pin);
      }
    }
    if (readonly) pin.readers++;
    else pin.writers++;
    return pin;
  }

  private release(ref: number, readonly: boolean): void {
    const pin = this.pins.get(ref);
    if (!pin) return;
    if (readonly) pin.readers--;
    else pin.writers--;
    const at = this.entryOffset(ref);
    if (!readonly && pin.writers === 0) this.clearFlags(at, Gtf.writing);
    if (pin.readers + pin.writers === 0) {
      this.clearFlags(at, Gtf.reading);
      this.pins.delete(ref);
    }
  }

  /**
   * Checks the entry and sets GTF_reading (and GTF_writing) in one
   * compare-and-exchange of its flags+domid word.  An unpinned entry must
   * permit access to this domain (a sub-page grant may not be mapped); a
   * writer may not use a read-only grant.  All of it GNTST_general_error, as Xen.
   */
  private setStatus(at: number, readonly: boolean, mapping: boolean, pinned: boolean): number {
    const mask = Gtf.type_mask | (mapping ? Gtf.sub_page : 0);
    let word = this.phys.atomicLoad32(at);
    for (let tries = 0; ; tries++) {
      const flags = word & 0xffff;
      if (!pinned && ((flags & mask) !== Gtf.permit_access || word >>> 16 !== this.domid)) return Gntst.general_error;
      if (!readonly && flags & Gtf.readonly) return Gntst.general_error;
      const next = (word | Gtf.reading | (readonly ? 0 : Gtf.writing)) >>> 0;
      const seen = this.phys.atomicCompareExchange32(at, word >>> 0, next);
      if (seen === word >>> 0) return Gntst.okay;
      if (tries === CMPXCHG_TRIES - 1) return Gntst.general_error;
      word = seen;
    }
  }

  private clearFlags(at: number, bits: number): void {
    this.phys.atomicAnd32(at, ~bits);
  }
}
