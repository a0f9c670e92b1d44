// Xen's names for virtual IRQ numbers (xen/include/public/xen.h), kept in one
// table so every place that shows a VIRQ to a person (QMP, ctl, logs) agrees.

/** Xen's NR_VIRQS; also exported by vcpu/state.ts for the state layout. */
const VIRQ_COUNT = 24;

/** Index = VIRQ number. Numbers Xen leaves unnamed (5, 14..23) are absent. */
const NAMES: ReadonlyMap<number, string> = new Map([
  [0, 'VIRQ_TIMER'],
  [1, 'VIRQ_DEBUG'],
  [2, 'VIRQ_CONSOLE'],
  [3, 'VIRQ_DOM_EXC'],
  [4, 'VIRQ_TBUF'],
  [6, 'VIRQ_DEBUGGER'],
  [7, 'VIRQ_XENOPROF'],
  [8, 'VIRQ_CON_RING'],
  [9, 'VIRQ_PCPU_STATE'],
  [10, 'VIRQ_MEM_EVENT'],
  [11, 'VIRQ_ARGO'],
  [12, 'VIRQ_ENOMEM'],
  [13, 'VIRQ_XENPMU'],
]);

/** `VIRQ_TIMER` for 0; `VIRQ_<n>` for a number Xen gives no name. */
export function virqName(virq: number): string {
  return NAMES.get(virq) ?? `VIRQ_${virq}`;
}

/** True for 0 <= virq < 24, the numbers EVTCHNOP_bind_virq accepts. */
export function isValidVirq(virq: number): boolean {
  return Number.isInteger(virq) && virq >= 0 && virq < VIRQ_COUNT;
}
