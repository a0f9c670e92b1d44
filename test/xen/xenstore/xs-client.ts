// A test client for the in-process xenstore server: builds requests from
// strings, returns replies in a form that is easy to assert on, and takes
// the watch events queued for its domain.
import type { XenstoreServer } from '../../../src/xen/xenstore/server.js';
import { XsType, bytesToString, splitStrings, stringToBytes } from '../../../src/xen/xenstore/wire.js';

export interface Reply {
  type: number;
  /** The error name for an ERROR reply, else null. */
  err: string | null;
  /** The payload as one string of bytes. */
  text: string;
  /** The NUL-terminated strings of the payload. */
  list: string[];
  payload: Uint8Array;
}

export class Client {
  private reqId = 0;
  constructor(
    readonly server: XenstoreServer,
    readonly domid: number,
  ) {}

  /** Sends `args` each followed by a NUL (or a raw payload) and returns the reply. */
  req(type: number, args: string[] | Uint8Array, txId = 0): Reply {
    const payload = args instanceof Uint8Array ? args : stringToBytes(args.map((a) => `${a}\0`).join(''));
    const { reply } = this.server.handle(
      this.domid,
      { type, reqId: ++this.reqId, txId, payload },
      { queueReply: false },
    );
    const text = bytesToString(reply.payload);
    return {
      type: reply.type,
      err: reply.type === XsType.ERROR ? text.replace(/\0$/, '') : null,
      text,
      list: splitStrings(reply.payload),
      payload: reply.payload,
    };
  }

  /** The value, or the error name. */
  read(path: string, tx = 0): string {
    const r = this.req(XsType.READ, [path], tx);
    return r.err ?? r.text;
  }
  /** "OK" or the error name. */
  write(path: string, value: string, tx = 0): string {
    const r = this.req(XsType.WRITE, stringToBytes(`${path}\0${value}`), tx);
    return r.err ?? r.list[0]!;
  }
  mkdir(path: string, tx = 0): string {
    const r = this.req(XsType.MKDIR, [path], tx);
    return r.err ?? r.list[0]!;
  }
  rm(path: string, tx = 0): string {
    const r = this.req(XsType.RM, [path], tx);
    return r.err ?? r.list[0]!;
  }
  /** Child names, or [error name]. */
  ls(path: string, tx = 0): string[] {
    const r = this.req(XsType.DIRECTORY, [path], tx);
    return r.err ? [r.err] : r.list;
  }
  perms(path: string, tx = 0): string[] {
    const r = this.req(XsType.GET_PERMS, [path], tx);
    return r.err ? [r.err] : r.list;
  }
  setPerms(path: string, perms: string[], tx = 0): string {
    const r = this.req(XsType.SET_PERMS, [path, ...perms], tx);
    return r.err ?? r.list[0]!;
  }
  watch(path: string, token: string): string {
    const r = this.req(XsType.WATCH, [path, token]);
    return r.err ?? r.list[0]!;
  }
  unwatch(path: string, token: string): string {
    const r = this.req(XsType.UNWATCH, [path, token]);
    return r.err ?? r.list[0]!;
  }
  /** The transaction id; throws on an error reply. */
  start(): number {
    const r = this.req(XsType.TRANSACTION_START, ['']);
    if (r.err) throw new Error(`TRANSACTION_START: ${r.err}`);
    return Number(r.list[0]);
  }
  end(tx: number, commit = true): string {
    const r = this.req(XsType.TRANSACTION_END, [commit ? 'T' : 'F'], tx);
    return r.err ?? r.list[0]!;
  }

  /** Watch events queued for this domain as [path, token], oldest first; replies queued are dropped. */
  events(): Array<[string, string]> {
    return this.server
      .take(this.domid)
      .filter((m) => m.type === XsType.WATCH_EVENT)
      .map((m) => {
        const [p, t] = splitStrings(m.payload);
        return [p!, t!];
      });
  }
}
