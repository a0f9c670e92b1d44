// The rule tools/run-tests.mjs --fast relies on: a suite that needs /dev/kvm
// is named *.kvm.test.ts and skips with a printed reason where it is absent;
// any other suite touches nothing that opens /dev/kvm or boots a guest, so
// the fast tier passes on a machine without it.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { repoPath } from './helpers/paths.js';

const TEST_DIR = repoPath('test');

function suites(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...suites(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

/**
 * Calls that open /dev/kvm, directly or through a helper (which may start a
 * guest, or a process that does).  Helper modules themselves may be
 * imported: goldenFiles() lists the golden snapshots without KVM.
 */
const KVM_CALLS = new RegExp(
  [
    'kvmSkipReason',
    'kvmUnavailable',
    'bootGuest',
    'runGuest',
    'goldenRunnableHere',
    'startReceiver',
    'startPeer',
    'Kvm\\.open',
    'XenMachine\\.(create|boot)',
  ]
    .map((call) => `\\b${call}\\(`)
    .join('|') + '|\\bnew KvmVm\\(',
);

const all = suites(TEST_DIR).map((path) => ({
  name: relative(TEST_DIR, path),
  text: readFileSync(path, 'utf8'),
}));

test('there are suites of both kinds', () => {
  assert.ok(all.filter((s) => s.name.endsWith('.kvm.test.ts')).length >= 10);
  assert.ok(all.filter((s) => !s.name.endsWith('.kvm.test.ts')).length >= 20);
});

test('a *.kvm.test.ts suite asks whether KVM is there and prints why it skips', () => {
  for (const s of all.filter((x) => x.name.endsWith('.kvm.test.ts'))) {
    assert.match(s.text, /\bkvmSkipReason\(\)|\bkvmUnavailable\(\)/, `${s.name}: no KVM check`);
    assert.match(s.text, /console\.log\(`\s+skip /, `${s.name}: no printed skip reason`);
  }
});

test('any other suite makes no call that needs /dev/kvm', () => {
  for (const s of all.filter((x) => !x.name.endsWith('.kvm.test.ts')))
    assert.not.match(s.text, KVM_CALLS, `${s.name} needs /dev/kvm: name it *.kvm.test.ts`);
});

test.run();
