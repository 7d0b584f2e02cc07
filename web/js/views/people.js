// Followers and following of a user, with follow buttons.

import * as api from '../api.js';
import * as session from '../session.js';
import { h, avatar } from '../dom.js';
import { busy, toast, errorText, infinite } from '../ui.js';

const TITLES = { followers: 'Followers', following: 'Following' };

export function render({ params }) {
  const kind = TITLES[params.list] ? params.list : 'followers';
  const id = Number(params.id);
  const me = session.me();
  const list = h('ul', { class: 'people card' });
  const sentinel = h('div', { class: 'sentinel' });
  const empty = h('p', { class: 'muted', hidden: true }, kind === 'followers' ? 'No followers yet.' : 'Not following anyone yet.');
  let cursor = null;
  let count = 0;
  const load = async () => {
    const page = await api.get(`/users/${id}/${kind}`, { cursor, limit: 30 });
    for (const u of page.items) list.append(row(u));
    count += page.items.length;
    empty.hidden = count > 0;
    cursor = page.next_cursor;
    return Boolean(cursor);
  };
  const row = (u) => {
    const btn = me && u.id !== me.id ? h('button', { type: 'button', class: `btn btn-small ${u.is_following ? '' : 'btn-primary'}`, 'aria-pressed': String(u.is_following) },
      u.is_following ? 'Following' : 'Follow') : null;
    btn?.addEventListener('click', () => busy(btn, async () => {
      try {
        const r = await api.post(`/users/${u.id}/follow`);
        btn.textContent = r.following ? 'Following' : 'Follow';
        btn.setAttribute('aria-pressed', String(r.following));
        btn.classList.toggle('btn-primary', !r.following);
      } catch (err) {
        toast(errorText(err), { kind: 'error' });
      }
    }));
    return h('li', { class: 'person' }, avatar(u), h('a', { href: `/u/${u.id}`, class: 'name grow' }, u.display_name), btn);
  };
  const el = h('section', { class: 'page' },
    h('p', {}, h('a', { href: `/u/${id}` }, '← Profile')),
    h('h1', {}, TITLES[kind]), list, empty, sentinel);
  let scroller = null;
  queueMicrotask(() => {
    scroller = infinite(sentinel, load);
  });
  return { el, title: TITLES[kind], destroy: () => scroller?.stop() };
}
