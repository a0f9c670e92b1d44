// A process that dies (here: an uncaught exception) while its guest's vCPUs
// are halted inside KVM_RUN must still exit: Node joins every Worker on exit,
// and a halted vCPU never returns from KVM_RUN unless it is kicked.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { kvmSkipReason } from '../helpers/kvm.js';
import { distUrl } from '../helpers/paths.js';
import { tempDir } from '../helpers/tmp.js';

const skip = kvmSkipReason();
if (skip) console.log(`  skip process-exit: ${skip}`);

(skip ? test.skip : test)('an uncaught exception with halted vCPUs ends the process', () => {
  const { dir, cleanup } = tempDir('exit');
  try {
    const helper = distUrl('test/helpers/guest.js');
    const script = join(dir, 'die.mjs');
    writeFileSync(
      script,
      `import { bootGuest } from ${JSON.stringify(helper)};
const g = bootGuest('fill 5', { vcpus: 2 });
await g.waitFor('fill:', 20000);
setTimeout(() => { throw new Error('deliberate'); }, 200);
`,
    );
    const r = spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 30000 });
    assert.is(r.signal, null, 'the process ended by itself, not by the test timeout');
    assert.is(r.status, 1);
    assert.match(r.stderr, /deliberate/);
  } finally {
    cleanup();
  }
});

test.run();
