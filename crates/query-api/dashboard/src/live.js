// A live stream from query-api. EventSource cannot send an Authorization header, so each
// connection first fetches a single-use 30-second ticket; after a drop the next connection
// gets a fresh ticket and resumes after the last event id it saw.

import { request } from './api.js';

const status = (state) => {
  const el = document.getElementById('live-status');
  if (el) {
    el.dataset.state = state;
    el.textContent = { live: '● live', reconnecting: '○ reconnecting…', idle: '' }[state] ?? state;
  }
};

export function openStream(filter, handlers) {
  let source = null;
  let lastId = null;
  let closed = false;
  let attempt = 0;
  let timer = null;

  const schedule = () => {
    if (closed) return;
    status('reconnecting');
    timer = setTimeout(connect, Math.min(30000, 1000 * 2 ** attempt++));
  };

  async function connect() {
    if (closed) return;
    let ticket;
    try {
      ticket = (await request('POST', '/api/v1/stream/ticket')).body.ticket;
    } catch {
      schedule();
      return;
    }
    if (closed) return;
    const params = new URLSearchParams({ ticket, ...filter });
    if (lastId) params.set('last_event_id', lastId);
    source = new EventSource(`/api/v1/stream?${params}`);
    source.onopen = () => { attempt = 0; status('live'); };
    source.onerror = () => { source.close(); schedule(); };
    for (const kind of ['reading', 'alert', 'presence', 'reset']) {
      source.addEventListener(kind, (event) => {
        if (event.lastEventId) lastId = event.lastEventId;
        handlers[kind]?.(JSON.parse(event.data));
      });
    }
  }

  connect();
  return () => {
    closed = true;
    clearTimeout(timer);
    source?.close();
    status('idle');
  };
}
