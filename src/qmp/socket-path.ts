// Creating the control socket safely.  Whoever can connect to it can stop or
// inspect the guest, so:
//  - the socket is bound inside a fresh 0700 directory, chmod'ed to 0600 and
//    only then hard-linked to its public name: there is no moment when it is
//    reachable with wider permissions (no process-wide umask games, which
//    worker threads cannot do anyway);
//  - link(2) fails if the name exists, so a file that appears meanwhile is
//    never clobbered; an existing non-socket is refused outright;
//  - a socket left by a dead process (connect refused) is removed; a live one
//    is refused;
//  - the directory must not let other users swap the socket (writable by
//    group/others without the sticky bit);
//  - on close we unlink the name only if it is still our socket's inode.

import { randomBytes } from 'node:crypto';
import { lstat, link, mkdir, rmdir, stat, unlink, chmod } from 'node:fs/promises';
import { connect, type Server } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { InputError, IoError } from '../errors.js';

/** sun_path is 108 bytes on Linux, one of them the terminating NUL. */
export const MAX_SOCKET_PATH_BYTES = 107;

/** How long to wait on an existing socket before deciding it is alive. */
const PROBE_TIMEOUT_MS = 1000;

/** The bound socket's identity, so cleanup never removes someone else's file. */
export interface SocketIdentity {
  readonly path: string;
  readonly dev: number;
  readonly ino: number;
}

/** Makes `server` listen on `path` with mode 0600; see the file comment for the rules. */
export async function listenOwnerOnly(server: Server, path: string): Promise<SocketIdentity> {
  const abs = resolve(path);
  checkLength(abs, path);
  const dir = dirname(abs);
  await checkDirectory(dir);
  await clearStale(abs, path);

  // mkdir with a random name rather than mkdtemp: the latter's six random
  // characters plus our prefix would eat into the 107 bytes we have.
  const privateDir = join(dir, `.xq${randomBytes(4).toString('hex')}`);
  const tmp = join(privateDir, 's');
  if (Buffer.byteLength(tmp) > MAX_SOCKET_PATH_BYTES) {
    throw new InputError(
      `socket path ${path} is too long: its directory's path must be under ${MAX_SOCKET_PATH_BYTES - 12} bytes`,
    );
  }
  try {
    await mkdir(privateDir, { mode: 0o700 });
  } catch (err) {
    throw new IoError(`cannot create the control socket in ${dir}: ${errText(err)}`, { cause: err });
  }
  try {
    await listen(server, tmp);
    await chmod(tmp, 0o600);
    try {
      await link(tmp, abs);
    } catch (err) {
      if (errno(err) === 'EEXIST')
        throw new InputError(`${path} appeared while the control socket was being created; refusing to replace it`);
      throw err;
    }
    const st = await stat(abs);
    return { path: abs, dev: st.dev, ino: st.ino };
  } catch (err) {
    await new Promise<void>((r) => server.close(() => r()));
    if (err instanceof InputError) throw err;
    throw new IoError(`cannot create the control socket ${path}: ${errText(err)}`, { cause: err });
  } finally {
    await unlink(tmp).catch(() => {});
    await rmdir(privateDir).catch(() => {});
  }
}

/** Removes the socket's name if it still names our socket. Never throws. */
export async function removeSocket(id: SocketIdentity): Promise<void> {
  try {
    const st = await lstat(id.path);
    if (st.isSocket() && st.dev === id.dev && st.ino === id.ino) await unlink(id.path);
  } catch {
    // Already gone, or replaced by someone else's file: nothing of ours to remove.
  }
}

function checkLength(abs: string, given: string): void {
  const bytes = Buffer.byteLength(abs);
  if (bytes > MAX_SOCKET_PATH_BYTES) {
    throw new InputError(
      `socket path ${given} is too long (${bytes} bytes; a unix socket path holds at most ${MAX_SOCKET_PATH_BYTES})`,
    );
  }
}

async function checkDirectory(dir: string): Promise<void> {
  let st;
  try {
    st = await stat(dir);
  } catch (err) {
    throw new InputError(`cannot create a control socket in ${dir}: ${errText(err)}`, { cause: err });
  }
  if (!st.isDirectory()) throw new InputError(`cannot create a control socket in ${dir}: not a directory`);
  const uid = process.getuid?.() ?? 0;
  if (st.uid !== uid && st.uid !== 0) {
    throw new InputError(
      `refusing to create the control socket in ${dir}: the directory belongs to another user (uid ${st.uid})`,
    );
  }
  const sticky = (st.mode & 0o1000) !== 0;
  if ((st.mode & 0o022) !== 0 && !sticky) {
    throw new InputError(
      `refusing to create the control socket in ${dir}: other users can write to the directory (mode ${(st.mode & 0o7777).toString(8)}) and could replace the socket`,
    );
  }
}

/** Leaves `abs` free, removing a dead socket; refuses anything else there. */
async function clearStale(abs: string, given: string): Promise<void> {
  let st;
  try {
    st = await lstat(abs);
  } catch (err) {
    if (errno(err) === 'ENOENT') return;
    throw new InputError(`cannot check ${given}: ${errText(err)}`, { cause: err });
  }
  if (!st.isSocket()) throw new InputError(`${given} exists and is not a socket; refusing to replace it`);
  const state = await probe(abs);
  if (state === 'live') throw new InputError(`another process is already listening on ${given}`);
  if (state === 'denied')
    throw new InputError(`${given} is a socket this user may not connect to; refusing to replace it`);
  if (state === 'stale') {
    try {
      await unlink(abs);
    } catch (err) {
      if (errno(err) !== 'ENOENT')
        throw new InputError(`cannot remove the stale socket ${given}: ${errText(err)}`, { cause: err });
    }
  }
}

/** 'stale' when nobody accepts connections on the socket. A hung listener counts as live. */
type ProbeResult = 'live' | 'stale' | 'gone' | 'denied';

function probe(path: string): Promise<ProbeResult> {
  return new Promise((resolveProbe) => {
    const sock = connect(path);
    const finish = (state: ProbeResult): void => {
      clearTimeout(timer);
      sock.destroy();
      resolveProbe(state);
    };
    const timer = setTimeout(() => finish('live'), PROBE_TIMEOUT_MS);
    sock.once('connect', () => finish('live'));
    sock.once('error', (err) => {
      const code = errno(err);
      finish(code === 'ECONNREFUSED' ? 'stale' : code === 'ENOENT' ? 'gone' : code === 'EACCES' ? 'denied' : 'live');
    });
  });
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise((resolveListen, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(path, () => {
      server.off('error', onError);
      resolveListen();
    });
  });
}

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

function errText(err: unknown): string {
  const code = errno(err);
  const msg = err instanceof Error ? err.message : String(err);
  return code && !msg.includes(code) ? `${msg} (${code})` : msg;
}
