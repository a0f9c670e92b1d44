// Every error a user can meet is one of these classes: a stable `code` that
// scripts and the CLI switch on, a message a person can act on, and a `cause`.
// The CLI maps them to one-line messages and exit statuses; nothing else
// reaches a user as a stack trace.

export type ErrorCode =
  | 'E_USAGE'
  | 'E_INPUT'
  | 'E_ELF'
  | 'E_NO_KVM'
  | 'E_KVM'
  | 'E_SYSCALL'
  | 'E_GUEST'
  | 'E_VMSTATE'
  | 'E_FORMAT'
  | 'E_IO'
  | 'E_QMP';

export class XenkvmError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Bad command-line usage: wrong flags, missing arguments. */
export class UsageError extends XenkvmError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_USAGE', message, options);
  }
}

/** A file or value given by the user is not what it must be. */
export class InputError extends XenkvmError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_INPUT', message, options);
  }
}

/** The guest image is not a PVH ELF we can load. */
export class ElfError extends XenkvmError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_ELF', message, options);
  }
}

/** /dev/kvm is absent, unusable, or lacks a capability xenkvm needs. */
export class NoKvmError extends XenkvmError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_NO_KVM', message, options);
  }
}

/** A KVM ioctl failed; `errno` is the host's. */
export class KvmError extends XenkvmError {
  readonly errno: number;
  constructor(message: string, errno: number, options?: { cause?: unknown }) {
    super('E_KVM', message, options);
    this.errno = errno;
  }
}

/** A libc call failed; `errno` is the host's. */
export class SyscallError extends XenkvmError {
  readonly errno: number;
  constructor(message: string, errno: number, options?: { cause?: unknown }) {
    super('E_SYSCALL', message, options);
    this.errno = errno;
  }
}

/** The guest did something that ends it (triple fault, bad state). */
export class GuestError extends XenkvmError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_GUEST', message, options);
  }
}

/**
 * A state section could not be encoded or decoded.  `path` locates the field
 * (`cpu[1]/xen_vcpu.xen_virq[3]`); containers prefix it as the error rises.
 */
export class VmstateError extends XenkvmError {
  path: string;
  readonly reason: string;
  constructor(reason: string, path = '', options?: { cause?: unknown }) {
    super('E_VMSTATE', path ? `${path}: ${reason}` : reason, options);
    this.reason = reason;
    this.path = path;
  }
  /** Returns a copy whose path has `prefix` in front; used by containers. */
  withPrefix(prefix: string): VmstateError {
    const joined = this.path
      ? this.path.startsWith('[') || this.path.startsWith('.') || this.path.startsWith('/')
        ? prefix + this.path
        : `${prefix}.${this.path}`
      : prefix;
    return new VmstateError(this.reason, joined, { cause: this.cause });
  }
}

/** A snapshot or migration stream is malformed, truncated or too new. */
export class FormatError extends XenkvmError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_FORMAT', message, options);
  }
}

/** Reading or writing a file or socket failed. */
export class IoError extends XenkvmError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_IO', message, options);
  }
}

/**
 * A control-socket command was refused or failed on the server's side;
 * `errorClass` is the QMP error class ("GenericError", "CommandNotFound").
 * Connection problems are IoErrors, not this.
 */
export class QmpError extends XenkvmError {
  readonly errorClass: string;
  constructor(errorClass: string, message: string, options?: { cause?: unknown }) {
    super('E_QMP', message, options);
    this.errorClass = errorClass;
  }
}
