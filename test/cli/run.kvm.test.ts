// The command line as a user meets it, once /dev/kvm is open: a file that
// is not a guest image, the console on stdout, the guest's verdict as the
// exit status.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { xenkvmSync } from '../helpers/cli.js';
import { kvmSkipReason } from '../helpers/kvm.js';
import { GUEST_ELF } from '../helpers/paths.js';

const xenkvm = (...args: string[]) => xenkvmSync(args);
const skip = kvmSkipReason();
if (skip) console.log(`  skip cli (KVM part): ${skip}`);

(skip ? test.skip : test)('run /etc/passwd: one line, exit 2', () => {
  const r = xenkvm('run', '/etc/passwd');
  assert.is(r.status, 2);
  assert.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /not an ELF/);
});

(skip ? test.skip : test)('run selftest: console on stdout, RESULT: PASS, exit 0', () => {
  const r = xenkvm('run', GUEST_ELF, '--cmdline', 'selftest');
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /RESULT: PASS\n$/);
});

(skip ? test.skip : test)('a failing guest program exits 1 (crash)', () => {
  const r = xenkvm('run', GUEST_ELF, '--cmdline', 'no-such-program');
  assert.is(r.status, 1, r.stderr);
  assert.match(r.stdout, /RESULT: FAIL 1/);
});

(skip ? test.skip : test)(
  'a command line that starts with a dash reaches the guest (--cmdline X, --cmdline=X, -- X)',
  () => {
    for (const args of [['--cmdline', '--foo bar'], ['--cmdline=--foo bar'], ['--', '--foo', 'bar']]) {
      const r = xenkvm('run', GUEST_ELF, ...args);
      assert.is(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stdout, /unknown program '--foo'/, args.join(' '));
    }
  },
);

test.run();
