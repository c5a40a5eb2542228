// Fleet overview: every machine with status, location, latest values and open alerts,
// coloured by its worst open alert; kept current by the fleet-wide stream.

import { can, get, getAll, post } from './api.js';
import { describeError, formatValue, h, METRICS, replace, timeAgo, worstSeverity } from './dom.js';
import { openStream } from './live.js';

export async function fleetView(root) {
  // The fleet's latest values come with each machine's registry entry.
  const [latest, alerts] = await Promise.all([
    get('/api/v1/data/latest'),
    getAll('/api/v1/alerts?state=open', 'alerts'),
  ]);
  const machines = latest.machines.map((entry) => entry.machine);
  const latestById = new Map(latest.machines.map((entry) => [entry.machine.id, entry.latest ?? {}]));
  // Sparkplug presence: { online, since }, or none for machines that never spoke Sparkplug.
  const presenceById = new Map(latest.machines
    .filter((entry) => entry.online !== null && entry.online !== undefined)
    .map((entry) => [entry.machine.id, { online: entry.online, since: entry.online_since }]));
  const alertsById = new Map();
  for (const alert of alerts) alertsById.set(alert.id, alert);
  const rows = new Map();

  const openAlertsOf = (machineId) => [...alertsById.values()].filter((a) => a.machine_id === machineId);

  const renderRow = (machine) => {
    const values = latestById.get(machine.id) ?? {};
    const open = openAlertsOf(machine.id);
    const severity = worstSeverity(open);
    const newest = METRICS.map((m) => values[m.key]?.timestamp).filter(Boolean).sort().pop();
    const row = h('tr', { class: `machine-row sev-${severity} status-${machine.status}`, dataset: { machineId: machine.id, severity } },
      h('td', {}, h('a', { href: `#/machine/${machine.id}` }, machine.name)),
      h('td', {}, machine.location),
      h('td', { class: 'sensor-type' }, machine.sensor_type),
      h('td', {}, h('span', { class: `status status-${machine.status}` }, machine.status)),
      onlineCell(presenceById.get(machine.id)),
      METRICS.map((m) => h('td', { class: 'num', dataset: { metric: m.key } }, formatValue(values[m.key]?.value))),
      h('td', { class: 'muted' }, timeAgo(newest)),
      h('td', {}, open.length === 0 ? h('span', { class: 'muted' }, 'none')
        : open.map((a) => h('span', { class: `badge sev-${a.severity}` }, `${a.metric} ${a.severity}`))),
    );
    rows.get(machine.id)?.replaceWith(row);
    rows.set(machine.id, row);
    return row;
  };

  const table = h('table', { class: 'fleet' },
    h('thead', {}, h('tr', {},
      h('th', {}, 'Machine'), h('th', {}, 'Location'), h('th', {}, 'Sensors'), h('th', {}, 'Status'),
      h('th', {}, 'Online'),
      METRICS.map((m) => h('th', { class: 'num' }, `${m.label} (${m.unit})`)),
      h('th', {}, 'Last reading'), h('th', {}, 'Open alerts'))),
    h('tbody', {}, machines.map(renderRow)));

  const byId = new Map(machines.map((m) => [m.id, m]));
  replace(root,
    h('h1', {}, 'Fleet'),
    h('p', { class: 'muted' }, `${machines.length} machines, ${alerts.length} open alerts`),
    table,
    can('write:machines') ? addMachineForm(byId, (machine) => table.tBodies[0].append(renderRow(machine))) : null);

  return openStream({}, {
    reading(message) {
      const values = latestById.get(message.machine_id) ?? {};
      for (const reading of message.readings) {
        const timestamp = new Date(reading.time_ms).toISOString();
        for (const m of METRICS) {
          if (reading[m.key] !== undefined && !(values[m.key]?.timestamp > timestamp)) {
            values[m.key] = { value: reading[m.key], timestamp };
          }
        }
      }
      latestById.set(message.machine_id, values);
      const machine = byId.get(message.machine_id);
      if (machine) renderRow(machine);
    },
    alert({ alert }) {
      if (alert.closed_at) alertsById.delete(alert.id);
      else alertsById.set(alert.id, alert);
      const machine = byId.get(alert.machine_id);
      if (machine) renderRow(machine);
    },
    presence({ machine_id: machineId, online, since }) {
      const known = presenceById.get(machineId);
      if (known && known.since > since) return;
      presenceById.set(machineId, { online, since });
      const machine = byId.get(machineId);
      if (machine) renderRow(machine);
    },
    reset() {
      window.dispatchEvent(new HashChangeEvent('hashchange'));
    },
  });
}

// Online or offline, as the machine's Sparkplug edge node last said, and since when.
function onlineCell(presence) {
  if (!presence) return h('td', { class: 'muted', title: 'not a Sparkplug machine' }, '—');
  const word = presence.online ? 'online' : 'offline';
  return h('td', { dataset: { online: String(presence.online) } },
    h('span', { class: `presence presence-${word}`, title: `since ${presence.since}` }, word),
    ' ', h('span', { class: 'muted' }, timeAgo(presence.since)));
}

function addMachineForm(byId, added) {
  const message = h('span', { class: 'form-message' });
  const form = h('form', { class: 'inline-form', dataset: { control: 'machine-create' } },
    h('h2', {}, 'Register a machine'),
    h('input', { name: 'name', placeholder: 'Name', required: true, maxlength: 255 }),
    h('input', { name: 'location', placeholder: 'Location', required: true, maxlength: 255 }),
    h('input', { name: 'sensor_type', placeholder: 'Sensor type, e.g. Vibration', 'aria-label': 'Sensor type', required: true, maxlength: 64 }),
    h('input', { name: 'factory_id', placeholder: 'Factory (optional)', maxlength: 64 }),
    h('button', { type: 'submit' }, 'Register'),
    message);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    if (!data.factory_id) delete data.factory_id;
    try {
      const { machine } = await post('/api/v1/machines', data);
      byId.set(machine.id, machine);
      added(machine);
      form.reset();
      message.textContent = `Registered ${machine.name}.`;
    } catch (err) {
      message.textContent = describeError(err);
    }
  });
  return form;
}
