// 1-on-1 calls and random practice matches in the browser: two Chromium
// contexts with fake microphones and cameras, WebRTC between them over
// loopback, signalling through the server's socket.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { apiCall } from '../lib/server.js';
import { person, register, shot, sessionOf, eventually } from '../lib/browser.js';
import { suite, done } from '../lib/suite.js';

const t = suite();

/** Audio bytes received by the page's call so far. */
function audioBytesIn(page) {
  return page.evaluate(async () => {
    const call = (await import('/js/calls.js')).active();
    if (!call?.pc) return 0;
    let bytes = 0;
    (await call.pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') bytes += s.bytesReceived || 0;
    });
    return bytes;
  });
}

/** Waits until media flows into the page's call. */
async function mediaFlows(page, who) {
  const panel = page.locator('section.call-panel');
  await eventually(async () => (await panel.getAttribute('data-connection')) === 'connected', { what: `${who}'s ICE connection` });
  await eventually(async () => (await audioBytesIn(page)) > 1000, { what: `audio reaching ${who}` });
}

test('a voice call rings, is accepted, carries audio both ways, reports quality and hangs up', async () => {
  const ana = await person(t.browser, t.server);
  const bob = await person(t.browser, t.server);
  await register(ana.page, 'Ana');
  const bobUser = await register(bob.page, 'Bob');

  await ana.page.goto(`/u/${bobUser.id}`);
  await ana.page.getByRole('button', { name: 'Call', exact: true }).click();
  const anaPanel = ana.page.getByRole('region', { name: 'Call with Bob' });
  await anaPanel.getByText('Ringing…').waitFor();

  // Bob's screen rings, wherever he is.
  const ring = bob.page.getByRole('alertdialog', { name: 'Ana' });
  await ring.getByText('Incoming voice call').waitFor();
  await shot(bob.page, 'call-incoming');
  await ring.getByRole('button', { name: 'Accept' }).click();

  await mediaFlows(ana.page, 'Ana');
  await mediaFlows(bob.page, 'Bob');
  await anaPanel.getByText('Connected').waitFor();
  await shot(ana.page, 'call-connected');

  // The Opus policy went into the SDP both sides use.
  const fmtp = await ana.page.evaluate(async () => (await import('/js/calls.js')).active().pc.localDescription.sdp.match(/a=fmtp:\d+ .*useinbandfec=1.*/)?.[0]);
  assert.match(fmtp, /usedtx=1/);

  // Quality reaches the server.
  const { access_token: token } = await sessionOf(ana.page);
  const callId = await anaPanel.getAttribute('data-call-id');
  const call = await eventually(async () => {
    const c = await apiCall(t.server, 'GET', `/calls/${callId}`, { token });
    return c.quality?.length ? c : null;
  }, { what: 'a quality report' });
  assert.equal(call.status, 'active');
  assert.ok(call.media_connected_at, 'media connected was recorded');

  // Ana hangs up: both panels close and the call is over.
  await anaPanel.getByRole('button', { name: 'Hang up' }).click();
  await bob.page.getByRole('region', { name: 'Call with Ana' }).waitFor({ state: 'detached' });
  await anaPanel.waitFor({ state: 'detached' });
  const ended = await apiCall(t.server, 'GET', `/calls/${callId}`, { token });
  assert.equal(ended.status, 'ended');

  await done(ana, bob);
});

test('a declined video call ends for the caller', async () => {
  const ana = await person(t.browser, t.server);
  const bob = await person(t.browser, t.server);
  await register(ana.page, 'Ana');
  const bobUser = await register(bob.page, 'Bob');

  await ana.page.goto(`/u/${bobUser.id}`);
  await ana.page.getByRole('button', { name: 'Video call' }).click();
  const anaPanel = ana.page.getByRole('region', { name: 'Call with Bob' });
  await anaPanel.waitFor();
  const ring = bob.page.getByRole('alertdialog', { name: 'Ana' });
  await ring.getByText('Incoming video call').waitFor();
  await ring.getByRole('button', { name: 'Decline' }).click();
  await ana.page.getByText('Call declined.').waitFor();
  await anaPanel.waitFor({ state: 'detached' });
  await done(ana, bob);
});

test('two learners queue for practice, are matched, and the call connects', async () => {
  const ana = await person(t.browser, t.server);
  const bob = await person(t.browser, t.server);
  await register(ana.page, 'Ana', { native: 'es', learning: 'fr' });
  await register(bob.page, 'Bob', { native: 'en', learning: 'fr' });

  for (const { page } of [ana, bob]) {
    await page.goto('/match');
    await page.getByLabel('Language to practise').fill('fr');
    await page.getByLabel('Your level').selectOption('beginner');
  }
  await ana.page.getByRole('button', { name: 'Find a partner' }).click();
  await ana.page.getByRole('heading', { name: 'Looking for a partner…' }).waitFor();
  await shot(ana.page, 'match-waiting');
  await bob.page.getByRole('button', { name: 'Find a partner' }).click();

  await ana.page.getByRole('region', { name: 'Call with Bob' }).waitFor();
  await bob.page.getByRole('region', { name: 'Call with Ana' }).waitFor();
  await mediaFlows(ana.page, 'Ana');
  await mediaFlows(bob.page, 'Bob');

  await bob.page.getByRole('button', { name: 'Hang up' }).click();
  await ana.page.getByRole('region', { name: 'Call with Bob' }).waitFor({ state: 'detached' });
  await done(ana, bob);
});
