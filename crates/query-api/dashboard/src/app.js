// Plantline dashboard: login, then hash routes — #/ fleet, #/machine/<id>, #/alerts,
// #/settings. Each view returns a cleanup (closing its stream) run when the route changes.

import { alertsView } from './alerts.js';
import { can, currentUser, login, logout, whenSignedOut } from './api.js';
import { describeError, h, replace } from './dom.js';
import { fleetView } from './fleet.js';
import { machineView } from './machine.js';
import { settingsView } from './settings.js';

const view = document.getElementById('view');
let cleanup = null;
let generation = 0;

function route() {
  const [path, query = ''] = location.hash.replace(/^#/, '').split('?');
  const params = new URLSearchParams(query);
  const machine = path.match(/^\/machine\/([0-9a-fA-F-]{36})$/);
  if (machine) return (root) => machineView(root, params, machine[1]);
  if (path === '/alerts') return (root) => alertsView(root, params);
  if (path === '/settings' && can('read:config')) return (root) => settingsView(root);
  return (root) => fleetView(root);
}

async function render() {
  const mine = ++generation;
  cleanup?.();
  cleanup = null;
  if (!currentUser()) {
    showLogin();
    return;
  }
  showChrome();
  const root = h('div', { class: 'page' });
  replace(view, root);
  try {
    const done = await route()(root);
    // A newer navigation may have started while this view loaded.
    if (mine === generation) cleanup = typeof done === 'function' ? done : null;
    else if (typeof done === 'function') done();
  } catch (err) {
    if (mine === generation) replace(root, h('p', { class: 'error' }, `Could not load this page: ${describeError(err)}`));
  }
}

function showChrome() {
  const user = currentUser();
  document.getElementById('top').hidden = false;
  replace(document.getElementById('nav'),
    h('a', { href: '#/' }, 'Fleet'),
    h('a', { href: '#/alerts' }, 'Alerts'),
    can('read:config') ? h('a', { href: '#/settings', dataset: { control: 'config-nav' } }, 'Settings') : null);
  document.getElementById('who').textContent = `${user.username} (${user.role})`;
}

function showLogin() {
  document.getElementById('top').hidden = true;
  const message = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'login', id: 'login' },
    h('h1', {}, 'Plantline'),
    h('label', {}, 'Username', h('input', { name: 'username', autocomplete: 'username', required: true, autofocus: true })),
    h('label', {}, 'Password', h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true })),
    h('button', { type: 'submit' }, 'Log in'),
    message);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const { username, password } = Object.fromEntries(new FormData(form));
    try {
      await login(username, password);
      render();
    } catch (err) {
      message.textContent = err.status === 401 ? 'Wrong username or password.' : describeError(err);
    }
  });
  replace(view, form);
}

document.getElementById('logout').addEventListener('click', async () => {
  await logout();
  render();
});
whenSignedOut(render);
window.addEventListener('hashchange', render);
render();
