// The xenkvm command line.  Thin: parse, call the library, print.  Every
// XenkvmError becomes one line on stderr and a documented exit status.
import { UsageError, XenkvmError } from '../errors.js';
import { EXIT } from './exit-codes.js';
// Command modules are imported when their command runs: loading all of them
// (the emulator, the inspector, migration) slowed every invocation
// (docs/benchmarks.md, "Log").
import type { SchemaDirection } from './schema.js';
import type { RestoreArgs } from './restore.js';

function fail(e: unknown): number {
  if (e instanceof XenkvmError) {
    process.stderr.write(`xenkvm: ${e.message}\n`);
    return e.code === 'E_USAGE' ||
      e.code === 'E_INPUT' ||
      e.code === 'E_ELF' ||
      e.code === 'E_FORMAT' ||
      e.code === 'E_NO_KVM' ||
      e.code === 'E_VMSTATE' ||
      e.code === 'E_IO'
      ? EXIT.usage
      : EXIT.internal;
  }
  process.stderr.write(`xenkvm: internal error: ${(e as Error)?.message ?? String(e)}\n`);
  if (process.env.XENKVM_DEBUG) process.stderr.write(`${(e as Error)?.stack ?? ''}\n`);
  return EXIT.internal;
}

/**
 * `restore FILE [--qmp SOCK] [--quiet] [--eager]`, and nothing else, parsed without
 * yargs: loading yargs is a tenth of a restore (issue 5; docs/benchmarks.md).
 * Anything this does not recognise (--help, any other option, a repeated
 * one, a second positional, a value starting with `-`) is left to yargs,
 * so usage errors and help read as for every other command.
 */
export function parseRestoreFast(argv: readonly string[]): RestoreArgs | null {
  if (argv[0] !== 'restore') return null;
  let file: string | undefined;
  let qmp: string | undefined;
  let quiet = false;
  let eager = false;
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--quiet') {
      if (quiet) return null;
      quiet = true;
    } else if (a === '--eager') {
      if (eager) return null;
      eager = true;
    } else if (a === '--qmp' || a.startsWith('--qmp=')) {
      const v = a === '--qmp' ? argv[++i] : a.slice('--qmp='.length);
      if (qmp !== undefined || v === undefined || v === '' || v.startsWith('-')) return null;
      qmp = v;
    } else if (a.startsWith('-') || file !== undefined || a === '') {
      return null;
    } else {
      file = a;
    }
  }
  return file === undefined ? null : { file, qmp, quiet, eager };
}

export async function main(argv: string[]): Promise<void> {
  let status: number = EXIT.ok;
  const setStatus = (p: Promise<number>) =>
    p.then(
      (s) => {
        status = s;
      },
      (e) => {
        status = fail(e);
      },
    );
  const restore = parseRestoreFast(argv);
  if (restore) {
    await setStatus(import('./restore.js').then((m) => m.restoreCommand(restore)));
    process.exitCode = status;
    return;
  }
  try {
    const { default: yargs } = await import('yargs');
    await yargs(argv)
      .scriptName('xenkvm')
      .usage('$0 <command> [options]\n\nRun Xen PVH/HVM guests on Linux KVM.')
      .command(
        'run <elf>',
        'Boot a PVH guest ELF; its console goes to stdout',
        (y) =>
          y
            .positional('elf', {
              type: 'string',
              demandOption: true,
              describe: 'guest image: an ELF with a Xen PHYS32_ENTRY note',
            })
            .option('mem', { type: 'string', default: '64M', describe: 'guest memory (e.g. 64M, 1G)' })
            .option('vcpus', { type: 'number', default: 1, describe: 'number of vCPUs (1-8)' })
            .option('cmdline', {
              type: 'string',
              default: '',
              describe: 'guest command line (the test guest runs the program it names)',
            })
            .option('quiet', {
              type: 'boolean',
              default: false,
              describe: 'no closing status line on a clean shutdown',
            })
            .option('qmp', {
              type: 'string',
              describe: 'open a QMP control socket at this path (owner-only); see xenkvm ctl',
            })
            .example(
              '$0 run fixtures/guest/build/guest.elf --cmdline selftest',
              'boot the test guest and run its self-test',
            )
            .epilogue(
              'Exit status: 0 guest powered off, 1 guest crashed, 2 bad usage or input, 3 reboot, 4 suspend, 5 watchdog, 6 soft_reset, 7 halted with nothing to wake it, 8 guest fault (triple fault, KVM error), 70 internal error, 130 interrupted.',
            ),
        (a) =>
          setStatus(
            import('./run.js').then((m) =>
              m.runCommand({ elf: a.elf, mem: a.mem, vcpus: a.vcpus, cmdline: a.cmdline, quiet: a.quiet, qmp: a.qmp }),
            ),
          ),
      )
      .command(
        'snapshot',
        'Save a running guest to a file (through its control socket)',
        (y) =>
          y
            .option('qmp', {
              type: 'string',
              demandOption: true,
              describe: 'control socket of the running xenkvm (run --qmp PATH)',
            })
            .option('output', {
              alias: 'o',
              type: 'string',
              demandOption: true,
              describe: 'snapshot file to write (atomically: temp file, fsync, rename)',
            })
            .option('stop', { type: 'boolean', default: false, describe: 'leave the guest paused after saving' })
            .option('compress', {
              type: 'boolean',
              default: false,
              describe: 'deflate guest memory (smaller, slower; pages no longer mappable)',
            })
            .option('json', { type: 'boolean', default: false, describe: 'print the summary as JSON' })
            .example('$0 snapshot --qmp /tmp/vm.sock -o vm.xks', 'snapshot the guest and let it run on'),
        (a) =>
          setStatus(
            import('./snapshot.js').then((m) =>
              m.snapshotCommand({ qmp: a.qmp, output: a.output, stop: a.stop, compress: a.compress, json: a.json }),
            ),
          ),
      )
      .command(
        'restore <file>',
        'Resume a saved guest in this process; its console continues on stdout',
        (y) =>
          y
            .positional('file', {
              type: 'string',
              demandOption: true,
              describe: 'snapshot file (xenkvm snapshot -o FILE)',
            })
            .option('qmp', { type: 'string', describe: 'open a QMP control socket at this path' })
            .option('quiet', {
              type: 'boolean',
              default: false,
              describe: 'no closing status line on a clean shutdown',
            })
            .option('eager', {
              type: 'boolean',
              default: false,
              describe:
                'load all of guest memory before the guest starts (by default the guest starts first and memory follows within a second; the file must not change until then)',
            })
            .example('$0 restore vm.xks --qmp /tmp/vm2.sock', 'bring the guest back, controllable through a socket')
            .epilogue(
              'Exit status as for run; 2 when the file is bad or this host cannot run the guest (nothing is started then).',
            ),
        (a) =>
          setStatus(
            import('./restore.js').then((m) =>
              m.restoreCommand({ file: a.file, qmp: a.qmp, quiet: a.quiet, eager: a.eager }),
            ),
          ),
      )
      .command(
        'receive',
        'Wait for one incoming live migration and run the guest (console on stdout; on stderr with --listen -)',
        (y) =>
          y
            .option('listen', {
              type: 'string',
              demandOption: true,
              describe: 'tcp:HOST:PORT, unix:PATH, or - (stream on stdin, answer on stdout)',
            })
            .option('qmp', { type: 'string', describe: 'open a QMP control socket at this path once the guest runs' })
            .option('quiet', {
              type: 'boolean',
              default: false,
              describe: 'no closing status line on a clean shutdown',
            })
            .option('tls-cert', { type: 'string', describe: "TLS: this destination's certificate (PEM)" })
            .option('tls-key', { type: 'string', describe: 'TLS: its private key (PEM)' })
            .option('tls-ca', { type: 'string', describe: 'TLS: require a source certificate signed by this CA (PEM)' })
            .option('psk-file', {
              type: 'string',
              describe:
                'TLS 1.2 with a pre-shared key instead of certificates: file with the key in hex (openssl rand -hex 32)',
            })
            .example('$0 receive --listen tcp:0.0.0.0:4444 --qmp /tmp/vm.sock', 'accept one guest on port 4444')
            .example('$0 receive --listen tcp:0.0.0.0:4444 --tls-cert dest.pem --tls-key dest.key', 'the same over TLS')
            .epilogue(
              'Without --tls-cert/--tls-key or --psk-file the stream is NOT authenticated or encrypted: listen only where just the source can connect. TLS is for tcp: and unix: addresses.\n\nExit status as for run; 1 when the migration failed (nothing runs here), 130 interrupted.',
            ),
        (a) =>
          setStatus(
            import('./receive.js').then((m) =>
              m.receiveCommand({
                listen: a.listen,
                qmp: a.qmp,
                quiet: a.quiet,
                tlsCert: a['tls-cert'],
                tlsKey: a['tls-key'],
                tlsCa: a['tls-ca'],
                pskFile: a['psk-file'],
              }),
            ),
          ),
      )
      .command(
        'migrate',
        'Live-migrate a running guest to a listening xenkvm receive (through its control socket)',
        (y) =>
          y
            .option('qmp', { type: 'string', demandOption: true, describe: 'control socket of the running xenkvm' })
            .option('to', {
              type: 'string',
              demandOption: true,
              describe: 'tcp:HOST:PORT, unix:PATH, or - (stream to stdout, answer from stdin)',
            })
            .option('downtime-ms', { type: 'number', describe: 'target pause (default 300)' })
            .option('max-rounds', {
              type: 'number',
              describe: 'pre-copy rounds before giving up on convergence (default 30)',
            })
            .option('timeout-ms', { type: 'number', describe: 'limit on the pre-copy phase (default 60000)' })
            .option('on-timeout', {
              choices: ['pause', 'cancel'] as const,
              default: 'pause' as const,
              describe: 'not converged: pause anyway, or cancel and keep running here',
            })
            .option('json', { type: 'boolean', default: false, describe: 'print the final report as JSON' })
            .option('tls-ca', {
              type: 'string',
              describe: "TLS: verify the destination's certificate against this CA (PEM); over tcp: it must name HOST",
            })
            .option('tls-cert', {
              type: 'string',
              describe: 'TLS: client certificate (PEM), for a destination started with --tls-ca',
            })
            .option('tls-key', { type: 'string', describe: 'TLS: its private key (PEM)' })
            .option('psk-file', {
              type: 'string',
              describe: 'TLS 1.2 with a pre-shared key instead of certificates: file with the key in hex',
            })
            .example('$0 migrate --qmp /tmp/vm.sock --to tcp:10.0.0.2:4444', 'send the guest; this xenkvm then exits 0')
            .example('$0 migrate --qmp /tmp/vm.sock --to tcp:dest.example:4444 --tls-ca ca.pem', 'the same over TLS')
            .epilogue(
              'Ctrl-C cancels before the final state is sent. Exit status: 0 migrated, 1 failed (the guest runs on here), 2 bad usage, 130 cancelled.',
            ),
        (a) =>
          setStatus(
            import('./migrate.js').then((m) =>
              m.migrateCommand({
                qmp: a.qmp,
                to: a.to,
                downtimeMs: a['downtime-ms'],
                maxRounds: a['max-rounds'],
                timeoutMs: a['timeout-ms'],
                onTimeout: a['on-timeout'],
                json: a.json,
                tlsCa: a['tls-ca'],
                tlsCert: a['tls-cert'],
                tlsKey: a['tls-key'],
                pskFile: a['psk-file'],
              }),
            ),
          ),
      )
      .command(
        'ctl <socket> <cmd> [args]',
        "Send one command to a running xenkvm's control socket and print the answer",
        (y) =>
          y
            .positional('socket', {
              type: 'string',
              demandOption: true,
              describe: 'control socket (xenkvm run --qmp PATH)',
            })
            .positional('cmd', {
              type: 'string',
              demandOption: true,
              describe: 'query-status, stop, cont, quit, xen-event-list, xen-event-inject, query-commands',
            })
            .positional('args', {
              type: 'string',
              describe: 'command arguments as a JSON object, e.g. \'{"port": 3}\'',
            })
            .option('json', { type: 'boolean', default: false, describe: 'print the raw JSON result' })
            .example('$0 ctl /tmp/vm.sock xen-event-list', 'show every event channel of the running guest')
            .example('$0 ctl /tmp/vm.sock xen-event-inject \'{"port": 3}\'', 'make port 3 pending')
            .epilogue('Exit status: 0 success, 1 the command failed, 2 bad usage or no xenkvm listening.'),
        (a) =>
          setStatus(
            import('./ctl.js').then((m) =>
              m.ctlCommand({ socket: a.socket, command: a.cmd, json: a.args, raw: a.json }),
            ),
          ),
      )
      .command(
        'inspect <file>',
        'Show what a snapshot holds (versions, machine, sections, memory), or one section decoded',
        (y) =>
          y
            .positional('file', {
              type: 'string',
              demandOption: true,
              describe: 'snapshot file (xenkvm snapshot -o FILE)',
            })
            .option('section', {
              alias: 's',
              type: 'string',
              describe:
                'decode one section: cpu, cpu[1], cpu/xen_vcpu, cpu[0]/xen_vcpu, xen_evtchn, kvmclock, ... (names as the summary lists them)',
            })
            .option('json', {
              type: 'boolean',
              default: false,
              describe:
                'print JSON for scripts: 64-bit state values as decimal strings, bytes as hex, addresses in views as "0x…" strings',
            })
            .example(
              '$0 inspect vm.xks',
              'format and producer versions, machine, sections with sizes, memory statistics',
            )
            .example('$0 inspect vm.xks -s cpu', 'registers of every vCPU side by side, in hex; segments; MSRs by name')
            .example(
              "$0 inspect vm.xks -s 'cpu[1]/xen_vcpu'",
              "vCPU 1's VIRQ bindings and Xen timers (time left at the save)",
            )
            .example(
              '$0 inspect vm.xks -s xen_evtchn',
              'event channel ports: type, vCPU, VIRQ, remote port, pending, masked',
            )
            .epilogue(
              'Sections this build has no descriptor for (or of another version) are decoded with the schema embedded in the file.\n\nExit status: 0 success, 2 unreadable, truncated or corrupt file, or no such section.',
            ),
        (a) =>
          setStatus(
            import('./inspect.js').then((m) => m.inspectCommand({ file: a.file, section: a.section, json: a.json })),
          ),
      )
      .command(
        'diff <a> <b>',
        'Compare two snapshots field by field and page by page',
        (y) =>
          y
            .positional('a', { type: 'string', demandOption: true, describe: 'first snapshot' })
            .positional('b', { type: 'string', demandOption: true, describe: 'second snapshot' })
            .option('pages', {
              type: 'boolean',
              default: false,
              describe: 'list every range of differing pages (default: the first 8)',
            })
            .option('hexdump', {
              type: 'string',
              describe: 'also show guest bytes GPA[,LEN] of both files (LEN default 256, at most 65536)',
            })
            .option('ignore', {
              type: 'string',
              array: true,
              default: [] as string[],
              describe: 'leave out a field (repeatable); * matches any text, PATH[a..b] cuts a byte range',
            })
            .option('ignore-volatile', {
              type: 'boolean',
              default: false,
              describe:
                'leave out what moves whenever a guest runs: kvmclock.clock/realtime/host_tsc, cpu.msrs.IA32_TSC, xen_time.guest_ns/wc_sec/wc_nsec, cpu.lapic[912..915] (LAPIC timer count)',
            })
            .option('json', { type: 'boolean', default: false, describe: 'print JSON for scripts' })
            .example(
              '$0 diff before.xks after.xks',
              'every changed field (cpu[1]/xen_vcpu.xen_virq[0]: 0 → 5) and the GPA ranges of changed pages',
            )
            .example(
              '$0 diff a.xks b.xks --ignore-volatile --ignore "*.rflags"',
              'leave out clocks, TSC and every rflags',
            )
            .example(
              '$0 diff a.xks b.xks --pages --hexdump 0x1fe000,64',
              'all differing ranges, and 64 bytes at 0x1fe000 from both files',
            )
            .epilogue(
              'Paths: cpu[1].regs.rip, cpu[1]/xen_vcpu.xen_virq[0] (a subsection after /), cpu[0].msrs.IA32_TSC (MSRs by name), cpu[0].lapic[912..915] (bytes as ranges). A pattern without an instance (cpu.regs.rip) matches every vCPU. Memory is compared page by page while both files are read, never loaded whole.\n\nExit status (as diff(1)): 0 identical, 1 different, 2 trouble (unreadable or corrupt file, bad option).',
            ),
        (a) =>
          setStatus(
            import('./diff.js').then((m) =>
              m.diffCommand({
                a: a.a,
                b: a.b,
                pages: a.pages,
                hexdump: a.hexdump,
                ignore: a.ignore,
                ignoreVolatile: a['ignore-volatile'],
                json: a.json,
              }),
            ),
          ),
      )
      .command(
        'schema',
        'Print the section descriptors this build writes, or check two schemas for compatibility',
        (y) =>
          y
            .command(
              'check <old> [new]',
              'Say whether files written with OLD load with NEW and the reverse, listing each breaking change',
              (c) =>
                c
                  .positional('old', {
                    type: 'string',
                    demandOption: true,
                    describe:
                      "schema JSON (xenkvm schema --json), a file with one section's schema, or a snapshot (its embedded schemas)",
                  })
                  .positional('new', { type: 'string', describe: 'the same kinds of file; default: this build' })
                  .option('direction', {
                    type: 'string',
                    default: 'both',
                    describe:
                      'which breaks set the exit status: both, old-in-new (can NEW read files of OLD?) or new-in-old',
                  })
                  .example('$0 schema --json > schema-0.1.json', "save this release's schemas")
                  .example(
                    '$0 schema check schema-0.1.json',
                    'can this build read files of 0.1, and 0.1 files of this build?',
                  )
                  .example(
                    '$0 schema check old.xks --direction old-in-new',
                    "does this build still read that snapshot's sections?",
                  )
                  .epilogue(
                    'Exit status: 0 compatible (in the direction asked), 1 breaking changes, 2 unreadable or invalid input.',
                  ),
              (a) =>
                setStatus(
                  import('./schema.js').then((m) =>
                    m.schemaCheckCommand({
                      old: a.old,
                      new: a.new,
                      direction: a.direction as SchemaDirection,
                      json: a.json as boolean,
                    }),
                  ),
                ),
            )
            .option('json', {
              type: 'boolean',
              default: false,
              describe: 'print JSON: {"sections": {NAME: schema}}, the input of schema check',
            })
            .example('$0 schema', 'fields, kinds, versions and defaults of every section, with subsections')
            .example('$0 schema --json > schema.json', 'the same as JSON'),
        (a) => setStatus(import('./schema.js').then((m) => m.schemaCommand({ json: a.json }))),
      )
      .command(
        'demo',
        'Boot the bundled test guest and run its self-test (what `npm start` does)',
        (y) => y,
        () => setStatus(import('./demo.js').then((m) => m.demoCommand())),
      )
      .demandCommand(
        1,
        'name a command: run, snapshot, restore, migrate, receive, ctl, inspect, diff, schema, demo (see --help)',
      )
      .strict()
      .fail((msg, err) => {
        if (err) throw err;
        // Thrown, not just reported: yargs would otherwise still run the command's handler.
        throw new UsageError(`${msg}\n(try: xenkvm --help)`);
      })
      .help()
      .alias('h', 'help')
      .version(false)
      .wrap(Math.min(100, process.stdout.columns || 100))
      .parseAsync();
  } catch (e) {
    status = fail(e);
  }
  process.exitCode = status;
}
