// Exit statuses of `xenkvm run` and friends, defined once and documented in
// the README.  0/1 follow the guest's own verdict (poweroff/crash).
import type { Outcome } from '../machine/vcpu-control.js';

export const EXIT = {
  ok: 0,
  crash: 1,
  usage: 2,
  reboot: 3,
  suspend: 4,
  watchdog: 5,
  soft_reset: 6,
  halted: 7,
  fault: 8,
  interrupted: 130,
  internal: 70,
} as const;

export function exitCodeFor(outcome: Outcome): number {
  switch (outcome.kind) {
    case 'halted':
      return EXIT.halted;
    case 'quit':
      return EXIT.ok;
    case 'fault':
      return EXIT.fault;
    case 'shutdown':
      return outcome.reason === 'poweroff' ? EXIT.ok : EXIT[outcome.reason];
  }
}

export function describeOutcome(outcome: Outcome): string {
  switch (outcome.kind) {
    case 'halted':
      return 'guest halted with nothing left to wake it';
    case 'quit':
      return `guest stopped by ${outcome.by}`;
    case 'fault':
      return `guest stopped by a fault: ${outcome.detail}`;
    case 'shutdown':
      return `guest shut down (${outcome.reason})`;
  }
}
