// A one-line progress bar with throughput, drawn on stderr only when it is
// a terminal (scripts and logs get nothing but the final summary).
const WIDTH = 30;

export class ProgressBar {
  private readonly tty = process.stderr.isTTY === true;
  private readonly t0 = performance.now();
  private last = 0;
  private drawn = false;

  constructor(
    private readonly label: string,
    private readonly unit = 'MiB',
  ) {}

  /** `done` and `total` in bytes. */
  update(done: number, total: number): void {
    if (!this.tty || total <= 0) return;
    const now = performance.now();
    if (now - this.last < 100 && done < total) return;
    this.last = now;
    const frac = Math.min(1, done / total);
    const full = Math.round(frac * WIDTH);
    const mib = (n: number) => (n / (1 << 20)).toFixed(0);
    const rate = done / (1 << 20) / Math.max((now - this.t0) / 1000, 1e-3);
    process.stderr.write(
      `\r${this.label} [${'#'.repeat(full)}${'.'.repeat(WIDTH - full)}] ${(frac * 100).toFixed(0).padStart(3)}% ${mib(done)}/${mib(total)} ${this.unit} ${rate.toFixed(0)} ${this.unit}/s`,
    );
    this.drawn = true;
  }

  /** Ends the line so later output starts clean. */
  done(): void {
    if (this.drawn) process.stderr.write('\n');
    this.drawn = false;
  }
}
