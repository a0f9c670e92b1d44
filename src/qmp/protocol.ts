// The wire protocol of the control socket, modelled on QEMU's QMP: one JSON
// object per line in each direction.
//
//   server → client, on connect:  {"QMP": {"version": {"xenkvm": "0.1.0"}, "capabilities": []}}
//   client → server:              {"execute": "qmp_capabilities"}
//   server → client:              {"return": {}}
//   client → server:              {"execute": "query-status", "id": 7}
//   server → client:              {"return": {"status": "running", "running": true}, "id": 7}
//   server → client, any time:    {"event": "STOP", "data": {}, "timestamp": {"seconds": 1, "microseconds": 2}}
//
// Errors keep QEMU's shape, {"error": {"class": ..., "desc": ...}}, with the
// request's id when the request got far enough to have one.

export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;
export type JsonObject = { [key: string]: JsonValue };

/**
 * QEMU's error classes that mean the same here.  Everything that is not an
 * unknown or not-yet-allowed command is a GenericError, as in QEMU.
 */
export type QmpErrorClass = 'GenericError' | 'CommandNotFound';

export interface QmpErrorBody {
  readonly class: QmpErrorClass;
  readonly desc: string;
}

export interface QmpGreeting {
  readonly QMP: { readonly version: { readonly xenkvm: string }; readonly capabilities: readonly string[] };
}

export interface QmpTimestamp {
  readonly seconds: number;
  readonly microseconds: number;
}

export interface QmpEvent {
  readonly event: string;
  readonly data: JsonObject;
  readonly timestamp: QmpTimestamp;
}

export type QmpResponse =
  { readonly return: JsonValue; readonly id?: JsonValue } | { readonly error: QmpErrorBody; readonly id?: JsonValue };

/** Limits that keep one hostile or broken client from hurting the VMM. */
export interface QmpLimits {
  /** Longest request line, in bytes; longer lines are discarded with an error reply. */
  readonly maxLineBytes: number;
  /** Clients connected at once; one more is told so and disconnected. */
  readonly maxClients: number;
  /** Requests a client may queue behind the one running; more get an error reply. */
  readonly maxQueuedRequests: number;
  /** Replies and events buffered for a client that does not read; past it, it is dropped. */
  readonly maxPendingOutputBytes: number;
  /**
   * A client that has not negotiated capabilities this long after connecting
   * is told so and dropped: clients that connect and say nothing must not
   * hold the slots `xenkvm ctl` needs.  0 = never.
   */
  readonly negotiationTimeoutMs: number;
  /**
   * With every slot taken, a new client takes the slot of the one that has
   * been idle longest (no request running, none sent for this long), which
   * is told so and disconnected; without such a client the new one is
   * refused.  0 = never evict.
   */
  readonly evictIdleMs: number;
}

export const DEFAULT_QMP_LIMITS: QmpLimits = {
  // A command line is small; 1 MiB leaves room for future arguments such as
  // certificates without letting a client make the server buffer gigabytes.
  maxLineBytes: 1 << 20,
  maxClients: 16,
  maxQueuedRequests: 64,
  // Larger than any reply (a full 4096-port xen-event-list is ~600 KiB).
  maxPendingOutputBytes: 8 << 20,
  // `xenkvm ctl` negotiates within milliseconds; a person typing into socat within seconds.
  negotiationTimeoutMs: 10_000,
  // Long enough that a script pausing between commands keeps its slot while others come and go.
  evictIdleMs: 30_000,
};

/** The first command every client must send, as in QEMU. */
export const CAPABILITIES_COMMAND = 'qmp_capabilities';

/** Wall-clock time with microseconds, QEMU's event timestamp. */
export function qmpTimestamp(nowMs: number = performance.timeOrigin + performance.now()): QmpTimestamp {
  const micros = Math.floor(nowMs * 1000);
  return { seconds: Math.floor(micros / 1e6), microseconds: micros % 1e6 };
}

/** Serializes one message as a line.  Throws on values JSON cannot hold (bigint, cycles). */
export function encodeLine(message: unknown): string {
  return `${JSON.stringify(message)}\n`;
}

export function isJsonObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
