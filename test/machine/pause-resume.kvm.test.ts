// A live soak guest is paused and resumed from outside and its event
// channel table is read while it runs: no event is lost or duplicated
// (the guest checks) and every vCPU's VIRQ_TIMER port is listed.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Virq } from '../../src/xen/abi.js';
import { eventChannelList } from '../../src/xen/evtchn/list.js';
import { bootGuest } from '../helpers/guest.js';
import { kvmSkipReason } from '../helpers/kvm.js';

const skip = kvmSkipReason();
if (skip) console.log(`  skip pause-resume: ${skip}`);

(skip ? test.skip : test)('soak on 2 vCPUs survives pause/resume with every VIRQ_TIMER bound', async () => {
  const g = bootGuest('soak 4s', { vcpus: 2 });
  try {
    await g.waitFor('soak: t=1s', 10000);
    const timers = eventChannelList(g.machine.context).filter((p) => p.type === 'virq' && p.virq === Virq.TIMER);
    assert.equal(timers.map((p) => p.vcpu).sort(), [0, 1], 'a VIRQ_TIMER port per vCPU');
    for (let i = 0; i < 3; i++) {
      await g.machine.pause();
      assert.is(g.machine.status, 'paused');
      const before = g.console().length;
      await new Promise((r) => setTimeout(r, 150));
      assert.is(g.console().length, before, 'no console output while paused');
      g.machine.resume();
      await new Promise((r) => setTimeout(r, 200));
    }
    const outcome = await g.outcome;
    assert.equal(outcome, { kind: 'shutdown', reason: 'poweroff' });
    assert.match(g.console(), /soak: done .*violations=0/);
    assert.not.match(g.console(), /VIOLATION/);
  } finally {
    await g.machine.destroy();
  }
});

test.run();
