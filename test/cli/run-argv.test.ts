// A guest command line that starts with a dash reaches the guest whole:
// `--cmdline VALUE` takes the next argument as it is, `--cmdline=VALUE`
// stays, and words after `--` become the command line.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { normalizeRunArgv } from '../../src/cli/run-argv.js';
import { UsageError } from '../../src/errors.js';

test('--cmdline VALUE takes the next argument even if it starts with a dash', () => {
  assert.equal(normalizeRunArgv(['run', 'g.elf', '--cmdline', '--foo bar', '--quiet']), [
    'run',
    'g.elf',
    '--cmdline=--foo bar',
    '--quiet',
  ]);
  assert.equal(normalizeRunArgv(['run', 'g.elf', '--cmdline', '-v']), ['run', 'g.elf', '--cmdline=-v']);
});

test('--cmdline=VALUE is left alone; other commands are untouched', () => {
  assert.equal(normalizeRunArgv(['run', 'g.elf', '--cmdline=--foo']), ['run', 'g.elf', '--cmdline=--foo']);
  assert.equal(normalizeRunArgv(['snapshot', 'sock', '--cmdline', '-x']), ['snapshot', 'sock', '--cmdline', '-x']);
});

test('words after -- are the command line, joined with spaces', () => {
  assert.equal(normalizeRunArgv(['run', 'g.elf', '--mem', '8M', '--', '--debug', 'console=hvc0']), [
    'run',
    'g.elf',
    '--mem',
    '8M',
    '--cmdline=--debug console=hvc0',
  ]);
  assert.equal(normalizeRunArgv(['run', 'g.elf', '--']), ['run', 'g.elf', '--cmdline=']);
});

test('--cmdline and -- together: a usage error', () => {
  assert.throws(
    () => normalizeRunArgv(['run', 'g.elf', '--cmdline', 'a', '--', 'b']),
    (e: unknown) => e instanceof UsageError,
  );
});

test.run();
