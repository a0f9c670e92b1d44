// `xenkvm restore` is parsed without yargs (loading it is a tenth of a
// restore); anything unusual is left to yargs so errors and help read the same.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseRestoreFast } from '../../src/cli/main.js';

test('the restore forms the fast path takes', () => {
  assert.equal(parseRestoreFast(['restore', 'vm.xks']), { file: 'vm.xks', qmp: undefined, quiet: false, eager: false });
  assert.equal(parseRestoreFast(['restore', '--eager', 'vm.xks', '--qmp', '/tmp/s', '--quiet']), {
    file: 'vm.xks',
    qmp: '/tmp/s',
    quiet: true,
    eager: true,
  });
  assert.equal(parseRestoreFast(['restore', 'vm.xks', '--qmp=/tmp/s']), {
    file: 'vm.xks',
    qmp: '/tmp/s',
    quiet: false,
    eager: false,
  });
});

test('anything else goes to yargs', () => {
  for (const argv of [
    ['run', 'guest.elf'],
    ['restore'],
    ['restore', 'a', 'b'],
    ['restore', 'a', '--eager', '--eager'],
    ['restore', 'a', '--help'],
    ['restore', 'a', '--qmp'],
    ['restore', 'a', '--qmp', '--quiet'],
    ['restore', 'a', '--lazy'],
    ['restore', ''],
  ])
    assert.is(parseRestoreFast(argv), null, argv.join(' '));
});

test.run();
