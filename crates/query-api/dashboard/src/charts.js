// One uPlot chart per metric. The element carries data-points and data-last-value so a
// person (and the browser test) can see what the canvas was given.

/* global uPlot */

const COLORS = { temperature: '#d9480f', pressure: '#1971c2', speed: '#2b8a3e' };

export class MetricChart {
  constructor(container, metric, { aggregated, windowSeconds }) {
    this.container = container;
    this.metric = metric;
    this.aggregated = aggregated;
    this.windowSeconds = windowSeconds;
    this.columns = aggregated ? [[], [], [], []] : [[], []];
    const series = [{}, { label: `${metric.label} (${metric.unit})`, stroke: COLORS[metric.key], width: 2 }];
    if (aggregated) {
      series.push({ label: 'min', stroke: COLORS[metric.key], width: 1, dash: [4, 4] });
      series.push({ label: 'max', stroke: COLORS[metric.key], width: 1, dash: [4, 4] });
    }
    // Every chart spans its whole window up to now: live points walk in from the right, and
    // a window with few buckets is not stretched over years.
    const x = { time: true, range: () => { const now = Date.now() / 1000; return [now - windowSeconds, now]; } };
    this.plot = new uPlot(
      { width: this.width(), height: 220, series, scales: { x }, axes: [{}, { size: 60 }] },
      this.columns,
      container,
    );
    this.resize = new ResizeObserver(() => this.plot.setSize({ width: this.width(), height: 220 }));
    this.resize.observe(container);
    this.mark();
  }

  width() {
    // The box's own width less its padding: sizing to clientWidth itself would feed back.
    const style = getComputedStyle(this.container);
    const padding = parseFloat(style.paddingLeft) + parseFloat(style.paddingRight);
    return Math.max(320, (this.container.clientWidth || 600) - padding);
  }

  /** Rows from the history API: `timestamp`, `<metric>` and, aggregated, `<metric>_min/_max`. */
  setHistory(rows) {
    const key = this.metric.key;
    this.lastValue = undefined;
    const usable = rows.filter((row) => row[key] !== undefined && row[key] !== null);
    this.columns[0] = usable.map((row) => Date.parse(row.timestamp) / 1000);
    this.columns[1] = usable.map((row) => row[key]);
    if (this.aggregated) {
      this.columns[2] = usable.map((row) => row[`${key}_min`] ?? null);
      this.columns[3] = usable.map((row) => row[`${key}_max`] ?? null);
    }
    this.redraw();
  }

  /** A live raw reading; ignored by aggregated charts, whose buckets come from history. */
  append(timeMs, value) {
    if (this.aggregated || value === undefined || value === null) return;
    const t = timeMs / 1000;
    const [xs, ys] = this.columns;
    let at = xs.length;
    while (at > 0 && xs[at - 1] > t) at--;
    if (at > 0 && xs[at - 1] === t) ys[at - 1] = value;
    else {
      xs.splice(at, 0, t);
      ys.splice(at, 0, value);
    }
    const oldest = Date.now() / 1000 - this.windowSeconds;
    let drop = 0;
    while (drop < xs.length && xs[drop] < oldest) drop++;
    if (drop) {
      xs.splice(0, drop);
      ys.splice(0, drop);
    }
    this.lastValue = value;
    this.redraw();
  }

  redraw() {
    this.plot.setData(this.columns);
    this.mark();
  }

  mark() {
    const ys = this.columns[1];
    this.container.dataset.points = String(ys.length);
    const last = this.lastValue ?? ys[ys.length - 1];
    if (last === undefined) delete this.container.dataset.lastValue;
    else this.container.dataset.lastValue = String(last);
  }

  destroy() {
    this.resize.disconnect();
    this.plot.destroy();
  }
}
