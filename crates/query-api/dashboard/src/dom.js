// Tiny DOM helpers. Text always goes in through textContent, so data can never become markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(name, '');
    else el.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

export const METRICS = [
  { key: 'temperature', label: 'Temperature', unit: '°C' },
  { key: 'pressure', label: 'Pressure', unit: 'kPa' },
  { key: 'speed', label: 'Speed', unit: 'rpm' },
];

export function formatValue(value) {
  if (value === undefined || value === null || Number.isNaN(value)) return '—';
  return Number(value).toFixed(Math.abs(value) >= 1000 ? 0 : 1);
}

export function timeAgo(iso) {
  if (!iso) return 'never';
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ago`;
  return `${Math.floor(seconds / 86400)}d ago`;
}

export function formatTime(iso) {
  return iso ? new Date(iso).toLocaleString() : '—';
}

const SEVERITY_RANK = { critical: 2, warning: 1 };

/** The worst severity among open alerts, or 'ok'. */
export function worstSeverity(alerts) {
  let worst = 'ok';
  for (const alert of alerts) {
    if ((SEVERITY_RANK[alert.severity] ?? 0) > (SEVERITY_RANK[worst] ?? 0)) worst = alert.severity;
  }
  return worst;
}

/** A message line for an API failure, with the field errors the API listed. */
export function describeError(err) {
  const details = err.body?.errors?.map((e) => `${e.field ?? e.parameter}: ${e.error ?? e.message}`) ?? [];
  return [err.message, ...details].join(' — ');
}
