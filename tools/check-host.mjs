#!/usr/bin/env node
// Checks what xenkvm needs on this host and says what is missing, one line
// each.  With --install (CI, or a user who asks) it installs Debian packages
// for missing build tools when running as root.  Exit 0 when the test suite
// can run (KVM itself is optional: KVM tests skip with a printed reason).
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';

const install = process.argv.includes('--install');
const have = (tool) => {
  const r = spawnSync(tool, ['--version'], { stdio: 'ignore' });
  return !r.error && r.status === 0;
};

const [major] = process.versions.node.split('.').map(Number);
if (major < 20) {
  console.error(`check-host: Node ${process.versions.node} is too old; xenkvm needs Node 20 or later`);
  process.exit(1);
}

const missing = ['gcc', 'make'].filter((t) => !have(t));
if (missing.length > 0) {
  if (install && process.getuid?.() === 0) {
    console.log(`check-host: installing ${missing.join(', ')} (needed to build the test guest)`);
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
    const r = spawnSync('apt-get', ['install', '-y', '-qq', ...missing], {
      stdio: 'inherit',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
    if (r.status !== 0) {
      console.error(`check-host: apt-get install ${missing.join(' ')} failed`);
      process.exit(1);
    }
  } else {
    console.error(`check-host: ${missing.join(' and ')} not found; install with: apt-get install ${missing.join(' ')}`);
    process.exit(1);
  }
}

// GRUB for Xen PVH (Debian's grub-xen-bin, grub-mkimage from grub-common):
// the real-guest test boots it.  Optional: without it that test is skipped
// with this reason, everything else runs.
const GRUB_PACKAGES = ['grub-common', 'grub-xen-bin'];
const haveGrub = () => {
  try {
    accessSync('/usr/lib/grub/i386-xen_pvh/normal.mod', constants.R_OK);
  } catch {
    return false;
  }
  return have('grub-mkimage');
};
if (!haveGrub()) {
  if (install && process.getuid?.() === 0) {
    console.log(`check-host: installing ${GRUB_PACKAGES.join(', ')} (GRUB for Xen PVH, for the real-guest test)`);
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
    const r = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...GRUB_PACKAGES], {
      stdio: 'inherit',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
    if (r.status !== 0 || !haveGrub())
      console.log('check-host: GRUB for Xen PVH could not be installed: the GRUB test will be skipped');
  } else {
    console.log(
      `check-host: GRUB for Xen PVH not found (apt-get install ${GRUB_PACKAGES.join(' ')}): the GRUB test will be skipped`,
    );
  }
} else {
  console.log('check-host: GRUB for Xen PVH is installed');
}

try {
  accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
  console.log('check-host: /dev/kvm is usable');
} catch (e) {
  console.log(`check-host: /dev/kvm is not usable (${e.code}): tests that need KVM will be skipped`);
}
