// libc over koffi: the handful of calls a VMM needs.  Pointers are bigint
// (koffi 3).  Buffers passed as `void *` are Node-owned Uint8Arrays that koffi
// hands to the kernel by address for the duration of the call only, so every
// binding below is safe as long as the callee does not keep the pointer: true
// for ioctl argument structs, false for mmap'd memory, which is why mappings
// are owned by GuestRam/VcpuRun objects and never by a JS buffer.
import koffi from 'koffi';
import { SyscallError } from '../errors.js';

const libc = koffi.load('libc.so.6');

const c = {
  open: libc.func('int open(const char *path, int flags, int mode)'),
  close: libc.func('int close(int fd)'),
  dup: libc.func('int dup(int fd)'),
  ioctlPtr: libc.func('int ioctl(int fd, unsigned long req, void *arg)'),
  ioctlInt: libc.func('int ioctl(int fd, unsigned long req, unsigned long arg)'),
  mmap: libc.func('void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off)'),
  munmap: libc.func('int munmap(void *addr, size_t len)'),
  madvise: libc.func('int madvise(void *addr, size_t len, int advice)'),
  memfdCreate: libc.func('int memfd_create(const char *name, unsigned int flags)'),
  ftruncate: libc.func('int ftruncate(int fd, int64_t len)'),
  gettid: libc.func('int gettid(void)'),
  tgkill: libc.func('int tgkill(int tgid, int tid, int sig)'),
  strerror: libc.func('const char *strerror(int errnum)'),
  prctl: libc.func(
    'int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5)',
  ),
  memcpy: libc.func('void *memcpy(uintptr_t dst, uintptr_t src, size_t n)'),
  schedSetscheduler: libc.func('int sched_setscheduler(int pid, int policy, const int *param)'),
  schedGetscheduler: libc.func('int sched_getscheduler(int pid)'),
} as const;

export const O_RDWR = 2;
export const O_CLOEXEC = 0o2000000;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const PROT_EXEC = 4;
export const MAP_SHARED = 1;
export const MAP_PRIVATE = 2;
export const MAP_ANONYMOUS = 0x20;
export const MAP_NORESERVE = 0x4000;
export const MADV_DONTNEED = 4;
export const MADV_HUGEPAGE = 14;
export const MFD_CLOEXEC = 1;
export const SIGUSR2 = 12;
export const PR_SET_TIMERSLACK = 29;
const MAP_FAILED = 0xffffffffffffffffn;

export function errno(): number {
  return koffi.errno();
}

export function strerror(err: number): string {
  return String(c.strerror(err));
}

function fail(what: string): never {
  const err = errno();
  throw new SyscallError(`${what}: ${strerror(err)}`, err);
}

/** Opens `path`; the caller owns and closes the fd. */
export function openFile(path: string, flags: number): number {
  const fd: number = c.open(path, flags | O_CLOEXEC, 0);
  if (fd < 0) fail(`open ${path}`);
  return fd;
}

/** Same as openFile but returns -errno instead of throwing (probing). */
export function tryOpen(path: string, flags: number): number {
  const fd: number = c.open(path, flags | O_CLOEXEC, 0);
  return fd < 0 ? -errno() : fd;
}

export function closeFd(fd: number): void {
  c.close(fd);
}

/** A new descriptor for the same open file (close-on-exec is not set). */
export function dupFd(fd: number): number {
  const n: number = c.dup(fd);
  if (n < 0) fail(`dup(${fd})`);
  return n;
}

/** ioctl whose argument is a struct in `buf`, which the kernel may read and write during the call. */
export function ioctlBuf(fd: number, request: number, buf: Uint8Array | null, what: string): number {
  const r: number = c.ioctlPtr(fd, request, buf);
  if (r < 0) failIoctl(what);
  return r;
}

/** ioctl whose argument is an integer (or none). */
export function ioctlVal(fd: number, request: number, value: number | bigint, what: string): number {
  const r: number = c.ioctlInt(fd, request, value);
  if (r < 0) failIoctl(what);
  return r;
}

/** ioctl returning -errno instead of throwing: for calls where EINTR/EAGAIN are normal (KVM_RUN). */
export function ioctlRaw(fd: number, request: number, value: number): number {
  const r: number = c.ioctlInt(fd, request, value);
  return r < 0 ? -errno() : r;
}

export const ioctlBufRaw = (fd: number, request: number, buf: Uint8Array | null): number => {
  const r: number = c.ioctlPtr(fd, request, buf);
  return r < 0 ? -errno() : r;
};

let failIoctl = (what: string): never => fail(what);
/** Lets the KVM layer turn ioctl failures into KvmError without libc knowing KVM. */
export function setIoctlFailure(handler: (what: string, err: number) => never): void {
  failIoctl = (what: string) => handler(what, errno());
}

export function mmap(len: number, prot: number, flags: number, fd: number, offset = 0): bigint {
  const p = BigInt(koffi.address(c.mmap(null, len, prot, flags, fd, offset)));
  if (p === MAP_FAILED) fail(`mmap of ${len} bytes`);
  return p;
}

export function munmap(addr: bigint, len: number): void {
  c.munmap(addr, len);
}

/** Advice is a hint: failure (e.g. THP disabled) is not an error. */
export function madvise(addr: bigint, len: number, advice: number): boolean {
  return c.madvise(addr, len, advice) === 0;
}

export function memfdCreate(name: string): number {
  const fd: number = c.memfdCreate(name, MFD_CLOEXEC);
  if (fd < 0) fail('memfd_create');
  return fd;
}

export function ftruncate(fd: number, len: number): void {
  if (c.ftruncate(fd, len) < 0) fail('ftruncate');
}

/** prctl for the calling thread; a hint like timer slack may fail harmlessly. */
export function prctl(option: number, arg: number): boolean {
  return c.prctl(option, arg, 0, 0, 0) === 0;
}

export const SCHED_OTHER = 0;
export const SCHED_FIFO = 1;
/** OR'd into a policy: threads the caller creates start SCHED_OTHER instead of inheriting it (sched(7)). */
export const SCHED_RESET_ON_FORK = 0x40000000;

/**
 * Sets one thread's scheduling policy: `tid` 0 is the calling thread alone
 * (Linux applies the call per thread); false when not permitted (no
 * CAP_SYS_NICE, RLIMIT_RTPRIO) or refused (a thread that has exited).
 */
export function setThreadScheduler(policy: number, priority: number, tid = 0): boolean {
  return c.schedSetscheduler(tid, policy, Int32Array.of(priority)) === 0;
}

/** A thread's scheduling policy (with SCHED_RESET_ON_FORK if set), or -1; `tid` 0 is the caller. */
export function threadScheduler(tid = 0): number {
  return c.schedGetscheduler(tid);
}

export function gettid(): number {
  return c.gettid();
}

export function tgkill(tgid: number, tid: number, sig: number): void {
  c.tgkill(tgid, tid, sig);
}

/**
 * A view of `len` bytes at `addr`.  Unsafe by nature: the view is valid only
 * while the mapping lives; callers hold it only as long as its owner.
 */
export function viewOf(addr: bigint, len: number): Uint8Array {
  return new Uint8Array(koffi.view(addr, len));
}

/**
 * Address of `bytes[0]`, for copyBytes.  Valid while `bytes` lives, and only
 * for off-heap backing stores (Buffer.allocUnsafeSlow, koffi views, any
 * typed array above V8's on-heap limit of 64 bytes), which V8 never moves.
 * Not free (docs/benchmarks.md): take it once per buffer, not per page.
 */
export function addressOf(bytes: Uint8Array): number {
  if (bytes.byteLength <= 64)
    throw new RangeError('addressOf: buffers of 64 bytes or fewer may live on the V8 heap and move');
  return Number(koffi.address(bytes));
}

/**
 * memcpy between raw addresses: several times cheaper per 4 KiB page than
 * `dst.set(src.subarray(...))`, whose cost is nearly all creating the view
 * (benchRam "page copy"; docs/benchmarks.md).  No bounds checks: callers check offsets
 * against the buffers whose addresses they took.
 */
export function copyBytes(dstAddr: number, srcAddr: number, n: number): void {
  c.memcpy(dstAddr, srcAddr, n);
}
