// One machine: latest values, live charts with a history range, its alerts, and the
// registry form for roles that may edit it.

import { alertTable } from './alerts.js';
import { can, get, request } from './api.js';
import { describeError, formatValue, h, METRICS, replace, timeAgo } from './dom.js';
import { MetricChart } from './charts.js';
import { openStream } from './live.js';

const RANGES = [
  { key: 'hour', label: 'Last hour', seconds: 3600, interval: 'raw' },
  { key: 'day', label: 'Day (5 min)', seconds: 86400, interval: '5m' },
  { key: 'week', label: 'Week (1 h)', seconds: 7 * 86400, interval: '1h' },
  { key: 'month', label: 'Month (1 day)', seconds: 30 * 86400, interval: '1d' },
];
// A raw hour is at most this many pages of 10,000 readings.
const MAX_RAW_PAGES = 5;

export async function machineView(root, params, id) {
  const range = RANGES.find((r) => r.key === params.get('range')) ?? RANGES[0];
  const [{ machine, latest }, alerts] = await Promise.all([
    get(`/api/v1/data/machine/${id}/latest`),
    get(`/api/v1/alerts?machine_id=${id}&state=all&limit=50`).then((body) => body.alerts),
  ]);
  // The sensor type is the plant's own label: chart what the machine reports, else the metric
  // its label names, else all three.
  const reported = METRICS.filter((m) => latest?.[m.key]);
  const named = METRICS.filter((m) => m.key === machine.sensor_type.toLowerCase());
  const metrics = reported.length ? reported : named.length ? named : METRICS;
  const values = { ...latest };
  const alertsById = new Map(alerts.map((a) => [a.id, a]));

  const cards = h('div', { class: 'cards' });
  const renderCards = () => replace(cards, metrics.map((m) => h('div', { class: 'card', dataset: { metric: m.key } },
    h('div', { class: 'card-label' }, `${m.label} (${m.unit})`),
    h('div', { class: 'card-value' }, formatValue(values[m.key]?.value)),
    h('div', { class: 'muted' }, timeAgo(values[m.key]?.timestamp)))));
  const alertList = h('div', { id: 'machine-alerts' });
  const renderAlerts = () => {
    const sorted = [...alertsById.values()].sort((a, b) => b.last_seen.localeCompare(a.last_seen));
    replace(alertList, alertTable(sorted, {
      machineNames: new Map([[machine.id, machine.name]]),
      onChange: (a) => { alertsById.set(a.id, a); renderAlerts(); },
    }));
  };

  const chartBoxes = metrics.map((m) => h('div', { class: 'chart', dataset: { metric: m.key } }));
  const rangeLinks = RANGES.map((r) => h('a', { href: `#/machine/${id}?range=${r.key}`, class: r === range ? 'current' : '', dataset: { range: r.key } }, r.label));
  replace(root,
    h('p', {}, h('a', { href: '#/' }, '← Fleet')),
    h('h1', {}, machine.name, ' ', h('span', { class: `status status-${machine.status}` }, machine.status)),
    h('p', { class: 'muted' }, `${machine.location} · factory ${machine.factory_id} · ${machine.sensor_type} sensors · ${machine.id}`),
    cards,
    h('h2', {}, 'History ', h('span', { class: 'ranges' }, rangeLinks)),
    h('div', { class: 'charts' }, chartBoxes),
    h('h2', {}, 'Alerts'),
    alertList,
    can('write:machines') ? registryForm(machine) : null);
  renderCards();
  renderAlerts();

  const windowSeconds = range.seconds;
  const charts = metrics.map((m, i) => new MetricChart(chartBoxes[i], m, { aggregated: range.interval !== 'raw', windowSeconds }));
  const pending = [];
  let historyLoaded = false;
  const close = openStream({ machine_id: id }, {
    reading(message) {
      for (const reading of message.readings) {
        const timestamp = new Date(reading.time_ms).toISOString();
        for (const m of metrics) {
          if (reading[m.key] === undefined) continue;
          if (!(values[m.key]?.timestamp > timestamp)) values[m.key] = { value: reading[m.key], timestamp };
        }
        // Readings that arrive while history loads are applied after it.
        if (historyLoaded) charts.forEach((c) => c.append(reading.time_ms, reading[c.metric.key]));
        else pending.push(reading);
      }
      renderCards();
    },
    alert({ alert }) {
      alertsById.set(alert.id, alert);
      renderAlerts();
    },
  });
  try {
    const rows = await history(id, range);
    charts.forEach((c) => c.setHistory(rows));
  } catch (err) {
    root.prepend(h('p', { class: 'error' }, `History unavailable: ${describeError(err)}`));
  }
  historyLoaded = true;
  for (const reading of pending.splice(0)) charts.forEach((c) => c.append(reading.time_ms, reading[c.metric.key]));
  return () => {
    close();
    charts.forEach((c) => c.destroy());
  };
}

async function history(id, range) {
  const end = new Date();
  const start = new Date(end.getTime() - range.seconds * 1000);
  const params = new URLSearchParams({ start_time: start.toISOString(), end_time: end.toISOString(), interval: range.interval });
  // The largest page: raw pages follow the cursor; a range's buckets fit in one.
  params.set('limit', '10000');
  if (range.interval !== 'raw') params.set('agg', 'mean,min,max');
  const rows = [];
  for (let page = 0; page < MAX_RAW_PAGES; page++) {
    const body = await get(`/api/v1/data/machine/${id}?${params}`);
    rows.push(...body.data);
    if (!body.pagination?.next_cursor) break;
    params.set('cursor', body.pagination.next_cursor);
  }
  return rows;
}

function registryForm(machine) {
  const message = h('span', { class: 'form-message' });
  const field = (name, label, input) => h('label', {}, label, input);
  const select = (name, options, current) =>
    h('select', { name }, options.map((o) => h('option', { value: o, selected: o === current }, o)));
  const form = h('form', { class: 'registry-form', dataset: { control: 'machine-edit' } },
    h('h2', {}, 'Registry'),
    field('name', 'Name', h('input', { name: 'name', value: machine.name, required: true, maxlength: 255 })),
    field('location', 'Location', h('input', { name: 'location', value: machine.location, required: true, maxlength: 255 })),
    field('status', 'Status', select('status', ['active', 'inactive', 'maintenance', 'error'], machine.status)),
    field('sensor_type', 'Sensors', h('input', { name: 'sensor_type', value: machine.sensor_type, required: true, maxlength: 64 })),
    h('button', { type: 'submit' }, 'Save'),
    message);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const changes = Object.fromEntries(new FormData(form));
    try {
      // The version the user is looking at: a concurrent edit gives 412, not a silent overwrite.
      const etag = `"v${machine.version}"`;
      await request('PATCH', `/api/v1/machines/${machine.id}`, { body: changes, headers: { 'if-match': etag } });
      message.textContent = 'Saved.';
      window.dispatchEvent(new HashChangeEvent('hashchange'));
    } catch (err) {
      message.textContent = describeError(err);
    }
  });
  return form;
}
