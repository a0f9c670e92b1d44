// The command line as a user meets it: exit statuses and one-line errors
// for input refused before /dev/kvm is opened.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { xenkvmSync } from '../helpers/cli.js';
import { GUEST_ELF } from '../helpers/paths.js';

const xenkvm = (...args: string[]) => xenkvmSync(args);

test('run missing.elf: one line, exit 2', () => {
  const r = xenkvm('run', 'missing.elf');
  assert.is(r.status, 2);
  assert.is(r.stderr.trim(), 'xenkvm: missing.elf: no such file');
});

test('bad usage: exit 2 without a stack trace', () => {
  for (const args of [['run'], ['frobnicate'], ['run', GUEST_ELF, '--vcpus', '9'], ['run', GUEST_ELF, '--mem', '3M']]) {
    const r = xenkvm(...args);
    assert.is(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.not.match(r.stderr, /\n\s+at /, 'no stack trace');
  }
});

test.run();
