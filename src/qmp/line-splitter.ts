// Splits a byte stream into newline-terminated lines without ever holding more
// than `maxLineBytes` of one line: the bytes of an over-long line are dropped
// as they arrive, and the line is reported once as `overflow` when its end
// (or the stream's end) is seen.  Used by both ends of the control socket.

export type SplitItem =
  { readonly kind: 'line'; readonly text: string } | { readonly kind: 'overflow'; readonly bytes: number };

export class LineSplitter {
  readonly #maxLineBytes: number;
  #chunks: Buffer[] = [];
  #held = 0;
  /** Bytes of the current line seen so far once it has gone over the limit; 0 otherwise. */
  #overflowBytes = 0;

  constructor(maxLineBytes: number) {
    if (!Number.isInteger(maxLineBytes) || maxLineBytes < 1)
      throw new RangeError('maxLineBytes must be a positive integer');
    this.#maxLineBytes = maxLineBytes;
  }

  /** Feeds a chunk; returns the complete lines and overflows it finished, in order. */
  push(chunk: Buffer): SplitItem[] {
    const out: SplitItem[] = [];
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(0x0a, start);
      const end = nl < 0 ? chunk.length : nl;
      this.#take(chunk.subarray(start, end));
      if (nl < 0) break;
      out.push(this.#finishLine());
      start = nl + 1;
    }
    return out;
  }

  /** The stream ended: an unterminated last line is still a line (QEMU accepts one too). */
  end(): SplitItem[] {
    if (this.#held === 0 && this.#overflowBytes === 0) return [];
    return [this.#finishLine()];
  }

  #take(part: Buffer): void {
    if (part.length === 0) return;
    if (this.#overflowBytes > 0) {
      this.#overflowBytes += part.length;
      return;
    }
    if (this.#held + part.length > this.#maxLineBytes) {
      this.#overflowBytes = this.#held + part.length;
      this.#chunks = [];
      this.#held = 0;
      return;
    }
    // Copy: the caller's chunk may be a pooled buffer reused after we return.
    this.#chunks.push(Buffer.from(part));
    this.#held += part.length;
  }

  #finishLine(): SplitItem {
    if (this.#overflowBytes > 0) {
      const bytes = this.#overflowBytes;
      this.#overflowBytes = 0;
      return { kind: 'overflow', bytes };
    }
    const text = (this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks, this.#held)).toString(
      'utf8',
    );
    this.#chunks = [];
    this.#held = 0;
    return { kind: 'line', text: text.endsWith('\r') ? text.slice(0, -1) : text };
  }
}
