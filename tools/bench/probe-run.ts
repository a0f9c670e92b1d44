// Child process of the hypercall bench: `node --import probe.js probe-run.js
// <cmdline>` boots the test guest with the exit probe loaded in its vCPU
// worker and prints the guest console on stdout.
import { runGuest } from './guest-run.js';

const cmdline = process.argv[2] ?? 'bench';
runGuest(cmdline).then(
  (r) => {
    process.stdout.write(r.console);
    process.exitCode = r.outcome.kind === 'shutdown' && r.outcome.reason === 'poweroff' ? 0 : 1;
  },
  (e: Error) => {
    console.error(`probe-run: ${e.message}`);
    process.exitCode = 1;
  },
);
