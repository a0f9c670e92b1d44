// The xenstore wire protocol of Xen's public header io/xs_wire.h: message
// types, the 16-byte header, the error names sent as strings, the limits, and
// the layout of the shared ring page (struct xenstore_domain_interface).
// test/xen/xenstore/wire.test.ts checks the numbers against the installed
// header with a compiled probe.  Semantics are in docs/xenstore.md.

/** enum xsd_sockmsg_type.  20 was XS_RESTRICT, since removed (it gets ENOSYS). */
export const XsType = {
  CONTROL: 0,
  DIRECTORY: 1,
  READ: 2,
  GET_PERMS: 3,
  WATCH: 4,
  UNWATCH: 5,
  TRANSACTION_START: 6,
  TRANSACTION_END: 7,
  INTRODUCE: 8,
  RELEASE: 9,
  GET_DOMAIN_PATH: 10,
  WRITE: 11,
  MKDIR: 12,
  RM: 13,
  SET_PERMS: 14,
  WATCH_EVENT: 15,
  ERROR: 16,
  IS_DOMAIN_INTRODUCED: 17,
  RESUME: 18,
  SET_TARGET: 19,
  RESET_WATCHES: 21,
  DIRECTORY_PART: 22,
} as const;
export type XsTypeName = keyof typeof XsType;

/** XS_TYPE_COUNT: types at or above it are unknown. */
export const XS_TYPE_COUNT = 23;
/** XS_INVALID: guaranteed never to be a valid type. */
export const XS_INVALID = 0xffff;

const TYPE_NAMES = new Map<number, XsTypeName>(Object.entries(XsType).map(([k, v]) => [v, k as XsTypeName] as const));

/** The name of a message type for logs and `inspect`, or `type N`. */
export function typeName(type: number): string {
  return TYPE_NAMES.get(type) ?? `type ${type}`;
}

/**
 * The xsd_errors table, in the header's order: the error reply carries the
 * name (`ENOENT`), not a number.  New errors are only ever appended there.
 */
export const XSD_ERRORS = [
  'EINVAL',
  'EACCES',
  'EEXIST',
  'EISDIR',
  'ENOENT',
  'ENOMEM',
  'ENOSPC',
  'EIO',
  'ENOTEMPTY',
  'ENOSYS',
  'EROFS',
  'EBUSY',
  'EAGAIN',
  'EISCONN',
  'E2BIG',
  'EPERM',
] as const;
export type XsError = (typeof XSD_ERRORS)[number];

/** sizeof(struct xsd_sockmsg): type, req_id, tx_id, len, each a little-endian u32. */
export const HEADER_SIZE = 16;
/** XENSTORE_PAYLOAD_MAX: both directions; a longer request kills the connection. */
export const PAYLOAD_MAX = 4096;
/** XENSTORE_ABS_PATH_MAX: longer absolute paths are refused. */
export const ABS_PATH_MAX = 3072;
/** XENSTORE_REL_PATH_MAX: the part below a domain's home path should stay within this. */
export const REL_PATH_MAX = 2048;

/** XENSTORE_RING_SIZE: each of req[] and rsp[]; indexes are free-running u32 masked by size - 1. */
export const RING_SIZE = 1024;

/** Byte offsets in struct xenstore_domain_interface. */
export const RingOffset = {
  req: 0,
  rsp: 1024,
  req_cons: 2048,
  req_prod: 2052,
  rsp_cons: 2056,
  rsp_prod: 2060,
  server_features: 2064,
  connection: 2068,
  error: 2072,
} as const;
/** sizeof(struct xenstore_domain_interface). */
export const RING_INTERFACE_SIZE = 2076;

/** XENSTORE_SERVER_FEATURE_*: bits of server_features. */
export const ServerFeature = { RECONNECTION: 1, ERROR: 2 } as const;
/** XENSTORE_CONNECTED / XENSTORE_RECONNECT: values of connection. */
export const RingConnection = { CONNECTED: 0, RECONNECT: 1 } as const;
/** XENSTORE_ERROR_*: values of error. */
export const RingError = { NONE: 0, COMM: 1, RINGIDX: 2, PROTO: 3 } as const;

/** XS_PERM_* bits of struct xs_permissions (xenstore_lib.h); OWNER is internal to the daemon. */
export const XsPerm = { NONE: 0, READ: 1, WRITE: 2, OWNER: 8 } as const;

/** DOMID_SELF (public/xen.h): IS_DOMAIN_INTRODUCED answers T for it. */
export const DOMID_SELF = 0x7ff0;

/** One message, either direction. */
export interface XsMessage {
  type: number;
  reqId: number;
  txId: number;
  payload: Uint8Array;
}

/** Header plus payload, as they go on the ring. */
export function encodeMessage(m: XsMessage): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE + m.payload.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, m.type >>> 0, true);
  dv.setUint32(4, m.reqId >>> 0, true);
  dv.setUint32(8, m.txId >>> 0, true);
  dv.setUint32(12, m.payload.length, true);
  out.set(m.payload, HEADER_SIZE);
  return out;
}

export interface XsHeader {
  type: number;
  reqId: number;
  txId: number;
  len: number;
}

/** Reads a header from the first 16 bytes of `b` (which must hold them). */
export function decodeHeader(b: Uint8Array): XsHeader {
  const dv = new DataView(b.buffer, b.byteOffset, HEADER_SIZE);
  return {
    type: dv.getUint32(0, true),
    reqId: dv.getUint32(4, true),
    txId: dv.getUint32(8, true),
    len: dv.getUint32(12, true),
  };
}

/**
 * Byte strings as JS strings of one char per byte (latin1): paths are ASCII
 * by rule, but tokens and values are arbitrary bytes and must round-trip.
 */
export function bytesToString(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 4096) s += String.fromCharCode(...b.subarray(i, i + 4096));
  return s;
}

export function stringToBytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}

/** Strings each followed by a NUL, the payload form of most replies. */
export function nulJoin(parts: readonly string[]): Uint8Array {
  return stringToBytes(parts.map((p) => `${p}\0`).join(''));
}

/**
 * The NUL-terminated strings at the start of a payload, as the daemon's
 * get_strings() sees them: bytes after the last NUL are not a string, and
 * `count` is the number of NULs (a binary value adds to it).
 */
export function splitStrings(payload: Uint8Array): string[] {
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < payload.length; i++) {
    if (payload[i] === 0) {
      out.push(bytesToString(payload.subarray(start, i)));
      start = i + 1;
    }
  }
  return out;
}

/** The payload as exactly one NUL-terminated string (the daemon's onearg()), or null. */
export function oneArg(payload: Uint8Array): string | null {
  if (payload.length === 0 || payload.indexOf(0) !== payload.length - 1) return null;
  return bytesToString(payload.subarray(0, payload.length - 1));
}
