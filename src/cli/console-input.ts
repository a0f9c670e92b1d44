// Keyboard (or piped) input for a guest console: `run`, `restore` and
// `receive` forward their stdin to the guest's PV console, `xenkvm console`
// sends it over the control socket.  On a terminal, stdin is put in raw mode
// so every key reaches the guest (Ctrl-C included, as with `xl console`);
// Ctrl-] (the escape, as telnet's and virsh's) detaches: the terminal is
// restored and nothing more is forwarded.  Piped input is forwarded as it
// is, with no escape, until its end.
//
// The sink may take less than it is given (the guest's input queue is
// bounded, xen/console/service.ts): stdin is then not read until the rest
// is taken, so a guest that does not read its console stalls the writer of
// the pipe or the typist, never the emulator, and nothing is dropped.

/** Ctrl-]: detaches the console from the terminal. */
export const ESCAPE_BYTE = 0x1d;
export const ESCAPE_NAME = 'Ctrl-]';

export interface InputSink {
  /** Takes what it can of `bytes`; returns how many it took. */
  write(bytes: Uint8Array): number | Promise<number>;
  /** Resolves when trying again may take more. */
  whenRoom(): Promise<void>;
}

export interface Forwarding {
  /** Stops forwarding and gives the terminal back (idempotent). */
  stop(): void;
  /** Resolves when forwarding ended: the escape, the end of input, or stop(). */
  readonly ended: Promise<'escape' | 'eof' | 'stopped'>;
}

type Stdin = NodeJS.ReadStream & { setRawMode?: (raw: boolean) => unknown };

export function forwardInput(sink: InputSink, stdin: Stdin = process.stdin): Forwarding {
  const tty = stdin.isTTY === true && typeof stdin.setRawMode === 'function';
  let done = false;
  let finish: (why: 'escape' | 'eof' | 'stopped') => void = () => {};
  const ended = new Promise<'escape' | 'eof' | 'stopped'>((resolve) => {
    finish = (why) => {
      if (done) return;
      done = true;
      stdin.off('data', onData);
      stdin.off('end', onEnd);
      if (tty) stdin.setRawMode!(false);
      stdin.pause();
      resolve(why);
    };
  });
  const deliver = async (bytes: Uint8Array): Promise<void> => {
    let at = 0;
    while (at < bytes.length && !done) {
      const n = await sink.write(bytes.subarray(at));
      at += n;
      if (at < bytes.length) await sink.whenRoom();
    }
  };
  const onData = (chunk: Buffer): void => {
    let bytes: Uint8Array = chunk;
    const esc = tty ? chunk.indexOf(ESCAPE_BYTE) : -1;
    if (esc >= 0) bytes = chunk.subarray(0, esc);
    stdin.pause();
    void deliver(bytes).then(
      () => (esc >= 0 ? finish('escape') : done ? undefined : stdin.resume()),
      () => finish('stopped'),
    );
  };
  const onEnd = (): void => finish('eof');
  if (tty) stdin.setRawMode!(true);
  stdin.on('data', onData);
  stdin.on('end', onEnd);
  stdin.resume();
  return { stop: () => finish('stopped'), ended };
}
