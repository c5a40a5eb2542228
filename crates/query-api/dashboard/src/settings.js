// Settings (management): thresholds and limits, applied by every service without restart.

import { can, get, post } from './api.js';
import { describeError, formatTime, h, replace } from './dom.js';

export async function settingsView(root) {
  const { settings } = await get('/api/v1/config');
  const editable = can('write:config');
  replace(root,
    h('h1', {}, 'Settings'),
    h('p', { class: 'muted' }, editable ? 'Changes apply to the next reading, without restarts.' : 'Read only for your role.'),
    h('table', { class: 'settings' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Setting'), h('th', {}, 'Value'), h('th', {}, 'Default'), h('th', {}, 'Changed'))),
      h('tbody', {}, settings.map((s) => settingRow(s, editable)))));
}

function settingRow(setting, editable) {
  const unit = setting.unit ? ` ${setting.unit}` : '';
  const kind = setting.kind ?? {};
  const message = h('span', { class: 'form-message' });
  const input = kind.type === 'boolean'
    ? h('input', { type: 'checkbox', name: setting.name, checked: Boolean(setting.value), disabled: !editable })
    : h('input', { type: 'number', name: setting.name, value: setting.value, min: kind.min, max: kind.max,
      step: kind.type === 'integer' ? 1 : 'any', disabled: !editable, required: true });
  const save = editable ? h('button', { type: 'submit', dataset: { control: 'config' } }, 'Save') : null;
  const form = h('form', { class: 'setting-form' }, input, unit, save, message);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const value = kind.type === 'boolean' ? input.checked : Number(input.value);
    try {
      await post('/api/v1/config/update', { setting_name: setting.name, setting_value: value });
      message.textContent = 'Saved.';
    } catch (err) {
      message.textContent = describeError(err);
    }
  });
  return h('tr', { dataset: { setting: setting.name } },
    h('td', {}, h('strong', {}, setting.name), h('div', { class: 'muted' }, setting.description)),
    h('td', {}, form),
    h('td', { class: 'muted' }, `${setting.default}${unit}`),
    h('td', { class: 'muted' }, setting.updated_at ? formatTime(setting.updated_at) : '—'));
}
