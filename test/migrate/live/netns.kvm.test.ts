// Two hosts for real: the source in one network namespace, the destination
// in another, joined by a veth pair; the soak guest on 2 vCPUs migrates over
// TCP between 10.213.7.1 and 10.213.7.2, back and forth, and must stay clean.
// The namespaces are this test's own and are removed afterwards, always.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { QmpClient } from '../../../src/qmp/client.js';
import type { JsonObject } from '../../../src/qmp/protocol.js';
import { createNetnsPair, NS_ADDR, netnsSkipReason, startPeer, type Peer } from '../../helpers/netns.js';
import { kvmSkipReason } from '../../helpers/kvm.js';
import { tempDir } from '../../helpers/tmp.js';

const HOPS = 10;
const skip = kvmSkipReason() ?? netnsSkipReason();
if (skip) console.log(`  skip migrate-netns: ${skip}`);
const kvmTest = skip ? test.skip : test;

/** The guest's VIOLATION lines with the status line before the first, for a failure message. */
const violations = (text: string) => {
  const lines = text.split('\n');
  const first = lines.findIndex((l) => l.includes('VIOLATION'));
  return first < 0
    ? 'none'
    : [
        lines
          .slice(0, first)
          .reverse()
          .find((l) => l.startsWith('soak:')) ?? '(no status line before)',
        ...lines.filter((l) => l.includes('VIOLATION')).slice(0, 5),
      ].join(' | ');
};

/** Threads of `pid` with a real-time scheduling policy (field 41 of /proc/PID/task/TID/stat, proc(5)). */
const realtimeThreads = (pid: number): number[] =>
  readdirSync(`/proc/${pid}/task`)
    .map(Number)
    .filter((tid) => {
      try {
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[38]) !== 0;
      } catch {
        return false; // the thread has ended
      }
    });

const statusLines = (text: string) =>
  [...text.matchAll(/soak: t=(\d+)s ticks=(\d+)[^\n]*maxgap=(\d+)us/g)].map(
    (m) => m.slice(1).map(Number) as [number, number, number],
  );

kvmTest(
  `soak on 2 vCPUs migrates ${HOPS} times back and forth between two network namespaces over TCP, no violation`,
  async () => {
    const { dir, cleanup } = tempDir('netns');
    const pair = createNetnsPair();
    const peers: Peer[] = [];
    try {
      const sock = (i: number) => join(dir, `qmp-${i}.sock`);
      let cur = startPeer(pair.names[0], { kind: 'boot', cmdline: `soak ${HOPS * 2 + 6}s`, vcpus: 2, qmp: sock(0) });
      peers.push(cur);
      const waitStatus = async (p: Peer, n: number, ms: number) => {
        const t0 = Date.now();
        while (statusLines(p.out()).length < n) {
          if (Date.now() - t0 > ms)
            throw new Error(`no soak status line ${n} in ${ms} ms:\n${p.out().slice(-1500)}\n${p.err().slice(-1500)}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      };
      await waitStatus(cur, 1, 10000);
      const downtimes: number[] = [];
      for (let hop = 1; hop <= HOPS; hop++) {
        const side = hop % 2; // 1: into namespace b, 0: back into a
        const port = 47100 + hop;
        const next = startPeer(pair.names[side]!, {
          kind: 'receive',
          listen: `tcp:${NS_ADDR[side]}:${port}`,
          qmp: sock(hop),
        });
        peers.push(next);
        await next.waitErr(/waiting for a guest/, 10000);
        const before = statusLines(cur.out()).at(-1)!;
        const client = await QmpClient.connect(sock(hop - 1), { commandTimeoutMs: 60000 });
        let r: JsonObject;
        try {
          r = (await client.execute('migrate', { uri: `tcp:${NS_ADDR[side]}:${port}` })) as JsonObject;
        } finally {
          client.close();
        }
        assert.is(r['status'], 'completed');
        assert.is(await cur.exit, 0, `source of hop ${hop} ends with 0 after the migration: ${cur.err().slice(-500)}`);
        assert.not.match(cur.out(), /VIOLATION/, `hop ${hop} source: ${violations(cur.out())}`);
        await waitStatus(next, 1, 10000);
        const after = statusLines(next.out())[0]!;
        assert.equal(
          realtimeThreads(next.child.pid!),
          [],
          `hop ${hop}: no thread of the destination stays real-time once the guest runs there`,
        );
        const guestPause = Number(r['guestDowntimeMs']);
        assert.ok(
          guestPause > 0 && guestPause <= Number(r['downtimeMs']),
          `hop ${hop}: the destination reported its share (guest paused ${guestPause} ms)`,
        );
        assert.ok(
          after[0] >= before[0] && after[1] > before[1],
          `hop ${hop}: counters continue (t ${before[0]} → ${after[0]}, ticks ${before[1]} → ${after[1]})`,
        );
        downtimes.push(Number(r['downtimeMs']));
        console.log(
          `  hop ${hop} ${pair.names[1 - side]} → ${pair.names[side]}: total ${Number(r['totalMs']).toFixed(0)} ms, downtime ${Number(r['downtimeMs']).toFixed(1)} ms (guest paused ${Number(r['guestDowntimeMs']).toFixed(1)}), ${(Number(r['bytes']) / (1 << 20)).toFixed(1)} MiB, ${r['rounds']} rounds; guest's max tick gap ${(after[2] / 1000).toFixed(1)} ms`,
        );
        cur = next;
      }
      assert.is(await cur.exit, 0, cur.err().slice(-1000));
      assert.ok(cur.out().includes('RESULT: PASS'), cur.out().slice(-1500));
      assert.not.match(cur.out(), /VIOLATION/, `last destination: ${violations(cur.out())}`);
      const sorted = [...downtimes].sort((x, y) => x - y);
      console.log(
        `  downtime over ${HOPS} hops: median ${sorted[sorted.length >> 1]!.toFixed(1)} ms, max ${sorted.at(-1)!.toFixed(1)} ms`,
      );
    } finally {
      for (const p of peers) p.child.kill('SIGKILL');
      await Promise.all(peers.map((p) => p.exit));
      pair.cleanup();
      cleanup();
    }
  },
);

test.run();
