// `cpu/xen_vcpu`: the guest's Xen registrations for one vCPU, its VIRQ
// bindings by name, and its timers.  The single-shot timer is an absolute
// guest time; it is shown with the time left relative to `xen_time.guest_ns`
// (the guest time at the save), which is what a restore re-arms it for.
import { isRecord } from '../vmstate/values.js';
import type { JsonValue, StateRecord } from '../vmstate/index.js';
import { virqName } from '../xen/evtchn/virq-names.js';
import { INVALID_GPA } from '../xen/vcpu/state.js';
import type { InspectContext, SectionView, ViewOutput } from './context.js';
import type { DecodedSection } from './decode.js';
import { durationText, hex, keyValues, nsText, type Style } from './text.js';

const GPAS = [
  'xen_vcpu_info_gpa',
  'xen_vcpu_info_default_gpa',
  'xen_vcpu_time_info_gpa',
  'xen_vcpu_runstate_gpa',
] as const;

const gpaText = (v: unknown): string => (v === INVALID_GPA ? 'none' : typeof v === 'bigint' ? hex(v) : '-');

/** Guest time at the save, from `xen_time`, if the file has it. */
export function savedGuestNs(ctx: InspectContext): bigint | null {
  const v = ctx.get('xen_time')?.state?.['guest_ns'];
  return typeof v === 'bigint' ? v : null;
}

export interface TimerInfo {
  armed: boolean;
  /** Absolute guest time (ns) it fires at. */
  at: bigint;
  /** `at - xen_time.guest_ns`; negative when it was already due at the save; null without xen_time. */
  remaining: bigint | null;
}

export function singleShot(ctx: InspectContext, x: StateRecord): TimerInfo | null {
  const at = x['xen_singleshot_timer_ns'];
  if (typeof at !== 'bigint') return null;
  const now = savedGuestNs(ctx);
  return { armed: at !== 0n, at, remaining: at !== 0n && now !== null ? at - now : null };
}

function boundVirqs(x: StateRecord): { virq: number; name: string; port: number }[] {
  const list = x['xen_virq'];
  if (!Array.isArray(list)) return [];
  return list.flatMap((port, virq) =>
    typeof port === 'number' && port !== 0 ? [{ virq, name: virqName(virq), port }] : [],
  );
}

function timerText(t: TimerInfo | null): string {
  if (t === null) return '-';
  if (!t.armed) return 'not armed';
  const abs = `fires at ${nsText(t.at)} guest time`;
  if (t.remaining === null) return `${abs} (no xen_time section: time left unknown)`;
  return t.remaining >= 0n
    ? `${abs}, ${durationText(t.remaining)} after the save`
    : `${abs}, overdue by ${durationText(-t.remaining)} at the save`;
}

export function renderXenVcpu(ctx: InspectContext, x: StateRecord, indent: string): string[] {
  const period = x['xen_periodic_timer_period'];
  const vec = x['xen_vcpu_callback_vector'];
  const pairs: [string, string][] = [
    ...GPAS.map((k) => [k.replace(/^xen_vcpu_/, ''), gpaText(x[k])] as [string, string]),
    ['callback vector', typeof vec === 'number' ? (vec === 0 ? 'none (via HVM_PARAM_CALLBACK_IRQ)' : hex(vec)) : '-'],
    ['single-shot timer', timerText(singleShot(ctx, x))],
    [
      'periodic timer',
      typeof period === 'bigint' ? (period === 0n ? 'stopped' : `every ${durationText(period)}`) : '-',
    ],
  ];
  const virqs = boundVirqs(x);
  const out = keyValues(pairs, indent);
  if (!Array.isArray(x['xen_virq'])) return out;
  out.push(
    `${indent}VIRQs bound: ${virqs.length === 0 ? 'none' : virqs.map((v) => `${v.name} → port ${v.port}`).join(', ')}`,
  );
  return out;
}

export function xenVcpuJson(ctx: InspectContext, x: StateRecord): JsonValue {
  const t = singleShot(ctx, x);
  const period = x['xen_periodic_timer_period'];
  return {
    ...Object.fromEntries(
      GPAS.map((k) => [k, x[k] === INVALID_GPA ? null : typeof x[k] === 'bigint' ? hex(x[k] as bigint) : null]),
    ),
    virqs: boundVirqs(x),
    singleshot_timer:
      t === null
        ? null
        : {
            armed: t.armed,
            at_ns: t.at.toString(),
            remaining_ns: t.remaining === null ? null : t.remaining.toString(),
          },
    periodic_timer_ns: typeof period === 'bigint' ? period.toString() : null,
  };
}

/** `--section cpu/xen_vcpu` (or `cpu[1]/xen_vcpu`): just the Xen part of the selected vCPUs. */
export const xenVcpuView: SectionView = {
  async render(ctx: InspectContext, sections: readonly DecodedSection[], st: Style): Promise<ViewOutput> {
    const lines: string[] = [];
    const view: JsonValue[] = [];
    const now = savedGuestNs(ctx);
    if (now !== null) lines.push(`guest time at the save: ${nsText(now)} (xen_time.guest_ns)`, '');
    for (const d of sections) {
      const x = d.state?.['xen_vcpu'];
      const label = `${ctx.label(d.name, d.instance)}/xen_vcpu`;
      if (!isRecord(x)) {
        lines.push(`${label}: not present`, '');
        continue;
      }
      lines.push(st.bold(label), ...renderXenVcpu(ctx, x, '  '), '');
      view.push({ section: label, ...(xenVcpuJson(ctx, x) as { [k: string]: JsonValue }) });
    }
    while (lines[lines.length - 1] === '') lines.pop();
    return { view, lines };
  },
};
