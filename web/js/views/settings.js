// Settings: the profile, browser push, and sign-out.

import * as api from '../api.js';
import * as session from '../session.js';
import * as push from '../push.js';
import { h, field } from '../dom.js';
import { busy, toast, errorText } from '../ui.js';

export function render() {
  const me = session.me();
  const name = h('input', { type: 'text', name: 'display_name', required: true, maxlength: 50, value: me.display_name });
  const bio = h('textarea', { name: 'bio', rows: 3, maxlength: 500, value: me.bio || '' });
  bio.value = me.bio || '';
  const save = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Save');
  const profile = h('form', {
    class: 'card stack',
    'aria-labelledby': 'profile-h',
    onsubmit: async (e) => {
      e.preventDefault();
      try {
        const user = await busy(save, () => api.patch('/users/me', { display_name: name.value.trim(), bio: bio.value.trim() }));
        session.setUser(user);
        toast('Profile saved.');
      } catch (err) {
        toast(errorText(err), { kind: 'error' });
      }
    },
  }, h('h2', { id: 'profile-h' }, 'Profile'), field('Display name', name).field, field('About you', bio).field, h('div', {}, save));

  const pushState = h('p', { class: 'muted' }, 'Checking…');
  const pushBtn = h('button', { type: 'button', class: 'btn', hidden: true });
  const drawPush = async () => {
    let s;
    try {
      s = await push.status();
    } catch {
      s = 'unavailable';
    }
    const text = {
      unsupported: 'This browser cannot receive push notifications.',
      unavailable: 'Push notifications are not set up on this server.',
      denied: 'Notifications are blocked for this site in the browser settings.',
      on: 'Push notifications are on for this browser.',
      off: 'Push notifications are off for this browser.',
    }[s];
    pushState.textContent = text;
    pushBtn.hidden = !(s === 'on' || s === 'off');
    pushBtn.textContent = s === 'on' ? 'Turn off' : 'Turn on';
    pushBtn.onclick = () => busy(pushBtn, async () => {
      try {
        if (s === 'on') await push.disable();
        else await push.enable();
      } catch (err) {
        toast(errorText(err), { kind: 'error' });
      }
      drawPush();
    });
  };
  drawPush();

  const el = h('section', { class: 'page stack' },
    h('h1', {}, 'Settings'),
    profile,
    h('section', { class: 'card stack', 'aria-labelledby': 'push-h' }, h('h2', { id: 'push-h' }, 'Push notifications'), pushState, h('div', {}, pushBtn)),
    h('section', { class: 'card stack', 'aria-labelledby': 'account-h' },
      h('h2', { id: 'account-h' }, 'Account'),
      h('p', { class: 'muted' }, `Signed in as ${me.email || me.display_name}.`),
      h('div', {}, h('button', { type: 'button', class: 'btn', onclick: () => api.logout() }, 'Sign out'))));
  return { el, title: 'Settings' };
}
