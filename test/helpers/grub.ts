// A GRUB image for Xen PVH, built as a user would from Debian's
// grub-xen-bin (tools/check-host.mjs installs it where it can): the modules
// the real-guest test uses, and an early config that says it ran.
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const GRUB_MODULE_DIR = '/usr/lib/grub/i386-xen_pvh';
/** normal: the command line; echo; halt; minicmd: lsmod. */
export const GRUB_MODULES = ['normal', 'echo', 'halt', 'minicmd'];
export const GRUB_EARLY_LINE = 'xenkvm: GRUB early config ran';

/** Why GRUB cannot be built here, or null. */
export function grubMissing(): string | null {
  if (!existsSync(join(GRUB_MODULE_DIR, 'normal.mod')))
    return `${GRUB_MODULE_DIR} is missing (apt-get install grub-xen-bin grub-common, or node tools/check-host.mjs --install as root)`;
  const r = spawnSync('grub-mkimage', ['--version'], { stdio: 'ignore' });
  if (r.error || r.status !== 0) return 'grub-mkimage is not installed (apt-get install grub-common)';
  return null;
}

/** Builds grub.elf in `dir` (grub-mkimage -O i386-xen_pvh); returns its path. */
export function buildGrub(dir: string): string {
  const cfg = join(dir, 'early.cfg');
  writeFileSync(cfg, `echo ${GRUB_EARLY_LINE}\n`);
  const elf = join(dir, 'grub.elf');
  const r = spawnSync(
    'grub-mkimage',
    ['-O', 'i386-xen_pvh', '-o', elf, '-c', cfg, '-p', '/boot/grub', ...GRUB_MODULES],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`grub-mkimage failed: ${r.stderr || r.error?.message}`);
  return elf;
}
