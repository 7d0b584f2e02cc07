// Random practice partner: pick a language and level, wait in the queue,
// and the match arrives as `match_found` on the user's topic; the call
// then starts by itself (calls.js).

import * as api from '../api.js';
import * as session from '../session.js';
import { app } from '../app.js';
import { h, field, avatar } from '../dom.js';
import { icon } from '../icons.js';
import { busy, toast, errorText } from '../ui.js';

const LEVELS = [['beginner', 'Beginner'], ['intermediate', 'Intermediate'], ['advanced', 'Advanced']];

export function render() {
  const me = session.me();
  const learning = me.learning_languages?.[0];
  const language = h('input', { type: 'text', name: 'language', required: true, maxlength: 35, autocapitalize: 'none', value: learning?.code || '' });
  const level = h('select', { name: 'level' }, LEVELS.map(([v, l]) => h('option', { value: v, selected: learning?.level === v }, l)));
  const type = h('select', { name: 'call_type' }, h('option', { value: 'voice' }, 'Voice'), h('option', { value: 'video' }, 'Video'));
  const start = h('button', { type: 'submit', class: 'btn btn-primary' }, icon('shuffle'), 'Find a partner');
  const panel = h('div', {});
  let waiting = false;

  const form = h('form', {
    class: 'card stack',
    onsubmit: async (e) => {
      e.preventDefault();
      try {
        const status = await busy(start, () => api.post('/match/queue', {
          call_type: type.value, language: language.value.trim(), level: level.value,
        }));
        if (status.match) onMatch(status.match);
        else showWaiting();
      } catch (err) {
        toast(errorText(err), { kind: 'error' });
      }
    },
  },
  h('p', {}, 'Practise speaking with someone at random: a native speaker of the language you learn, or another learner at your level.'),
  field('Language to practise', language, 'A language code, such as en or es.').field,
  h('div', { class: 'row gap wrap' }, field('Your level', level).field, field('Call', type).field),
  h('div', {}, start));

  const showWaiting = () => {
    waiting = true;
    const cancel = h('button', { type: 'button', class: 'btn' }, 'Cancel');
    cancel.addEventListener('click', () => busy(cancel, async () => {
      await leaveQueue();
      panel.replaceChildren(form);
      start.focus();
    }));
    panel.replaceChildren(h('div', { class: 'card match-wait', role: 'status' },
      h('div', { class: 'spinner', 'aria-hidden': 'true' }),
      h('h2', {}, 'Looking for a partner…'),
      h('p', { class: 'muted' }, `${language.value} · ${level.value} · ${type.value}`),
      cancel));
    cancel.focus();
  };

  const leaveQueue = async () => {
    if (!waiting) return;
    waiting = false;
    await api.del('/match/queue').catch(() => {});
  };

  const onMatch = async (found) => {
    waiting = false;
    panel.replaceChildren(h('div', { class: 'card match-wait', role: 'status' },
      avatar(found.peer, 'lg'), h('h2', {}, `Matched with ${found.peer.display_name}`), h('p', { class: 'muted' }, 'Starting the call…')));
    const calls = await import('../calls.js');
    const session = await calls.joinMatch(found);
    if (!session) panel.replaceChildren(form);
  };

  const off = app.socket.on(`user:${me.id}`, (frame) => {
    if (frame.type === 'match_found' && waiting) onMatch(frame.data);
  });

  panel.append(form);
  const el = h('section', { class: 'page' }, h('h1', {}, 'Practice'), panel);
  return {
    el,
    title: 'Practice',
    destroy() {
      off();
      leaveQueue();
    },
  };
}
