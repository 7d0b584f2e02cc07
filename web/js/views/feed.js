// Moments: home, public and one's own feed, with the composer.

import * as session from '../session.js';
import { h } from '../dom.js';
import { composer, momentList } from '../moments.js';

const TABS = [
  ['home', 'Home'],
  ['public', 'Public'],
  ['mine', 'Mine'],
];

export function render({ url }) {
  const me = session.me();
  let tab = TABS.some(([k]) => k === url.searchParams.get('feed')) ? url.searchParams.get('feed') : 'home';
  let list = null;
  const panel = h('div', { role: 'tabpanel', id: 'feed-panel', tabindex: '-1' });
  const buttons = TABS.map(([key, label]) => h('button', {
    type: 'button', role: 'tab', id: `tab-${key}`, 'aria-controls': 'feed-panel',
    onclick: () => select(key, true),
  }, label));
  const tablist = h('div', { role: 'tablist', class: 'tabs', 'aria-label': 'Feeds' }, buttons);
  // Arrow keys move between tabs (the ARIA tabs pattern).
  tablist.addEventListener('keydown', (e) => {
    const i = TABS.findIndex(([k]) => k === tab);
    const step = { ArrowRight: 1, ArrowLeft: -1, Home: -i, End: TABS.length - 1 - i }[e.key];
    if (step === undefined) return;
    e.preventDefault();
    const next = TABS[(i + step + TABS.length) % TABS.length][0];
    select(next, true);
    document.getElementById(`tab-${next}`).focus();
  });

  function select(key, push) {
    tab = key;
    buttons.forEach((b, i) => {
      const on = TABS[i][0] === key;
      b.setAttribute('aria-selected', String(on));
      b.tabIndex = on ? 0 : -1;
    });
    panel.setAttribute('aria-labelledby', `tab-${key}`);
    list?.destroy();
    const query = key === 'mine' ? { feed: 'user', user_id: me.id } : { feed: key };
    list = momentList(query, {
      empty: key === 'home' ? 'No moments yet. Follow people or post your first moment!' : 'No moments yet.',
    });
    panel.replaceChildren(list.el);
    if (push) history.replaceState({}, '', key === 'home' ? '/' : `/?feed=${key}`);
  }

  const el = h('section', { class: 'page feed-page' },
    h('h1', { class: 'visually-hidden' }, 'Moments'),
    composer((moment) => {
      if (tab === 'public' && moment.visibility !== 'public') return;
      list.prepend(moment);
    }),
    tablist,
    panel);
  select(tab, false);
  return { el, title: 'Moments', destroy: () => list?.destroy() };
}
