// Moments, comments, likes, notifications and profiles, through the
// browser client against a real server.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { apiCall } from '../lib/server.js';
import { person, register, shot, eventually, picture, loadedImage, goOffline } from '../lib/browser.js';
import { suite, done } from '../lib/suite.js';

const t = suite();

test('a moment is liked and commented on by another user, who is notified', async () => {
  const ana = await person(t.browser, t.server);
  const bob = await person(t.browser, t.server);
  const anaUser = await register(ana.page, 'Ana');
  const bobUser = await register(bob.page, 'Bob', { native: 'en', learning: 'es' });

  // Ana posts a public moment.
  const text = "¡Hola! Practising English today. Who wants to talk about food?";
  await ana.page.getByLabel('Share a moment').fill(text);
  await ana.page.getByLabel('Who can see it').selectOption('public');
  await ana.page.getByRole('button', { name: 'Post' }).click();
  const anaCard = ana.page.getByRole('article').filter({ hasText: text });
  await anaCard.waitFor();

  // Bob finds it in the public feed, likes it and comments.
  await bob.page.getByRole('tab', { name: 'Public' }).click();
  const card = bob.page.getByRole('article').filter({ hasText: text });
  await card.waitFor();
  const like = card.getByRole('button', { name: 'Like', exact: true });
  await like.click();
  await assertAttr(like, 'aria-pressed', 'true');
  assert.equal((await like.textContent()).trim(), '1');
  await card.getByRole('button', { name: 'Comments', exact: true }).click();
  await card.getByLabel('Write a comment').fill('Great job, Ana!');
  await card.getByRole('button', { name: 'Comment', exact: true }).click();
  await card.getByText('Great job, Ana!').waitFor();
  await assertText(card.getByRole('button', { name: 'Comments', exact: true }), '1');
  await shot(bob.page, 'feed-liked-and-commented');

  // Ana is notified live, over the WebSocket: her bell counts both
  // without a reload.
  const bell = ana.page.getByRole('link', { name: 'Notifications, 2 unread' });
  await bell.waitFor();
  assert.ok(
    ana.frames.some((f) => f.op === 'event' && f.topic === `user:${anaUser.id}` && f.type === 'notification'),
    'the notification arrived over the socket',
  );
  await bell.click();
  await ana.page.getByRole('heading', { name: 'Notifications' }).waitFor();
  const likeNote = ana.page.getByRole('link', { name: /Bob liked your moment/ });
  await likeNote.waitFor();
  await ana.page.getByRole('link', { name: /Bob commented/ }).waitFor();
  await shot(ana.page, 'notifications');

  // Opening a notification marks it read and shows the moment with its comments.
  await likeNote.click();
  await ana.page.waitForURL(/\/moments\/\d+$/);
  const thread = ana.page.getByRole('article').filter({ hasText: text });
  await thread.getByText('Great job, Ana!').waitFor();

  // Ana replies under Bob's comment; the reply is nested under it.
  await thread.getByRole('button', { name: 'Reply' }).click();
  await thread.getByLabel('Reply to Bob').fill('Thank you, Bob!');
  await thread.getByRole('button', { name: 'Reply', exact: true }).last().click();
  await thread.getByRole('list', { name: 'Replies to Bob' }).getByText('Thank you, Bob!').waitFor();

  // Mark everything read: the badge goes away.
  await ana.page.getByRole('link', { name: /^Notifications/ }).click();
  await ana.page.getByRole('button', { name: 'Mark all read' }).click();
  await ana.page.getByRole('link', { name: 'Notifications', exact: true }).waitFor();

  // Bob sees the reply nested under his comment, after a reload.
  await bob.page.goto(`/u/${bobUser.id}`);
  await bob.page.goto('/?feed=public');
  const again = bob.page.getByRole('article').filter({ hasText: text });
  await again.getByRole('button', { name: 'Comments', exact: true }).click();
  await again.getByRole('list', { name: 'Replies to Bob' }).getByText('Thank you, Bob!').waitFor();

  await done(ana, bob);
});

test('a moment with an image: the other user sees the picture, through a link signed for them', async () => {
  const ana = await person(t.browser, t.server);
  const bob = await person(t.browser, t.server);
  await register(ana.page, 'Ana');
  const bobUser = await register(bob.page, 'Bob', { native: 'en', learning: 'es' });

  // Ana picks a picture: a preview shows before posting.
  const file = await picture(ana.page, { width: 640, height: 400, name: 'atardecer.png', label: 'Atardecer' });
  await ana.page.getByLabel('Add media').setInputFiles(file);
  await ana.page.getByRole('img', { name: 'Attached: atardecer.png' }).waitFor();
  const text = 'El atardecer desde mi ventana. How do you say "atardecer" in English?';
  await ana.page.getByLabel('Share a moment').fill(text);
  await ana.page.getByLabel('Who can see it').selectOption('public');
  await ana.page.getByRole('button', { name: 'Post' }).click();
  const anaCard = ana.page.getByRole('article').filter({ hasText: text });
  await anaCard.waitFor();
  await loadedImage(anaCard.getByRole('img', { name: 'Media by Ana' }));
  // The composer is empty again.
  assert.equal(await ana.page.getByRole('img', { name: 'Attached: atardecer.png' }).count(), 0);

  // Bob sees it in the public feed: the picture loads, from a URL signed
  // for him (the thumbnail, 320 px on the longer side, or the full picture,
  // whichever the browser finds sharp enough for the card).
  await bob.page.getByRole('tab', { name: 'Public' }).click();
  const card = bob.page.getByRole('article').filter({ hasText: text });
  await card.waitFor();
  const img = card.getByRole('img', { name: 'Media by Ana' });
  const loaded = await loadedImage(img);
  const current = new URL(await img.evaluate((el) => el.currentSrc));
  assert.match(current.pathname + current.search, new RegExp(`^/api/v1/media/\\d+/(file|thumbnail)\\?viewer=${bobUser.id}&`));
  assert.deepEqual(loaded, current.pathname.endsWith('/thumbnail') ? { width: 320, height: 200 } : { width: 640, height: 400 });
  assert.match(await img.getAttribute('src'), new RegExp(`^/api/v1/media/\\d+/thumbnail\\?viewer=${bobUser.id}&`));
  // The link opens the full picture, as uploaded.
  const href = await img.locator('xpath=ancestor::a[1]').getAttribute('href');
  assert.match(href, new RegExp(`^/api/v1/media/\\d+/file\\?viewer=${bobUser.id}&`));
  const full = await bob.page.evaluate(async (url) => {
    const res = await fetch(url);
    const bitmap = await createImageBitmap(await res.blob());
    return { status: res.status, type: res.headers.get('content-type'), width: bitmap.width, height: bitmap.height };
  }, href);
  assert.deepEqual(full, { status: 200, type: 'image/png', width: 640, height: 400 });

  // After a reload, still there.
  await bob.page.reload();
  await loadedImage(bob.page.getByRole('article').filter({ hasText: text }).getByRole('img', { name: 'Media by Ana' }));
  await shot(bob.page, 'feed-moment-image');
  await done(ana, bob);
});

test('profiles: follow, followers list, followers-only moments, block', async () => {
  const ana = await person(t.browser, t.server);
  const bob = await person(t.browser, t.server);
  const anaUser = await register(ana.page, 'Ana');
  const bobUser = await register(bob.page, 'Bob');

  // A followers-only moment is not in Bob's home feed before he follows.
  const secret = "For my followers: my first conversation class went well!";
  await ana.page.getByLabel('Share a moment').fill(secret);
  await ana.page.getByLabel('Who can see it').selectOption('followers');
  await ana.page.getByRole('button', { name: 'Post' }).click();
  await ana.page.getByRole('article').filter({ hasText: secret }).waitFor();

  await bob.page.goto(`/u/${anaUser.id}`);
  await bob.page.getByRole('heading', { name: 'Ana', level: 1 }).waitFor();
  await bob.page.getByText('No moments yet.').waitFor();
  const follow = bob.page.getByRole('button', { name: 'Follow', exact: true });
  await follow.click();
  await bob.page.getByRole('button', { name: 'Following' }).waitFor();
  await bob.page.getByRole('link', { name: '1 followers' }).waitFor();
  // Following shows her followers-only moment on her profile at once.
  await bob.page.getByRole('article').filter({ hasText: secret }).waitFor();
  await shot(bob.page, 'profile-following');

  // The followers list shows Bob.
  await bob.page.getByRole('link', { name: '1 followers' }).click();
  await bob.page.getByRole('heading', { name: 'Followers' }).waitFor();
  await bob.page.getByRole('link', { name: 'Bob' }).waitFor();

  // Now the followers-only moment is in his home feed.
  await bob.page.getByRole('link', { name: 'Moments' }).click();
  await bob.page.getByRole('article').filter({ hasText: secret }).waitFor();

  // Ana blocks Bob: his follow is gone and her profile disappears for him.
  await ana.page.goto(`/u/${bobUser.id}`);
  await ana.page.getByRole('heading', { name: 'Bob', level: 1 }).waitFor();
  await ana.page.getByRole('button', { name: 'Block' }).click();
  await ana.page.getByRole('dialog').getByRole('button', { name: 'Block' }).click();
  await ana.page.getByRole('button', { name: 'Unblock' }).waitFor();
  await ana.page.goto(`/u/${anaUser.id}`);
  await ana.page.getByRole('link', { name: '0 followers' }).waitFor();

  await bob.page.goto(`/u/${anaUser.id}`);
  await bob.page.getByText('This profile is not available.').waitFor();
  // The first page of the home feed (the moment would be its newest item).
  await bob.page.goto('/');
  await bob.page.getByRole('feed').getByRole('article').first().waitFor();
  assert.equal(await bob.page.getByRole('article').filter({ hasText: secret }).count(), 0);

  await done(ana, bob);
});

test('a lost connection shows the offline banner, and the client catches up when it returns', async () => {
  const ana = await person(t.browser, t.server);
  await register(ana.page, 'Ana');
  await ana.page.getByLabel('Share a moment').fill('Offline test');
  await ana.page.getByRole('button', { name: 'Post' }).click();
  const card = ana.page.getByRole('article').filter({ hasText: 'Offline test' });
  await card.waitFor();
  const momentId = await card.getAttribute('data-moment-id');
  // The socket is up before the network goes.
  await eventually(() => ana.page.evaluate(async () => (await import('/js/app.js')).app.socket.state === 'open'), { what: 'the socket' });

  await goOffline(ana);
  const banner = ana.page.getByRole('status').filter({ hasText: 'You are offline' });
  await banner.waitFor();
  await shot(ana.page, 'offline-banner');

  // Meanwhile Bob (outside this browser) likes the moment.
  const bob = await apiCall(t.server, 'POST', '/auth/register', {
    body: { email: `bob.${Date.now()}@example.org`, password: 'correct horse battery', display_name: 'Bob' },
  });
  await apiCall(t.server, 'POST', `/moments/${momentId}/like`, { token: bob.access_token });

  // The client reconnects when the browser says it is back online.
  await ana.page.evaluate(async () => {
    (await import('/js/app.js')).app.socket.wanted = true;
  });
  await ana.context.setOffline(false);
  await banner.waitFor({ state: 'hidden' });
  await ana.page.getByRole('link', { name: 'Notifications, 1 unread' }).waitFor();
  await done(ana);
});

test('the feed loads older moments as it scrolls (next_cursor)', async () => {
  const carla = await apiCall(t.server, 'POST', '/auth/register', {
    body: { email: `carla.${Date.now()}@example.org`, password: 'correct horse battery', display_name: 'Carla' },
  });
  // More than two pages (the client asks for 10 at a time).
  for (let i = 1; i <= 23; i += 1) {
    await apiCall(t.server, 'POST', '/moments', { token: carla.access_token, body: { content: `Scroll test ${i}`, visibility: 'public' } });
  }
  const dan = await person(t.browser, t.server);
  await register(dan.page, 'Dan');
  // Every page of Carla's moments the client asks for, with what came back.
  // How many pages load before the first scroll depends on how many cards fit
  // on the screen, so the test follows the requests rather than counting
  // cards at one instant.
  const pages = [];
  dan.page.on('response', async (res) => {
    const url = new URL(res.url());
    if (url.pathname !== '/api/v1/moments' || url.searchParams.get('user_id') !== String(carla.user.id)) return;
    pages.push({ url, body: await res.json() });
  });
  await dan.page.goto(`/u/${carla.user.id}`);
  const cards = dan.page.getByRole('article').filter({ hasText: /Scroll test \d+/ });
  await dan.page.getByRole('article').filter({ hasText: 'Scroll test 23' }).waitFor();
  // Scrolling to the end brings the next pages, newest first, none twice.
  await eventually(async () => {
    await dan.page.mouse.wheel(0, 5000);
    return (await cards.count()) === 23;
  }, { what: 'all 23 moments' });
  const texts = await dan.page.locator('article .content').allTextContents();
  const expected = Array.from({ length: 23 }, (_, i) => `Scroll test ${23 - i}`);
  assert.deepEqual(texts, expected);
  // Three pages of at most 10, each asked for with the cursor the one before returned.
  await eventually(async () => pages.length === 3, { what: 'three page responses' });
  assert.deepEqual(pages.map((p) => p.body.items.length), [10, 10, 3]);
  for (const p of pages) assert.equal(p.url.searchParams.get('limit'), '10');
  assert.equal(pages[0].url.searchParams.get('cursor'), null, 'the first page has no cursor');
  assert.equal(pages[1].url.searchParams.get('cursor'), pages[0].body.next_cursor);
  assert.equal(pages[2].url.searchParams.get('cursor'), pages[1].body.next_cursor);
  assert.equal(pages[2].body.next_cursor, null, 'the last page says it is the last');
  // At the end, the "Load more" button is gone.
  assert.equal(await dan.page.getByRole('button', { name: 'Load more' }).count(), 0);
  await done(dan);
});

async function assertAttr(locator, name, value) {
  await locator.page().waitForFunction(
    ([el, n, v]) => el.getAttribute(n) === v,
    [await locator.elementHandle(), name, value],
  );
}

async function assertText(locator, value) {
  await locator.page().waitForFunction(([el, v]) => el.textContent.trim() === v, [await locator.elementHandle(), value]);
}
