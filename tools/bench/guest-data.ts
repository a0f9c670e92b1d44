// The machine-readable lines the test guest's bench programs print
// (fixtures/guest/prog/bench.c, evlat.c, timer.c):
//   bench-data: tsc_khz=<k>
//   bench-data: <key> <name>=<number> ...
// Other console lines are for people and are ignored here.

export interface GuestData {
  /** TSC frequency from the guest's pvclock scale; 0 when the guest did not know it. */
  tscKhz: number;
  /** key -> its name=value pairs, in the order printed (a repeated key keeps the last). */
  raw: Map<string, Record<string, number>>;
}

export function parseGuestData(text: string): GuestData {
  const raw = new Map<string, Record<string, number>>();
  let tscKhz = 0;
  for (const line of text.split('\n')) {
    const m = /^bench-data: (.*)$/.exec(line.trim());
    if (!m) continue;
    const tsc = /^tsc_khz=(\d+)/.exec(m[1]!);
    if (tsc) {
      tscKhz = Number(tsc[1]);
      continue;
    }
    const [key, ...pairs] = m[1]!.split(/\s+/);
    const rec: Record<string, number> = {};
    for (const p of pairs) {
      const [k, v] = p.split('=');
      if (k && v !== undefined) rec[k] = Number(v);
    }
    raw.set(key!, rec);
  }
  return { tscKhz, raw };
}
