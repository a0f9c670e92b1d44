// I/O ports the machine answers besides the hypercall port.

/** Debug console (QEMU's isa-debugcon): one byte per OUT. */
export const DEBUGCON_PORT = 0xe9;
/** QEMU's isa-debug-exit: a guest without Xen powers off through it. */
export const DEBUG_EXIT_PORT = 0xf4;
