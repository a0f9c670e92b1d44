// Live migration over TLS (certificates, mutual authentication) and TLS 1.2
// with a pre-shared key, handshake failures (wrong CA, wrong key) that must
// leave the source guest running, and the destination SIGKILLed at random
// moments of a migration.  The destination is `xenkvm receive` (receiveCommand)
// in a child process on loopback TCP; the source is this process, driven
// directly (connectTo + migrate) or through the QMP `migrate` command.
// Certificates come from Debian's openssl into a temporary directory.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connectTo, parseAddress } from '../../../src/migrate/live/transport/address.js';
import { registerMigrationCommands } from '../../../src/migrate/live/qmp-commands.js';
import { loadSecurity } from '../../../src/migrate/live/transport/security.js';
import { migrate, MigrationError } from '../../../src/migrate/live/send.js';
import { CommandRegistry, type CommandContext } from '../../../src/qmp/registry.js';
import type { JsonObject } from '../../../src/qmp/protocol.js';
import { bootGuest, type GuestRun } from '../../helpers/guest.js';
import { startReceiver, type Receiver } from '../../helpers/receiver.js';
import { withTimeout } from '../../helpers/async.js';
import { kvmSkipReason } from '../../helpers/kvm.js';
import { tempDir } from '../../helpers/tmp.js';

function opensslSkipReason(): string | null {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return null;
  } catch {
    return 'no openssl command (apt-get install openssl) to make test certificates';
  }
}
const skip = kvmSkipReason() ?? opensslSkipReason();
if (skip) console.log(`  skip migrate-tls: ${skip}`);
const kvmTest = skip ? test.skip : test;

const { dir, cleanup } = tempDir('mig-tls');
const f = (name: string): string => join(dir, name);

function openssl(args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Two CAs (the second one is the "wrong" one), a server cert for 127.0.0.1 and a client cert, both from the first; two PSKs. */
function makeCredentials(): void {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  for (const ca of ['ca', 'otherca'])
    openssl([
      'req',
      '-x509',
      ...ec,
      '-keyout',
      `${ca}.key`,
      '-out',
      `${ca}.pem`,
      '-subj',
      `/CN=xenkvm test ${ca}`,
      '-days',
      '2',
    ]);
  for (const [name, ext] of [
    ['server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n'],
    ['client', 'extendedKeyUsage=clientAuth\n'],
  ] as const) {
    writeFileSync(f(`${name}.ext`), ext);
    openssl(['req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=xenkvm test ${name}`]);
    openssl([
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    ]);
  }
  writeFileSync(f('psk.hex'), `${'5a'.repeat(32)}\n`);
  writeFileSync(f('wrongpsk.hex'), `${'a5'.repeat(32)}\n`);
}
if (!skip) makeCredentials();

const SERVER_TLS = { tlsCert: f('server.pem'), tlsKey: f('server.key') };
const MUTUAL_TLS = { ...SERVER_TLS, tlsCa: f('ca.pem') };
const PSK = { pskFile: f('psk.hex') };

/** The QMP `migrate` command of `machine`, called as a client would. */
async function qmpMigrate(g: GuestRun, args: JsonObject): Promise<JsonObject> {
  const registry = new CommandRegistry();
  registerMigrationCommands(registry, {
    status: () => g.machine.status,
    send: (sock, opts) => migrate(g.machine, sock, opts),
    quit: (by) => g.machine.requestStop({ kind: 'quit', by }),
    events: () => null,
  });
  const ctx: CommandContext = {
    signal: new AbortController().signal,
    afterReply: () => {},
    enterCommandMode: () => {},
  };
  return (await registry.lookup('migrate')!.run(args, ctx)) as JsonObject;
}

/** The destination ran the guest to the end cleanly. */
async function destinationPasses(r: Receiver, what: string): Promise<void> {
  const code = await withTimeout(r.exit, 30000, `${what}: destination run`);
  assert.is(
    code,
    0,
    `${what}: ${r.err()}\n--- destination console (problems):\n${r
      .out()
      .split('\n')
      .filter((l) => /VIOLATION|RESULT|EXCEPTION/.test(l))
      .slice(0, 20)
      .join('\n')}`,
  );
  assert.ok(
    r.out().includes('RESULT: PASS'),
    `${what}: destination did not pass:\n${r.out().slice(-2000)}\n${r.err()}`,
  );
  assert.not.match(r.out(), /VIOLATION/);
}

/** The source guest runs (again) and finishes cleanly. */
async function sourceFinishesClean(g: GuestRun, what: string): Promise<void> {
  for (let i = 0; i < 100 && g.machine.status !== 'running'; i++) await new Promise((res) => setTimeout(res, 10));
  assert.is(g.machine.status, 'running', `${what}: the source guest runs`);
  await g.waitFor('RESULT:', 20000);
  assert.ok(g.console().includes('RESULT: PASS'), `${what}: ${g.console().slice(-2000)}`);
  assert.not.match(g.console(), /VIOLATION/);
}

kvmTest('soak on 2 vCPUs migrates over TLS with mutual certificate authentication', async () => {
  const g = bootGuest('soak 4s', { vcpus: 2 });
  const r = startReceiver(MUTUAL_TLS);
  try {
    await g.waitFor('soak: t=1s', 15000);
    const addr = await withTimeout(r.address, 10000, 'receiver listening');
    assert.match(r.err(), /TLS with certificates/);
    const security = loadSecurity({ tlsCa: f('ca.pem'), tlsCert: f('client.pem'), tlsKey: f('client.key') }, 'client');
    const sock = await connectTo(parseAddress(addr, 'test'), 10000, security);
    const report = await migrate(g.machine, sock);
    console.log(
      `  TLS: total ${report.totalMs.toFixed(0)} ms, downtime ${report.downtimeMs.toFixed(1)} ms, ${(report.bytes / (1 << 20)).toFixed(1)} MiB`,
    );
    assert.is(g.machine.status, 'paused');
    await g.machine.destroy();
    await destinationPasses(r, 'TLS');
    assert.not.match(g.console(), /VIOLATION/);
  } finally {
    r.child.kill('SIGKILL');
    await g.machine.destroy();
  }
});

kvmTest('soak on 2 vCPUs migrates over TLS 1.2 with a pre-shared key, through the QMP migrate command', async () => {
  const g = bootGuest('soak 4s', { vcpus: 2 });
  const r = startReceiver(PSK);
  try {
    await g.waitFor('soak: t=1s', 15000);
    const uri = await withTimeout(r.address, 10000, 'receiver listening');
    const rep = await qmpMigrate(g, { uri, 'psk-file': f('psk.hex') });
    assert.is(rep['status'], 'completed');
    console.log(
      `  PSK (QMP): total ${Number(rep['totalMs']).toFixed(0)} ms, downtime ${Number(rep['downtimeMs']).toFixed(1)} ms`,
    );
    await g.machine.destroy();
    await destinationPasses(r, 'PSK');
  } finally {
    r.child.kill('SIGKILL');
    await g.machine.destroy();
  }
});

kvmTest(
  'wrong CA, missing client certificate, wrong PSK, plain client: the migration fails, the source guest runs on clean',
  async () => {
    // Four attempts, each starting a destination process: 10 s leaves room on a loaded host.
    const g = bootGuest('soak 10s', { vcpus: 2 });
    const receivers: Receiver[] = [];
    try {
      await g.waitFor('soak: t=1s', 15000);
      // `seen`: the destination logs the rejection at once.  When the source rejects the destination's certificate
      // after a TLS 1.3 handshake, the destination only notices at its handshake timeout (10 s); it listens on meanwhile.
      const attempt = async (
        what: string,
        recv: Record<string, string>,
        args: JsonObject,
        expect: RegExp,
        seen = true,
      ): Promise<void> => {
        const r = startReceiver(recv);
        receivers.push(r);
        const uri = await withTimeout(r.address, 10000, 'receiver listening');
        const err = await qmpMigrate(g, { uri, ...args }).then(
          () => null,
          (e: unknown) => e,
        );
        assert.instance(err, MigrationError, `${what}: the migration must fail`);
        const msg = (err as Error).message;
        assert.match(msg, /the guest runs on here/);
        assert.match(msg, expect, `${what}: ${msg}`);
        assert.not.match(msg, /\n/, 'one line');
        // A plain source cannot tell a TLS destination from a slow one until its
        // writes fail, so it may have paused for the final round; it resumes.
        for (let t = 0; t < 200 && g.machine.status !== 'running'; t++) await new Promise((res) => setTimeout(res, 10));
        assert.is(g.machine.status, 'running', `${what}: the source guest runs on`);
        console.log(`  ${what}: ${msg}`);
        // The destination drops the connection and waits on for a proper one.
        for (let i = 0; i < (seen ? 200 : 30) && !/rejected a connection/.test(r.err()); i++)
          await new Promise((res) => setTimeout(res, 10));
        if (seen)
          assert.match(
            r.err(),
            /rejected a connection from 127\.0\.0\.1:\d+: TLS handshake failed: /,
            `${what}: ${r.err()}`,
          );
        assert.is(r.child.exitCode, null, `${what}: the destination still listens`);
        r.child.kill('SIGKILL');
        await r.exit;
        assert.not.match(r.out(), /soak:/, `${what}: nothing ran on the destination`);
      };
      await attempt(
        'wrong CA',
        SERVER_TLS,
        { 'tls-ca': f('otherca.pem') },
        /TLS handshake with tcp:127\.0\.0\.1:\d+ failed: unable to verify/,
        false,
      );
      await attempt(
        'no client certificate for a destination requiring one',
        MUTUAL_TLS,
        { 'tls-ca': f('ca.pem') },
        /./,
      );
      await attempt(
        'wrong PSK',
        PSK,
        { 'psk-file': f('wrongpsk.hex') },
        /TLS handshake with tcp:127\.0\.0\.1:\d+ failed/,
      );
      await attempt('plain client, TLS destination', SERVER_TLS, {}, /./);
      for (const r of receivers) console.log(`  destination: ${r.err().trim().split('\n').at(-1)}`);
      await sourceFinishesClean(g, 'after the failed attempts');
    } finally {
      for (const r of receivers) r.child.kill('SIGKILL');
      await g.machine.destroy();
    }
  },
);

kvmTest(
  'the destination SIGKILLed at a random moment in 5 migrations: each either succeeds or leaves the source guest running clean',
  async () => {
    const outcomes: string[] = [];
    const order = [0, 1, 2, 3, 4].sort(() => Math.random() - 0.5);
    for (let run = 0; run < 5; run++) {
      const slice = order[run]!;
      const tls = run % 2 === 1;
      const g = bootGuest('soak 4s', { vcpus: 2 });
      const r = startReceiver(tls ? SERVER_TLS : {});
      const what = `run ${run + 1} (${tls ? 'TLS' : 'plain'})`;
      let timer: NodeJS.Timeout | undefined;
      try {
        await g.waitFor('soak: t=1s', 15000);
        const addr = parseAddress(await withTimeout(r.address, 10000, 'receiver listening'), 'test');
        // Random, one run per 30 ms slice of [0, 150), about as long as a 64 MiB soak guest's migration
        // (docs/benchmarks.md), so that every phase, the pause and the answer included, gets its chance.
        const delay = Math.round((slice + Math.random()) * 30);
        let killed = false;
        let killedAt = '';
        let phase = 'connecting';
        const t0 = performance.now();
        timer = setTimeout(() => {
          killed = true;
          killedAt = phase;
          r.child.kill('SIGKILL');
        }, delay);
        const result = await (async () => {
          const sock = await connectTo(addr, 10000, tls ? loadSecurity({ tlsCa: f('ca.pem') }, 'client') : undefined);
          phase = 'round 0';
          return migrate(g.machine, sock, {
            confirmTimeoutMs: 5000,
            onProgress: (p) => (phase = p.final ? 'final round sent, awaiting confirmation' : `round ${p.round + 1}`),
            onPause: () => (phase = 'paused'),
          });
        })().then(
          (rep) => ({ ok: true as const, rep }),
          (e: unknown) => ({ ok: false as const, e }),
        );
        const ms = performance.now() - t0;
        if (result.ok) {
          if (!killed) {
            clearTimeout(timer);
            await g.machine.destroy();
            await destinationPasses(r, what);
            outcomes.push(
              `${what}: kill at ${delay} ms came after the migration (${ms.toFixed(0)} ms): migrated, destination PASS`,
            );
          } else {
            // Killed after it confirmed: the guest ran there, and the source rightly let it go.
            await r.exit;
            assert.not.match(r.out(), /VIOLATION/);
            assert.match(r.err(), /guest running|received/, `${what}: ${r.err()}`);
            outcomes.push(`${what}: killed at ${delay} ms (${killedAt}) just after confirming: migrated`);
          }
        } else {
          clearTimeout(timer);
          r.child.kill('SIGKILL');
          await r.exit;
          const msg = result.e instanceof Error ? result.e.message : String(result.e);
          assert.ok(killed, `${what}: failed without being killed: ${msg}`);
          await sourceFinishesClean(g, what);
          outcomes.push(`${what}: killed at ${delay} ms (${killedAt}): failed (${msg}); source PASS`);
        }
      } finally {
        clearTimeout(timer);
        r.child.kill('SIGKILL');
        await g.machine.destroy();
      }
    }
    for (const o of outcomes) console.log(`  ${o}`);
  },
);

test.after(cleanup);
test.run();
