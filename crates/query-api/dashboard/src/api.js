// The Plantline API as the logged-in user. Access tokens live in sessionStorage (gone with
// the tab); a 401 triggers one refresh, shared by every request that saw it, because a
// refresh token presented twice revokes the whole session.

const KEY = 'plantline.session';
let session = JSON.parse(sessionStorage.getItem(KEY) || 'null');
let refreshing = null;
let onSignedOut = () => {};

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export const currentUser = () => session?.user ?? null;
export const can = (permission) => Boolean(session?.user?.permissions?.includes(permission));
export const whenSignedOut = (handler) => { onSignedOut = handler; };

function save(next) {
  session = next;
  if (next) sessionStorage.setItem(KEY, JSON.stringify(next));
  else sessionStorage.removeItem(KEY);
}

export async function login(username, password) {
  const { body } = await request('POST', '/api/v1/auth/login', { body: { username, password }, anonymous: true });
  save({ access: body.access_token, refresh: body.refresh_token, user: body.user });
  return body.user;
}

export async function logout() {
  try {
    await request('POST', '/api/v1/auth/logout', { noRefresh: true });
  } catch {
    // The session ends locally either way.
  }
  save(null);
}

async function refreshSession() {
  if (!session?.refresh) return false;
  const res = await fetch('/api/v1/auth/refresh', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ refresh_token: session.refresh }),
  });
  if (!res.ok) return false;
  const body = await res.json();
  save({ ...session, access: body.access_token, refresh: body.refresh_token ?? session.refresh });
  return true;
}

/** One call; resolves to `{ body, etag }`, rejects with ApiError. */
export async function request(method, path, { body, headers = {}, anonymous = false, noRefresh = false } = {}) {
  const init = { method, headers: { accept: 'application/json', ...headers } };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (!anonymous && session) init.headers.authorization = `Bearer ${session.access}`;
  const res = await fetch(path, init);
  if (res.status === 401 && !anonymous && !noRefresh) {
    refreshing ??= refreshSession().finally(() => { refreshing = null; });
    if (await refreshing) return request(method, path, { body, headers, noRefresh: true });
    save(null);
    onSignedOut();
  }
  const text = await res.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { message: text.slice(0, 200) };
  }
  if (!res.ok) throw new ApiError(res.status, parsed);
  return { body: parsed, etag: res.headers.get('etag') };
}

export const get = async (path) => (await request('GET', path)).body;
export const post = async (path, body) => (await request('POST', path, { body })).body;

/** Every page of an offset-paged list (`key` names the array in each page). */
export async function getAll(path, key, pageSize = 500) {
  const items = [];
  for (let offset = 0; ; offset += pageSize) {
    const sep = path.includes('?') ? '&' : '?';
    const page = await get(`${path}${sep}limit=${pageSize}&offset=${offset}`);
    items.push(...page[key]);
    if (!page.pagination?.has_more) return items;
  }
}
