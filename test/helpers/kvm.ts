// Whether the suites that need /dev/kvm can run here.  Those suites are the
// ones named *.kvm.test.ts (tools/run-tests.mjs runs the others alone with
// --fast); each asks kvmSkipReason() and, when it gets a reason, prints it
// and skips its KVM tests instead of failing.
import { existsSync } from 'node:fs';
import { kvmUnavailable } from '../../src/kvm/kvm.js';
import { GUEST_ELF } from './paths.js';

/** Why a guest cannot be booted on KVM here, or null. */
export function kvmSkipReason(): string | null {
  const kvm = kvmUnavailable();
  if (kvm) return kvm;
  if (!existsSync(GUEST_ELF)) return `test guest not built (${GUEST_ELF}); run npm run build:guest`;
  return null;
}
