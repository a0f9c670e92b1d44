// Where the repository's files are, seen from a compiled suite: every suite
// runs from dist/test/<module>/..., at a depth that differs from folder to
// folder, so paths are resolved here, once, from this file's own place
// (dist/test/helpers/).
import { fileURLToPath } from 'node:url';

const ROOT = new URL('../../../', import.meta.url);
const DIST = new URL('../../', import.meta.url);

/** Absolute path of `rel` inside the repository (e.g. 'fixtures/vmstate/x.json'). */
export const repoPath = (rel: string): string => fileURLToPath(new URL(rel, ROOT));

/** file: URL of a compiled module (e.g. 'src/kvm/libc.js'), for code a worker or child process imports. */
export const distUrl = (rel: string): string => new URL(rel, DIST).href;

/** The test guest (fixtures/guest, built by tools/build-guest.mjs). */
export const GUEST_ELF = repoPath('fixtures/guest/build/guest.elf');

/** The golden snapshots, one per format version and CPU vendor. */
export const GOLDEN_DIR = repoPath('fixtures/snapshots/');

/** The cpu/xen_vcpu v1 schema and payload kept to prove old files still load. */
export const XEN_VCPU_V1_SCHEMA = repoPath('fixtures/vmstate/cpu-xen_vcpu-v1.schema.json');
export const XEN_VCPU_V1_PAYLOAD = repoPath('fixtures/vmstate/cpu-xen_vcpu-v1.msgpack');
