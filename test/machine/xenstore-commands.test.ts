// The toolstack's xenstore commands without KVM: a real daemon behind the
// toolstack, a real control socket, `xenkvm ctl` as the client.  Pins the
// command names, word arguments, output forms, watch events and the
// shutdown request; xenstore.kvm.test.ts runs them against a guest.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ctlCommand } from '../../src/cli/ctl.js';
import { registerXenstoreCommands } from '../../src/machine/xenstore-commands.js';
import { XenstoreToolstack, type XenstoreHost } from '../../src/machine/xenstore-backend.js';
import { CommandRegistry } from '../../src/qmp/registry.js';
import type { QmpServer } from '../../src/qmp/server.js';
import { XenstoreServer } from '../../src/xen/xenstore/server.js';
import { writeDomainTree } from '../../src/xen/xenstore/domain-tree.js';
import { startServer } from '../helpers/qmp.js';
import { tempDir } from '../helpers/tmp.js';

async function withToolstack(
  fn: (ctl: (cmd: string, ...words: string[]) => Promise<[number, string, string]>, x: XenstoreServer) => Promise<void>,
  opts: { present?: boolean } = {},
): Promise<void> {
  const { dir, cleanup } = tempDir('xs-ctl');
  const server = new XenstoreServer();
  writeDomainTree(server, { domid: 1, name: 'g', memoryKb: 1024, vcpus: 1 });
  const host = { xenstore: server } as unknown as XenstoreHost;
  const ts = new XenstoreToolstack(host);
  server.onQueued = (domid) => domid === 0 && ts.scheduleDrain();
  const registry = new CommandRegistry();
  let qmp: QmpServer | null = null;
  registerXenstoreCommands(registry, {
    xenstore: () => (opts.present === false ? null : ts),
    status: () => 'running',
    events: () => qmp,
  });
  const started = await startServer(dir, registry);
  qmp = started.server;
  const ctl = async (cmd: string, ...words: string[]): Promise<[number, string, string]> => {
    let out = '';
    let err = '';
    const raw = words[0] === '--json';
    const status = await ctlCommand({
      socket: started.path,
      command: cmd,
      words: raw ? words.slice(1) : words,
      raw,
      out: (t) => void (out += t),
      err: (t) => void (err += t),
    });
    return [status, out, err];
  };
  try {
    await fn(ctl, server);
  } finally {
    await qmp.close();
    cleanup();
  }
}

test('read, write (parents made), rm, ls with permissions where not inherited; relative paths are the guest’s', () =>
  withToolstack(async (ctl) => {
    assert.equal(await ctl('xenstore-read', 'name'), [0, 'g\n', '']);
    assert.equal(await ctl('xenstore-write', 'data/a/b', 'x"y\u0001'), [0, '', '']);
    assert.equal(await ctl('xenstore-ls', 'data'), [
      0,
      '/local/domain/1/data = ""  (n1)\n/local/domain/1/data/a = ""\n/local/domain/1/data/a/b = "x\\"y\\x01"\n',
      '',
    ]);
    assert.equal(await ctl('xenstore-read', '--json', '/local/domain/1/data/a/b'), [
      0,
      '{"value":"x\\"y\\u0001"}\n',
      '',
    ]);
    assert.equal(await ctl('xenstore-rm', 'data/a'), [0, '', '']);
    assert.equal(await ctl('xenstore-read', 'data/a'), [
      1,
      '',
      'xenkvm: xenstore-read: /local/domain/1/data/a: ENOENT\n',
    ]);
    assert.equal(await ctl('xenstore-read', 'a b'), [1, '', 'xenkvm: xenstore-read: /local/domain/1/a b: EINVAL\n']);
  }));

test('word arguments: usage, numbers, JSON still accepted', () =>
  withToolstack(async (ctl) => {
    const [s1, , e1] = await ctl('xenstore-write', 'only-a-path');
    assert.is(s1, 2);
    assert.match(e1, /usage: xenstore-write PATH VALUE/);
    const [s2, , e2] = await ctl('xenstore-watch', 'data', 'many');
    assert.is(s2, 2);
    assert.match(e2, /count must be a number/);
    assert.equal(await ctl('xenstore-write', '{"path": "data/j", "value": "1"}'), [0, '', '']);
    assert.equal(await ctl('xenstore-read', 'data/j'), [0, '1\n', '']);
  }));

test('watch: the event at once and one per change below, COUNT ends it; --json prints events as lines', () =>
  withToolstack(async (ctl) => {
    const w = ctl('xenstore-watch', 'data/w', '3');
    await new Promise((r) => setTimeout(r, 100));
    await ctl('xenstore-write', 'data/w', '1');
    await ctl('xenstore-write', 'data/w/x', '2');
    assert.equal(await w, [0, '/local/domain/1/data/w\n/local/domain/1/data/w\n/local/domain/1/data/w/x\n', '']);
    const [s, out] = await ctl('xenstore-watch', '--json', 'domid', '1');
    assert.is(s, 0);
    assert.equal(JSON.parse(out).path, '/local/domain/1/domid');
  }));

test('shutdown and reboot write the request into control/shutdown', () =>
  withToolstack(async (ctl) => {
    assert.equal(await ctl('shutdown'), [0, '', '']);
    assert.equal(await ctl('xenstore-read', 'control/shutdown'), [0, 'poweroff\n', '']);
    assert.equal(await ctl('reboot'), [0, '', '']);
    assert.equal(await ctl('xenstore-read', 'control/shutdown'), [0, 'reboot\n', '']);
  }));

test('a guest without xenstore: every command says so', () =>
  withToolstack(
    async (ctl) => {
      for (const [cmd, ...words] of [['xenstore-read', 'x'], ['xenstore-ls'], ['shutdown']]) {
        const [s, , e] = await ctl(cmd!, ...words);
        assert.is(s, 1);
        assert.match(e, /has no xenstore/);
      }
    },
    { present: false },
  ));

test.run();
