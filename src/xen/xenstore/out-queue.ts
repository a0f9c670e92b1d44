// What waits to be sent on one connection: replies and watch events in
// order, how much of the first one the transport has already written, and
// the figures the quotas and the duplicate-event rule need, kept up to date
// so that neither costs a walk of a long queue.
import { HEADER_SIZE, XsType, bytesToString, type XsMessage } from './wire.js';

export class OutQueue {
  private items: XsMessage[] = [];
  private head = 0;
  /** Bytes of the first message (header included) already written to the transport. */
  used = 0;
  /** Bytes (headers included) of all queued messages. */
  bytes = 0;
  /** Queued messages that are replies, not watch events. */
  replies = 0;
  private readonly events = new Map<string, number>();

  /** A queue holding `messages`, the first `used` bytes of the first one already sent. */
  static of(messages: readonly XsMessage[], used = 0): OutQueue {
    const q = new OutQueue();
    for (const m of messages) q.push(m);
    q.used = used;
    return q;
  }

  get length(): number {
    return this.items.length - this.head;
  }

  first(): XsMessage | undefined {
    return this.items[this.head];
  }

  push(m: XsMessage): void {
    this.items.push(m);
    this.bytes += HEADER_SIZE + m.payload.length;
    if (m.type === XsType.WATCH_EVENT) {
      const k = bytesToString(m.payload);
      this.events.set(k, (this.events.get(k) ?? 0) + 1);
    } else {
      this.replies++;
    }
  }

  /** Removes the first message (the transport has written all of it). */
  shift(): XsMessage | undefined {
    const m = this.items[this.head];
    if (!m) return undefined;
    this.head++;
    this.used = 0;
    this.bytes -= HEADER_SIZE + m.payload.length;
    if (m.type === XsType.WATCH_EVENT) {
      const k = bytesToString(m.payload);
      const n = (this.events.get(k) ?? 1) - 1;
      if (n === 0) this.events.delete(k);
      else this.events.set(k, n);
    } else {
      this.replies--;
    }
    // Drop the consumed prefix now and then, so the array does not keep growing.
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return m;
  }

  /** Whether an event with this payload is still queued. */
  hasEvent(payload: Uint8Array): boolean {
    return this.events.has(bytesToString(payload));
  }

  toArray(): XsMessage[] {
    return this.items.slice(this.head);
  }

  /** Empties the queue and returns what it held. */
  drain(): XsMessage[] {
    const out = this.toArray();
    this.items = [];
    this.head = 0;
    this.used = 0;
    this.bytes = 0;
    this.replies = 0;
    this.events.clear();
    return out;
  }
}
