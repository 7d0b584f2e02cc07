// 1-on-1 calls and random practice matches in the browser: two Chromium
// contexts with fake microphones and cameras, WebRTC between them over
// loopback, signalling through the server's socket.
//
// Screen sharing uses the real getDisplayMedia(): with
// --use-fake-ui-for-media-stream headless Chromium accepts the picker by
// itself and --use-fake-device-for-media-stream captures a generated
// screen (1280x720, 30 fps), so no flag or stand-in beyond the ones every
// test here runs with is needed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { apiCall } from '../lib/server.js';
import { person, register, login, email, shot, sessionOf, eventually } from '../lib/browser.js';
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

/** Video frames decoded by the page's call so far (all inbound video). */
function framesDecoded(page) {
  return page.evaluate(async () => {
    const call = (await import('/js/calls.js')).active();
    if (!call?.pc) return 0;
    let frames = 0;
    (await call.pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded || 0;
    });
    return frames;
  });
}

/** Waits until the page decodes `more` frames beyond what it has now. */
async function framesGrow(page, what, more = 10) {
  const start = await framesDecoded(page);
  await eventually(async () => (await framesDecoded(page)) >= start + more, { what });
}

/** The width of the frames a video element shows (0 before the first). */
function videoWidth(locator) {
  return locator.evaluate((v) => v.videoWidth);
}

/** `signal` frames of `kind` the page sent. */
function signalsSent(who, kind) {
  return who.sent.filter((f) => f.op === 'signal' && f.kind === kind).length;
}

/** m:ss → seconds. */
function seconds(text) {
  const [m, s] = text.split(':').map(Number);
  return m * 60 + s;
}

/**
 * Waits for both call clocks to pass 0:00, hangs up from the first, and
 * checks that both people are told how long the call lasted.
 */
async function hangUpShowingDuration(first, firstPanel, second, secondPanel) {
  for (const panel of [firstPanel, secondPanel]) {
    const clock = panel.getByLabel('Call duration');
    await eventually(async () => /^\d+:\d\d$/.test(await clock.textContent()) && (await clock.textContent()) !== '0:00', { what: 'the call clock to run' });
  }
  const shown = seconds(await firstPanel.getByLabel('Call duration').textContent());
  await firstPanel.getByRole('button', { name: 'Hang up' }).click();
  for (const [who, least] of [[first, shown], [second, 1]]) {
    const toast = who.page.locator('#toasts').getByText(/^Call ended · \d+:\d\d$/);
    await toast.waitFor();
    const text = await toast.textContent();
    assert.ok(seconds(text.replace('Call ended · ', '')) >= least, `the duration shown at the end (${text}) covers the call`);
  }
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
  // ...and the panel shows the grade it reported.
  await anaPanel.getByText(/^Quality: (Good|Fair|Poor)/).waitFor();

  // Ana hangs up: both panels close, both are told how long it lasted, and
  // the call is over.
  await hangUpShowingDuration(ana, anaPanel, bob, bob.page.getByRole('region', { name: 'Call with Ana' }));
  await bob.page.getByRole('region', { name: 'Call with Ana' }).waitFor({ state: 'detached' });
  await anaPanel.waitFor({ state: 'detached' });
  const ended = await apiCall(t.server, 'GET', `/calls/${callId}`, { token });
  assert.equal(ended.status, 'ended');

  await done(ana, bob);
});

test('a video call shows each camera to the other, turns a camera off and on, and hangs up', async () => {
  const ana = await person(t.browser, t.server);
  const bob = await person(t.browser, t.server);
  await register(ana.page, 'Ana');
  const bobUser = await register(bob.page, 'Bob');

  await ana.page.goto(`/u/${bobUser.id}`);
  await ana.page.getByRole('button', { name: 'Video call' }).click();
  const ring = bob.page.getByRole('alertdialog', { name: 'Ana' });
  await ring.getByText('Incoming video call').waitFor();
  await ring.getByRole('button', { name: 'Accept' }).click();
  const anaPanel = ana.page.getByRole('region', { name: 'Call with Bob' });
  const bobPanel = bob.page.getByRole('region', { name: 'Call with Ana' });
  await mediaFlows(ana.page, 'Ana');
  await mediaFlows(bob.page, 'Bob');

  // Each sees a decoded frame of the other's camera, and frames keep coming.
  const bobOnAna = anaPanel.getByLabel("Bob's camera");
  const anaOnBob = bobPanel.getByLabel("Ana's camera");
  await eventually(async () => (await videoWidth(bobOnAna)) > 0, { what: "a frame of Bob's camera at Ana's" });
  await eventually(async () => (await videoWidth(anaOnBob)) > 0, { what: "a frame of Ana's camera at Bob's" });
  await framesGrow(ana.page, "Bob's video reaching Ana");
  await shot(ana.page, 'call-video');

  // Bob turns his camera off: it is released (not just blacked out) and
  // Ana's view of it goes away, through a renegotiation.
  const offersBefore = signalsSent(bob, 'offer');
  await bobPanel.getByRole('button', { name: 'Camera off' }).click();
  await bobPanel.getByRole('button', { name: 'Camera on' }).waitFor();
  const bobTracks = await bob.page.evaluate(async () => (await import('/js/calls.js')).active().local.getVideoTracks().length);
  assert.equal(bobTracks, 0, "Bob's camera is released");
  await eventually(async () => (await anaPanel.getAttribute('data-remote-camera')) === 'off', { what: "Bob's camera to go off at Ana's" });
  assert.equal(await bobOnAna.isHidden(), true);
  assert.ok(signalsSent(bob, 'offer') > offersBefore, 'camera off renegotiated over the socket');

  // And on again: Ana decodes his frames again.
  await bobPanel.getByRole('button', { name: 'Camera on' }).click();
  await bobPanel.getByRole('button', { name: 'Camera off' }).waitFor();
  await eventually(async () => (await anaPanel.getAttribute('data-remote-camera')) === 'on', { what: "Bob's camera to come back at Ana's" });
  await framesGrow(ana.page, "Bob's video reaching Ana again");
  assert.ok(await bobOnAna.isVisible());

  await hangUpShowingDuration(ana, anaPanel, bob, bobPanel);
  await bobPanel.waitFor({ state: 'detached' });
  await done(ana, bob);
});

test('a teacher shares the screen in a voice call and the learner sees it; the learner has no share control', async () => {
  const tess = await person(t.browser, t.server);
  const bob = await person(t.browser, t.server);
  // A teacher is made by an operator; she signs in like anyone.
  const teacher = { email: email('Tess'), password: 'correct horse battery' };
  await t.server.cli(['admin', 'create-user', '--email', teacher.email, '--password', teacher.password, '--role', 'teacher', '--display-name', 'Tess']);
  await login(tess.page, teacher);
  const bobUser = await register(bob.page, 'Bob');

  await tess.page.goto(`/u/${bobUser.id}`);
  await tess.page.getByRole('button', { name: 'Call', exact: true }).click();
  const ring = bob.page.getByRole('alertdialog', { name: 'Tess' });
  await ring.getByRole('button', { name: 'Accept' }).click();
  const tessPanel = tess.page.getByRole('region', { name: 'Call with Bob' });
  const bobPanel = bob.page.getByRole('region', { name: 'Call with Tess' });
  await mediaFlows(tess.page, 'Tess');
  await mediaFlows(bob.page, 'Bob');

  // Only the teacher has the control.
  assert.equal(await bobPanel.getByRole('button', { name: 'Share screen' }).count(), 0, 'a learner cannot share');
  const share = tessPanel.getByRole('button', { name: 'Share screen' });
  await eventually(() => share.isEnabled(), { what: 'the share control to be ready' });
  assert.equal(await framesDecoded(bob.page), 0, 'a voice call carries no video before the share');

  // She shares: the screen is a new track, so the call renegotiates over
  // the socket, and Bob decodes it.
  const offersBefore = signalsSent(tess, 'offer');
  await share.click();
  await tessPanel.getByRole('button', { name: 'Stop sharing' }).waitFor();
  await bobPanel.getByText('Tess is sharing their screen').waitFor();
  const screen = bobPanel.getByLabel("Tess's screen");
  await eventually(async () => (await videoWidth(screen)) > 0, { what: 'a frame of the shared screen at Bob\'s' });
  await framesGrow(bob.page, 'the shared screen reaching Bob');
  assert.ok(signalsSent(tess, 'offer') > offersBefore, 'the share renegotiated');
  assert.ok(signalsSent(bob, 'answer') >= 2, 'Bob answered the renegotiation');
  assert.ok(await audioBytesIn(bob.page) > 0, 'the call still carries sound');
  await shot(bob.page, 'call-screen-share');

  // She stops: Bob's view of the screen goes away.
  await tessPanel.getByRole('button', { name: 'Stop sharing' }).click();
  await eventually(async () => (await bobPanel.getAttribute('data-remote-screen')) === 'off', { what: 'the share to end at Bob\'s' });
  await bobPanel.getByText('Connected', { exact: true }).waitFor();
  assert.equal(await screen.isHidden(), true);

  await tessPanel.getByRole('button', { name: 'Hang up' }).click();
  await bobPanel.waitFor({ state: 'detached' });
  await done(tess, bob);
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
