// Start-up: the shell (top bar, navigation, offline banner), the routes,
// the socket, and the screens that follow the user everywhere (the bell,
// incoming calls).

import * as session from './session.js';
import * as api from './api.js';
import * as notify from './notify.js';
import * as push from './push.js';
import { app } from './app.js';
import { Router } from './router.js';
import { Socket } from './ws.js';
import { h, replace, avatar } from './dom.js';
import { errorText } from './ui.js';
import { icon } from './icons.js';

const view = (load) => ({ load, auth: true });
const routes = [
  ['/', view(() => import('./views/feed.js'))],
  ['/moments/:id', view(() => import('./views/moment.js'))],
  ['/u/:id', view(() => import('./views/profile.js'))],
  ['/u/:id/:list', view(() => import('./views/people.js'))],
  ['/notifications', view(() => import('./views/notifications.js'))],
  ['/settings', view(() => import('./views/settings.js'))],
  ['/chat', view(() => import('./views/chat.js'))],
  ['/chat/:id', view(() => import('./views/chat.js'))],
  ['/voice', view(() => import('./views/voice.js'))],
  ['/voice/:id', view(() => import('./views/voice.js'))],
  ['/match', view(() => import('./views/match.js'))],
  ['/login', { load: () => import('./views/auth.js'), auth: false }],
  ['/register', { load: () => import('./views/auth.js'), auth: false }],
];

const main = document.getElementById('main');
const banner = document.getElementById('offline-banner');
let current = null; // the mounted view: {destroy?}
let renderToken = 0;

const NAV = [
  ['/', 'Moments', 'feed'],
  ['/chat', 'Chat', 'chat'],
  ['/voice', 'Voice rooms', 'voice'],
  ['/match', 'Practice', 'match'],
];

let offBadge = null;
function buildShell() {
  offBadge?.();
  offBadge = null;
  const header = document.getElementById('topbar');
  const user = session.me();
  if (!user) {
    replace(header, h('a', { class: 'brand', href: '/login' }, 'Palaver'));
    return;
  }
  const badge = h('span', { class: 'badge', hidden: true, 'aria-hidden': 'true' });
  const bell = h('a', { class: 'icon-link bell', href: '/notifications', 'aria-label': 'Notifications' },
    icon('bell', { size: 22 }), badge);
  const drawBadge = ({ unread }) => {
    badge.textContent = unread > 99 ? '99+' : String(unread);
    badge.hidden = unread === 0;
    bell.setAttribute('aria-label', unread ? `Notifications, ${unread} unread` : 'Notifications');
  };
  offBadge = notify.subscribe(drawBadge);
  drawBadge({ unread: notify.unreadCount() });
  const nav = h('nav', { class: 'mainnav', 'aria-label': 'Main' },
    h('ul', {}, NAV.map(([href, label, key]) => h('li', {}, h('a', { href, dataset: { nav: key } }, label)))));
  const menu = h('details', { class: 'menu' },
    h('summary', { 'aria-label': `Account: ${user.display_name}` }, avatar(user, 'sm')),
    h('div', { class: 'menu-items' },
      h('a', { href: `/u/${user.id}` }, 'My profile'),
      h('a', { href: '/settings' }, 'Settings'),
      h('button', { type: 'button', onclick: signOut }, 'Sign out')));
  menu.addEventListener('click', (e) => {
    if (e.target.closest('a,button')) menu.open = false;
  });
  replace(header, h('a', { class: 'brand', href: '/' }, 'Palaver'), nav, h('div', { class: 'top-actions' }, bell, menu));
}

function markNav(pathname) {
  for (const a of document.querySelectorAll('.mainnav a')) {
    const href = a.getAttribute('href');
    const active = href === '/' ? pathname === '/' || pathname.startsWith('/moments') : pathname.startsWith(href);
    if (active) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

async function onRoute(route, params, url) {
  const token = ++renderToken;
  if (!route) {
    mount(h('section', { class: 'page' }, h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '/' }, 'Back to Moments'))), 'Not found');
    return;
  }
  if (route.auth && !session.me()) {
    const next = url.pathname + url.search;
    app.navigate(next === '/' ? '/login' : `/login?next=${encodeURIComponent(next)}`, { replace: true });
    return;
  }
  if (!route.auth && session.me()) {
    app.navigate('/', { replace: true });
    return;
  }
  markNav(url.pathname);
  if (session.me()) notify.refreshCount();
  let mod;
  try {
    mod = await route.load();
  } catch (err) {
    mount(h('section', { class: 'page' }, h('h1', {}, 'Cannot load this screen'), h('p', {}, errorText(err))), 'Error');
    return;
  }
  if (token !== renderToken) return; // a newer navigation won
  const rendered = mod.render({ params, url, route: route.pattern });
  mount(rendered.el, rendered.title, rendered.destroy);
}

let firstMount = true;
function mount(el, title, destroy) {
  current?.destroy?.();
  current = { destroy };
  replace(main, el);
  document.title = title ? `${title} · Palaver` : 'Palaver';
  // After a navigation, move focus to the new screen's heading so keyboard
  // and screen reader users start there (and hear where they are). The
  // first screen keeps the browser's own start (the skip link first).
  const heading = main.querySelector('h1');
  if (heading && !firstMount) {
    heading.setAttribute('tabindex', '-1');
    heading.focus({ preventScroll: true });
  }
  firstMount = false;
  window.scrollTo(0, 0);
}

function startSignedIn() {
  const user = session.me();
  app.socket?.stop();
  app.socket = new Socket({ token: () => api.accessToken(), refresh: () => api.refresh(session.session()?.access_token) });
  socketEverOpen = false;
  app.socket.addEventListener('status', (e) => {
    if (e.detail === 'open') socketEverOpen = true;
    updateBanner();
  });
  app.socket.start();
  notify.start(user.id);
  buildShell();
  import('./calls.js').then((calls) => calls.start()).catch(() => {});
  push.registerWorker().catch(() => {});
}

// Offline: the browser says so, or the live connection dropped (once it
// had worked: a server without the socket is not "offline").
let socketEverOpen = false;
function updateBanner() {
  const socketDown = app.socket && socketEverOpen && app.socket.state !== 'open';
  const show = !navigator.onLine || Boolean(socketDown);
  banner.hidden = !show;
  document.body.classList.toggle('is-offline', show);
}

async function signOut() {
  await api.logout();
}

function onSessionChange(now) {
  if (now) {
    startSignedIn();
    return;
  }
  app.socket?.stop();
  app.socket = null;
  notify.stop();
  import('./calls.js').then((calls) => calls.stop()).catch(() => {});
  buildShell();
  app.navigate('/login', { replace: true });
}

window.addEventListener('online', updateBanner);
window.addEventListener('offline', updateBanner);
window.addEventListener('focus', () => {
  if (session.me()) notify.refreshCount();
});
navigator.serviceWorker?.addEventListener('message', (e) => {
  if (e.data?.type === 'navigate' && typeof e.data.url === 'string' && e.data.url.startsWith('/')) app.navigate(e.data.url);
});

let lastUserId = session.me()?.id ?? null;
let lastShownUser = JSON.stringify([session.me()?.display_name, session.me()?.avatar]);
session.onChange((now) => {
  const id = now?.user?.id ?? null;
  if (id === lastUserId) {
    // Same account: a token rotation (nothing to redraw) or a profile edit.
    const shown = JSON.stringify([now?.user?.display_name, now?.user?.avatar]);
    if (shown !== lastShownUser) buildShell();
    lastShownUser = shown;
    return;
  }
  lastShownUser = JSON.stringify([now?.user?.display_name, now?.user?.avatar]);
  lastUserId = id;
  onSessionChange(now);
});

app.router = new Router(routes, onRoute);
if (session.me()) startSignedIn();
else buildShell();
app.router.resolve();
