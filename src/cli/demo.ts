// `xenkvm demo` (npm start): the main job on an embedded default.  Today it
// boots the bundled test guest and runs its self-test; snapshot/restore/diff
// join it as those land.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { InputError } from '../errors.js';
import { runCommand } from './run.js';

export const GUEST_ELF = fileURLToPath(new URL('../../../fixtures/guest/build/guest.elf', import.meta.url));

export async function demoCommand(): Promise<number> {
  if (!existsSync(GUEST_ELF)) throw new InputError(`test guest not built: run npm run build:guest (needs gcc and make)`);
  process.stderr.write(`xenkvm demo: booting the test guest (${GUEST_ELF}) with "selftest"\n`);
  return runCommand({ elf: GUEST_ELF, mem: '64M', vcpus: 1, cmdline: 'selftest', quiet: false });
}
