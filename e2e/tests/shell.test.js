// The client's frame: every screen renders on a phone with labelled
// controls and keyboard access; tokens refresh transparently; the service
// worker shows pushed notifications.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { person, register, shot, sessionOf, eventually } from '../lib/browser.js';
import { suite, done } from '../lib/suite.js';

const t = suite(() => {
  // Web Push configured, so the client offers it.
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    PALAVER_VAPID_PRIVATE_KEY: privateKey.export({ format: 'pem', type: 'pkcs8' }),
    PALAVER_VAPID_SUBJECT: 'mailto:ops@example.org',
  };
});

/** Visible form controls and buttons without an accessible name. */
function unlabelled(page) {
  return page.evaluate(() => {
    const visible = (el) => el.offsetParent !== null || el.getClientRects().length > 0;
    const named = (el) => Boolean(
      el.getAttribute('aria-label') || el.getAttribute('aria-labelledby') || el.labels?.length
      || (el.tagName === 'BUTTON' && el.textContent.trim()) || el.title,
    );
    return [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button, a[href], summary')]
      .filter((el) => visible(el) && !(el.tagName === 'A' || el.tagName === 'SUMMARY' ? el.textContent.trim() || el.getAttribute('aria-label') : named(el)))
      .map((el) => el.outerHTML.slice(0, 120));
  });
}

test('every screen renders on a phone, with labelled controls and keyboard access', async () => {
  const ana = await person(t.browser, t.server, { phone: true });
  const { page } = ana;
  await page.goto('/login');
  assert.deepEqual(await unlabelled(page), []);
  // The first Tab reaches the skip link, which is then visible.
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Skip to content');
  await shot(page, 'phone-login');

  const me = await register(page, 'Ana');
  // On a phone the main navigation sits at the bottom of the screen.
  const nav = await page.getByRole('navigation', { name: 'Main' }).boundingBox();
  assert.ok(nav.y > 700, `bottom navigation (y=${nav.y})`);
  await page.getByLabel('Share a moment').fill('Phone-sized moment');
  await page.getByRole('button', { name: 'Post' }).click();
  await page.getByRole('article').filter({ hasText: 'Phone-sized moment' }).waitFor();
  await shot(page, 'phone-feed');

  for (const [path, heading] of [
    ['/', null],
    [`/u/${me.id}`, 'Ana'],
    [`/u/${me.id}/followers`, 'Followers'],
    ['/notifications', 'Notifications'],
    ['/settings', 'Settings'],
    ['/chat', 'Chat'],
    ['/voice', 'Voice rooms'],
    ['/match', 'Practice'],
  ]) {
    await page.goto(path);
    if (heading) await page.getByRole('heading', { name: heading, level: 1 }).waitFor();
    else await page.getByRole('tab', { name: 'Home' }).waitFor();
    assert.deepEqual(await unlabelled(page), [], `unlabelled controls on ${path}`);
  }

  // Keyboard: the feed tabs move with the arrow keys.
  await page.goto('/');
  await page.getByRole('tab', { name: 'Home' }).focus();
  await page.keyboard.press('ArrowRight');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Public');
  assert.equal(await page.getByRole('tab', { name: 'Public' }).getAttribute('aria-selected'), 'true');

  // An unknown client route is the client's own "not found".
  await page.goto('/no/such/screen');
  await page.getByRole('heading', { name: 'Not found' }).waitFor();

  await done(ana);
});

test('an expired access token is refreshed once, transparently, even from two tabs at once', async () => {
  const ana = await person(t.browser, t.server);
  await register(ana.page, 'Ana');
  const second = await ana.context.newPage();
  await second.goto('/notifications');
  await second.getByRole('heading', { name: 'Notifications' }).waitFor();

  // The access token goes bad (as after it expires): a valid shape, an
  // expiry far ahead (so no tab refreshes early), a signature the server
  // refuses. The other tab learns it through the storage event.
  const before = await sessionOf(ana.page);
  const refreshes = [];
  ana.context.on('request', (r) => {
    if (r.url().endsWith('/api/v1/auth/refresh')) refreshes.push(r);
  });
  await ana.page.evaluate(async () => {
    const session = await import('/js/session.js');
    const s = session.session();
    const [head, , sig] = s.access_token.split('.');
    const body = btoa(JSON.stringify({ sub: '1', exp: Math.floor(Date.now() / 1000) + 3600 })).replace(/=+$/, '');
    await session.save({ user: s.user, refresh_token: s.refresh_token, access_token: `${head}.${body}.${sig}` });
  });
  await second.waitForFunction((token) => JSON.parse(localStorage.getItem('palaver.session')).access_token !== token, before.access_token);

  // Both tabs call the API at the same moment; both get 401 first.
  const call = (page) => page.evaluate(async () => (await import('/js/api.js')).get('/users/me').then((u) => u.display_name));
  const names = await Promise.all([call(ana.page), call(second)]);
  assert.deepEqual(names, ['Ana', 'Ana']);
  assert.equal(refreshes.length, 1, 'one refresh for both tabs');

  // The rotated tokens work (a reused refresh token would have ended the session).
  const after = await sessionOf(ana.page);
  assert.notEqual(after.refresh_token, before.refresh_token);
  await ana.page.goto('/settings');
  await ana.page.getByRole('heading', { name: 'Settings' }).waitFor();
  await ana.page.getByText('Push notifications are off for this browser.').waitFor();
  assert.equal(await ana.page.url().endsWith('/settings'), true);
  await done(ana);
});

test('the service worker shows a pushed notification', async () => {
  const ana = await person(t.browser, t.server);
  await register(ana.page, 'Ana');
  const cdp = await ana.context.newCDPSession(ana.page);
  const registered = new Promise((resolve) => {
    cdp.on('ServiceWorker.workerRegistrationUpdated', ({ registrations }) => {
      const r = registrations.find((x) => x.scopeURL === `${t.server.url}/` && !x.isDeleted);
      if (r) resolve(r.registrationId);
    });
  });
  await cdp.send('ServiceWorker.enable');
  await ana.page.evaluate(() => navigator.serviceWorker.ready.then(() => true));
  const registrationId = await registered;
  const payload = { notification_id: 7, type: 'like', title: 'New like', body: 'Bob liked your moment', data: { moment_id: 3 } };
  await cdp.send('ServiceWorker.deliverPushMessage', { origin: t.server.url, registrationId, data: JSON.stringify(payload) });
  const shown = await eventually(() => ana.page.evaluate(async () => {
    const reg = await navigator.serviceWorker.ready;
    const list = await reg.getNotifications();
    return list.length ? list.map((n) => ({ title: n.title, body: n.body, url: n.data?.url })) : null;
  }), { what: 'the notification' });
  assert.deepEqual(shown, [{ title: 'New like', body: 'Bob liked your moment', url: '/moments/3' }]);
  await done(ana);
});

test('the socket resumes a sequenced topic with since_seq after a reconnect, and drops what it has seen', async () => {
  const ana = await person(t.browser, t.server);
  await register(ana.page, 'Ana');
  const socketOpen = () => ana.page.evaluate(async () => (await import('/js/app.js')).app.socket.state === 'open');
  await eventually(socketOpen, { what: 'the socket' });

  // A sequenced topic the page has seen up to seq 5. Events are handed to
  // the client as the server frames them: a replay overlapping what it has
  // (4, 5), a new one (6), a duplicate (6 again), the next (7).
  const got = await ana.page.evaluate(async () => {
    const { app } = await import('/js/app.js');
    const seen = [];
    window.__off = app.socket.subscribe('chat:999', (f) => seen.push(f.seq), { sinceSeq: 5 });
    for (const seq of [4, 5, 6, 6, 7]) {
      app.socket.receive(JSON.stringify({ op: 'event', topic: 'chat:999', type: 'message', seq, data: {} }));
    }
    return seen;
  });
  assert.deepEqual(got, [6, 7]);

  // The connection drops and comes back: the topic is subscribed again,
  // from the last seq seen, over the real socket.
  const before = ana.sent.length;
  await ana.page.evaluate(async () => (await import('/js/app.js')).app.socket.reconnectNow());
  const resubscribe = await eventually(
    () => ana.sent.slice(before).find((f) => f.op === 'subscribe' && f.topic === 'chat:999'),
    { what: 'the resubscription' },
  );
  assert.equal(resubscribe.since_seq, 7);
  await eventually(socketOpen, { what: 'the socket again' });
  await done(ana);
});
