// The notification list: newest first, unread marked, live updates from
// the socket, mark one or all read, browser push opt-in.

import * as api from '../api.js';
import * as notify from '../notify.js';
import * as push from '../push.js';
import { app } from '../app.js';
import { h, timeAgo } from '../dom.js';
import { icon } from '../icons.js';
import { busy, toast, errorText, infinite } from '../ui.js';

const ICON = { like: 'heart', comment: 'comment', follow: 'users', message: 'send', call: 'phone', achievement: 'check', lesson_complete: 'check', system: 'bell' };

/** Where a notification leads (the service worker has the same rules). */
export function targetOf(n) {
  const d = n.data || {};
  if (d.room_id) return `/chat/${d.room_id}`;
  if (d.moment_id) return `/moments/${d.moment_id}`;
  if (n.notification_type === 'follow' && d.actor_id) return `/u/${d.actor_id}`;
  if (d.user_id) return `/u/${d.user_id}`;
  return null;
}

export function render() {
  const list = h('ul', { class: 'notification-list card', 'aria-live': 'polite' });
  const empty = h('p', { class: 'muted', hidden: true }, 'No notifications yet.');
  const sentinel = h('div', { class: 'sentinel' });
  const items = new Map(); // id -> {n, li}
  let cursor = null;

  const row = (n) => {
    const target = targetOf(n);
    const open = async (e) => {
      e?.preventDefault();
      if (!n.is_read) await markRead(n);
      if (target) app.navigate(target);
    };
    const li = h('li', { class: `notification ${n.is_read ? '' : 'unread'}`, dataset: { id: String(n.id) } },
      h('span', { class: 'n-icon' }, icon(ICON[n.notification_type] || 'bell')),
      h('div', { class: 'grow' },
        h('a', { href: target || '#', class: 'n-link', onclick: open },
          h('span', { class: 'n-title' }, n.title),
          n.message ? h('span', { class: 'n-message' }, n.message) : null),
        h('div', { class: 'meta' }, timeAgo(n.updated_at || n.created_at), n.is_read ? null : h('span', { class: 'visually-hidden' }, ' (unread)'))),
      n.is_read ? null : h('button', {
        type: 'button', class: 'btn btn-quiet btn-small', 'aria-label': `Mark "${n.title}" read`,
        onclick: () => markRead(n),
      }, 'Mark read'));
    return li;
  };

  const put = (n, where = 'append') => {
    const had = items.get(n.id);
    const li = row(n);
    if (had) had.li.replaceWith(li);
    else if (where === 'prepend') list.prepend(li);
    else list.append(li);
    items.set(n.id, { n, li });
    empty.hidden = items.size > 0;
  };

  const markRead = async (n) => {
    try {
      const updated = await api.post(`/notifications/${n.id}/read`);
      put(updated);
      notify.refreshCount();
    } catch (err) {
      toast(errorText(err), { kind: 'error' });
    }
  };

  const load = async () => {
    const page = await api.get('/notifications', { cursor, limit: 20 });
    for (const n of page.items) put(n);
    empty.hidden = items.size > 0;
    cursor = page.next_cursor;
    return Boolean(cursor);
  };

  const readAll = h('button', { type: 'button', class: 'btn' }, 'Mark all read');
  readAll.addEventListener('click', () => busy(readAll, async () => {
    try {
      // Only what is shown: one that arrives meanwhile stays unread.
      const newest = Math.max(0, ...items.keys());
      const r = await api.post(`/notifications/read_all${newest ? `?up_to_id=${newest}` : ''}`);
      for (const { n } of items.values()) if (n.id <= newest && !n.is_read) put({ ...n, is_read: true });
      notify.setUnread(r.unread_count);
    } catch (err) {
      toast(errorText(err), { kind: 'error' });
    }
  }));

  const off = notify.subscribe(({ event }) => {
    if (!event) return;
    if (event.notification && (event.action === 'created' || event.action === 'updated')) {
      const known = items.has(event.notification.id);
      put(event.notification, known ? 'append' : 'prepend');
    } else if (event.action === 'deleted' && items.has(event.notification_id)) {
      items.get(event.notification_id).li.remove();
      items.delete(event.notification_id);
      empty.hidden = items.size > 0;
    } else if (event.action === 'read' && items.has(event.notification_id)) {
      put({ ...items.get(event.notification_id).n, is_read: true });
    } else if (event.action === 'resync' && scroller) {
      // Back from a lost connection: read the newest page again.
      api.get('/notifications', { limit: 20 }).then((page) => {
        for (const n of [...page.items].reverse()) put(n, items.has(n.id) ? 'append' : 'prepend');
      }).catch(() => {});
    } else if (event.action === 'read_all') {
      for (const { n } of items.values()) if (!n.is_read) put({ ...n, is_read: true });
    }
  });

  const el = h('section', { class: 'page' },
    h('div', { class: 'row between wrap' }, h('h1', {}, 'Notifications'), readAll),
    pushCard(),
    list, empty, sentinel);
  let scroller = null;
  queueMicrotask(() => {
    scroller = infinite(sentinel, load);
  });
  return { el, title: 'Notifications', destroy: () => { off(); scroller?.stop(); } };
}

/** The opt-in for browser push, shown while it is off. */
export function pushCard() {
  const box = h('div', { class: 'push-card', hidden: true });
  push.status().then((s) => {
    if (s !== 'off') return;
    const btn = h('button', { type: 'button', class: 'btn btn-primary btn-small' }, 'Turn on');
    btn.addEventListener('click', () => busy(btn, async () => {
      try {
        await push.enable();
        box.hidden = true;
        toast('Push notifications are on for this browser.');
      } catch (err) {
        toast(errorText(err), { kind: 'error' });
      }
    }));
    box.replaceChildren(h('p', {}, 'Get notified about messages and calls when Palaver is closed.'), btn);
    box.hidden = false;
  }).catch(() => {});
  return box;
}
