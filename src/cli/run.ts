// `xenkvm run`: boot a PVH guest and stream its console to stdout.
import { readFileSync } from 'node:fs';
import { InputError, UsageError } from '../errors.js';
import { defineCommand } from './command.js';
import { memSizeProblem } from '../xen/memory/layout.js';
import { parseSize } from './parse-size.js';

export interface RunArgs {
  elf: string;
  mem: string;
  vcpus: number;
  cmdline: string;
  quiet: boolean;
  qmp?: string | undefined;
}

export const command = defineCommand({
  command: 'run <elf>',
  describe: 'Boot a PVH guest ELF; its console goes to stdout',
  builder: (y) =>
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
        describe:
          'guest command line (the test guest runs the program it names); the argument after --cmdline is its value even if it starts with a dash; or give it after --',
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
      .example('$0 run fixtures/guest/build/guest.elf --cmdline selftest', 'boot the test guest and run its self-test')
      .example('$0 run vmlinux -- --debug console=hvc0', 'a command line that starts with a dash, after --')
      .epilogue(
        'Exit status: 0 guest powered off, 1 guest crashed, 2 bad usage or input, 3 reboot, 4 suspend, 5 watchdog, 6 soft_reset, 7 halted with nothing to wake it, 8 guest fault (triple fault, KVM error), 70 internal error, 130 interrupted.',
      ),
  run: (a) => runCommand({ elf: a.elf, mem: a.mem, vcpus: a.vcpus, cmdline: a.cmdline, quiet: a.quiet, qmp: a.qmp }),
});

export function readGuestImage(path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new InputError(`${path}: no such file`);
    if (code === 'EISDIR') throw new InputError(`${path}: is a directory, not a guest image`);
    throw new InputError(`${path}: cannot read (${code ?? (e as Error).message})`);
  }
}

export function parseMem(text: string): number {
  const memBytes = parseSize(text, '--mem');
  const problem = memSizeProblem(memBytes);
  if (problem) throw new UsageError(`--mem ${problem}, got ${text}`);
  return memBytes;
}

export async function runCommand(args: RunArgs): Promise<number> {
  const [{ XenMachine }, { runToCompletion }] = await Promise.all([
    import('../machine/machine.js'),
    import('./run-to-completion.js'),
  ]);
  const memBytes = parseMem(args.mem);
  const elf = readGuestImage(args.elf);
  const machine = XenMachine.boot({
    elf,
    elfName: args.elf,
    cmdline: args.cmdline,
    memBytes,
    vcpus: args.vcpus,
    console: (bytes) => process.stdout.write(bytes),
    log: (msg) => process.stderr.write(`xenkvm: ${msg}\n`),
  });
  return runToCompletion(machine, args.quiet, args.qmp);
}
