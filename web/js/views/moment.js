// One moment with its comments open (notification and share links land here).

import * as api from '../api.js';
import { app } from '../app.js';
import { h } from '../dom.js';
import { momentCard } from '../moments.js';
import { errorText } from '../ui.js';

export function render({ params }) {
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const el = h('section', { class: 'page' }, h('h1', { class: 'visually-hidden' }, 'Moment'), body);
  api.get(`/moments/${encodeURIComponent(params.id)}`).then(
    (moment) => body.replaceChildren(momentCard(moment, { expanded: true, onRemoved: () => app.navigate('/') })),
    (err) => body.replaceChildren(h('p', {}, err.status === 404 ? 'This moment is not available.' : errorText(err))),
  );
  return { el, title: 'Moment' };
}
