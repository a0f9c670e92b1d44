// The console log: the most recent guest console output, kept by the
// emulator so that a console attached later (`xenkvm console`) starts with
// what the guest printed before.  Bytes are numbered from the start of the
// guest's life (`total`), so a reader holds a cursor and asks for what came
// after it; a reader that fell further behind than the log keeps is told how
// many bytes it lost.

export interface LogRead {
  readonly data: Uint8Array;
  /** Where the next read should start. */
  readonly cursor: number;
  /** Bytes between the asked cursor and the oldest byte still kept. */
  readonly lost: number;
}

export class ConsoleLog {
  private buf: Uint8Array;
  private len = 0;
  /** Bytes ever appended (the cursor after the newest byte). */
  private count = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity <= 0) throw new RangeError(`a console log of ${capacity} bytes`);
    this.buf = new Uint8Array(capacity);
  }

  get total(): number {
    return this.count;
  }

  /** The bytes kept, oldest first (at most `capacity`). */
  contents(): Uint8Array {
    return this.buf.slice(0, this.len);
  }

  append(bytes: Uint8Array): void {
    this.count += bytes.length;
    if (bytes.length >= this.capacity) {
      this.buf.set(bytes.subarray(bytes.length - this.capacity));
      this.len = this.capacity;
      return;
    }
    const keep = Math.min(this.len, this.capacity - bytes.length);
    if (keep < this.len) this.buf.copyWithin(0, this.len - keep, this.len);
    this.buf.set(bytes, keep);
    this.len = keep + bytes.length;
  }

  /** What came after `cursor` (all that is kept for a cursor before it; nothing for one past the end). */
  since(cursor: number): LogRead {
    const oldest = this.count - this.len;
    const from = Math.min(Math.max(cursor, oldest), this.count);
    return {
      data: this.buf.slice(from - oldest, this.len),
      cursor: this.count,
      lost: Math.max(0, oldest - cursor),
    };
  }

  /** Replaces the log (a restored machine): `bytes` are the newest kept, `total` the count ever written. */
  load(bytes: Uint8Array, total: number): void {
    const tail = bytes.length > this.capacity ? bytes.subarray(bytes.length - this.capacity) : bytes;
    this.buf = new Uint8Array(this.capacity);
    this.buf.set(tail);
    this.len = tail.length;
    this.count = Math.max(total, tail.length);
  }
}
