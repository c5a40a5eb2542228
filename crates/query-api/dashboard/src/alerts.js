// Alerts: the shared table (used on the machine page too) and the alerts page.

import { can, getAll, post } from './api.js';
import { describeError, formatTime, formatValue, h, replace } from './dom.js';
import { openStream } from './live.js';

/** A table of alerts; acknowledge buttons only for roles that may (the API checks again). */
export function alertTable(alerts, { machineNames = new Map(), onChange = () => {} } = {}) {
  if (alerts.length === 0) return h('p', { class: 'muted empty-alerts' }, 'No alerts.');
  const mayAck = can('ack:alerts');
  return h('table', { class: 'alerts' },
    h('thead', {}, h('tr', {},
      h('th', {}, 'Severity'), h('th', {}, 'Machine'), h('th', {}, 'Metric'), h('th', { class: 'num' }, 'Value'),
      h('th', { class: 'num' }, 'Threshold'), h('th', { class: 'num' }, 'Count'), h('th', {}, 'First seen'),
      h('th', {}, 'Last seen'), h('th', {}, 'State'), h('th', {}, 'Acknowledged'))),
    h('tbody', {}, alerts.map((alert) => h('tr', { class: `alert-row sev-${alert.severity}${alert.closed_at ? ' closed' : ''}`, dataset: { alertId: alert.id, metric: alert.metric, severity: alert.severity } },
      h('td', {}, h('span', { class: `badge sev-${alert.severity}` }, alert.severity)),
      h('td', {}, h('a', { href: `#/machine/${alert.machine_id}` }, machineNames.get(alert.machine_id) ?? alert.machine_id.slice(0, 8))),
      h('td', {}, alert.metric),
      h('td', { class: 'num' }, formatValue(alert.value)),
      h('td', { class: 'num' }, formatValue(alert.threshold)),
      h('td', { class: 'num' }, alert.count),
      h('td', {}, formatTime(alert.first_seen)),
      h('td', {}, formatTime(alert.last_seen)),
      h('td', {}, alert.closed_at ? `closed ${formatTime(alert.closed_at)}` : 'open'),
      h('td', {}, alert.acknowledged_at ? h('span', { class: 'acked', title: `by user ${alert.acknowledged_by}` }, `✓ ${formatTime(alert.acknowledged_at)}`)
        : mayAck ? ackButton(alert, onChange) : h('span', { class: 'muted' }, 'no')),
    ))));
}

function ackButton(alert, onChange) {
  const button = h('button', { type: 'button', class: 'ack', dataset: { control: 'ack' } }, 'Acknowledge');
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      const { alert: updated } = await post(`/api/v1/alerts/${alert.id}/ack`);
      onChange(updated);
    } catch (err) {
      button.disabled = false;
      button.title = describeError(err);
      button.textContent = 'Retry acknowledge';
    }
  });
  return button;
}

export async function alertsView(root, params) {
  const state = params.get('state') ?? 'open';
  const severity = params.get('severity') ?? '';
  const [machines, alerts] = await Promise.all([
    getAll('/api/v1/machines', 'machines'),
    getAll(`/api/v1/alerts?state=${state}${severity ? `&severity=${severity}` : ''}`, 'alerts', 200),
  ]);
  const names = new Map(machines.map((m) => [m.id, m.name]));
  const list = h('div', {});
  const byId = new Map(alerts.map((a) => [a.id, a]));
  const render = () => {
    const shown = [...byId.values()]
      .filter((a) => state === 'all' || (state === 'open') === !a.closed_at)
      .filter((a) => !severity || a.severity === severity)
      .sort((a, b) => b.last_seen.localeCompare(a.last_seen));
    replace(list, alertTable(shown, { machineNames: names, onChange: (a) => { byId.set(a.id, a); render(); } }));
  };
  const filterLink = (key, value, label, current) =>
    h('a', { href: `#/alerts?${new URLSearchParams({ state, severity, [key]: value })}`, class: current === value ? 'current' : '' }, label);
  replace(root,
    h('h1', {}, 'Alerts'),
    h('p', { class: 'filters' },
      filterLink('state', 'open', 'Open', state), ' · ', filterLink('state', 'closed', 'Closed', state), ' · ',
      filterLink('state', 'all', 'All', state), ' | ', filterLink('severity', '', 'Any severity', severity), ' · ',
      filterLink('severity', 'warning', 'Warning', severity), ' · ', filterLink('severity', 'critical', 'Critical', severity)),
    list);
  render();
  return openStream({}, {
    alert({ alert }) {
      byId.set(alert.id, alert);
      render();
    },
  });
}
