// A profile: counts, follow, block, message, call, and the user's moments.

import * as api from '../api.js';
import * as session from '../session.js';
import { app } from '../app.js';
import { h, avatar, replace } from '../dom.js';
import { icon } from '../icons.js';
import { momentList, report } from '../moments.js';
import { busy, toast, errorText, confirmDialog } from '../ui.js';

const LEVEL = { beginner: 'beginner', intermediate: 'intermediate', advanced: 'advanced' };

export function render({ params }) {
  const id = Number(params.id);
  const me = session.me();
  const mine = me && id === me.id;
  const head = h('div', { class: 'card profile-head' }, h('p', { class: 'muted' }, 'Loading…'));
  const el = h('section', { class: 'page profile-page' }, head);
  let list = null;

  const draw = (p) => {
    const followBtn = h('button', { type: 'button', class: `btn ${p.is_following ? '' : 'btn-primary'}`, 'aria-pressed': String(p.is_following) },
      p.is_following ? 'Following' : 'Follow');
    followBtn.addEventListener('click', () => busy(followBtn, async () => {
      try {
        const r = await api.post(`/users/${id}/follow`);
        p.is_following = r.following;
        p.followers_count += r.following ? 1 : -1;
        draw(p);
        showMoments(); // followers-only moments appear or go
        document.getElementById('follow-btn')?.focus();
      } catch (err) {
        toast(errorText(err), { kind: 'error' });
      }
    }));
    followBtn.id = 'follow-btn';
    const blockBtn = h('button', { type: 'button', class: 'btn btn-quiet', id: 'block-btn' }, p.is_blocked ? 'Unblock' : 'Block');
    blockBtn.addEventListener('click', async () => {
      if (!p.is_blocked && !(await confirmDialog(`Block ${p.display_name}?`,
        'They will not be able to see your moments, follow you, message or call you. Follows between you are removed.', 'Block'))) return;
      await busy(blockBtn, async () => {
        try {
          const r = await api.post(`/users/${id}/block`);
          toast(r.blocked ? `${p.display_name} is blocked.` : `${p.display_name} is unblocked.`);
          load();
        } catch (err) {
          toast(errorText(err), { kind: 'error' });
        }
      });
    });
    const messageBtn = h('button', { type: 'button', class: 'btn', id: 'message-btn' }, 'Message');
    messageBtn.addEventListener('click', () => busy(messageBtn, async () => {
      try {
        const room = await api.post('/chat/rooms', { room_type: 'private', participant_ids: [id] });
        app.navigate(`/chat/${room.id}`);
      } catch (err) {
        toast(errorText(err), { kind: 'error' });
      }
    }));
    const callBtn = (type, label) => h('button', {
      type: 'button', class: 'btn',
      onclick: async () => (await import('../calls.js')).startCall(p, type),
    }, icon(type === 'video' ? 'video' : 'phone'), label);
    const langs = [
      ...(p.native_languages || []).map((l) => h('span', { class: 'chip' }, `speaks ${l}`)),
      ...(p.learning_languages || []).map((l) => h('span', { class: 'chip chip-alt' }, `learning ${l.code} (${LEVEL[l.level] || l.level})`)),
    ];
    replace(head,
      h('div', { class: 'row gap' }, avatar(p, 'lg'),
        h('div', {},
          h('h1', {}, p.display_name),
          p.role && p.role !== 'user' ? h('span', { class: 'chip' }, p.role) : null,
          p.follows_you ? h('span', { class: 'chip' }, 'Follows you') : null)),
      p.bio ? h('p', { class: 'bio' }, p.bio) : null,
      langs.length ? h('div', { class: 'chips' }, langs) : null,
      h('ul', { class: 'counts' },
        h('li', {}, h('strong', {}, String(p.moments_count)), ' moments'),
        h('li', {}, h('a', { href: `/u/${id}/followers` }, h('strong', {}, String(p.followers_count)), ' followers')),
        h('li', {}, h('a', { href: `/u/${id}/following` }, h('strong', {}, String(p.following_count)), ' following'))),
      mine
        ? h('div', { class: 'row gap wrap' }, h('a', { class: 'btn', href: '/settings' }, 'Edit profile'))
        : h('div', { class: 'row gap wrap actions' },
          p.is_blocked ? null : followBtn,
          p.is_blocked ? null : messageBtn,
          p.is_blocked ? null : callBtn('voice', 'Call'),
          p.is_blocked ? null : callBtn('video', 'Video call'),
          blockBtn,
          h('button', { type: 'button', class: 'btn btn-quiet', onclick: () => report({ reported_user: id }, 'user') }, 'Report')),
    );
  };

  const momentsBox = h('div', {});
  const showMoments = () => {
    list?.destroy();
    list = momentList({ feed: 'user', user_id: id }, { empty: 'No moments yet.' });
    if (!momentsBox.isConnected) el.append(h('h2', { class: 'section-title' }, 'Moments'), momentsBox);
    momentsBox.replaceChildren(list.el);
  };

  const load = async () => {
    try {
      const p = mine ? await api.get('/users/me') : await api.get(`/users/${id}`);
      if (mine) session.setUser({ ...me, ...p });
      draw(mine ? { ...p, is_following: false, is_blocked: false } : p);
      document.title = `${p.display_name} · Palaver`;
      if (!list) showMoments();
    } catch (err) {
      head.replaceChildren(h('h1', {}, 'Profile'), h('p', {}, err.status === 404 ? 'This profile is not available.' : errorText(err)));
    }
  };
  load();
  return { el, title: 'Profile', destroy: () => list?.destroy() };
}
