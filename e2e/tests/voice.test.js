// Voice rooms in the browser: a host creates a room and speaks, a second
// person joins and hears the host through the server's SFU (WebRTC between
// each browser and the server), and the room follows who comes and goes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { person, register, shot, eventually } from '../lib/browser.js';
import { suite, done } from '../lib/suite.js';

const t = suite();

/** Keeps every RTCPeerConnection the page makes in window.__pcs (a test hook). */
async function trackPeerConnections(p) {
  await p.context.addInitScript(() => {
    const Native = window.RTCPeerConnection;
    window.__pcs = [];
    window.RTCPeerConnection = class extends Native {
      constructor(...args) {
        super(...args);
        window.__pcs.push(this);
      }
    };
  });
}

/** Audio bytes the page has received over all its peer connections. */
function audioBytesIn(page) {
  return page.evaluate(async () => {
    let bytes = 0;
    for (const pc of window.__pcs || []) {
      (await pc.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'audio') bytes += s.bytesReceived || 0;
      });
    }
    return bytes;
  });
}

test('a host opens a voice room, another person joins and hears the host through the SFU', async () => {
  const ana = await person(t.browser, t.server);
  const bob = await person(t.browser, t.server);
  await trackPeerConnections(bob);
  await register(ana.page, 'Ana');
  await register(bob.page, 'Bob');

  await ana.page.goto('/voice');
  await ana.page.getByRole('button', { name: 'New room' }).click();
  const dialog = ana.page.getByRole('dialog', { name: 'New voice room' });
  await dialog.getByLabel('Name').fill('Spanish for travellers');
  await dialog.getByLabel('Topic').fill('travel');
  await dialog.getByLabel('Level').selectOption('beginner');
  await dialog.getByRole('button', { name: 'Create' }).click();
  await ana.page.waitForURL(/\/voice\/\d+$/);
  await ana.page.getByRole('heading', { name: 'Spanish for travellers', level: 1 }).waitFor();
  await ana.page.getByRole('status').filter({ hasText: 'Connected' }).waitFor();

  // Bob finds the room in the list and joins it.
  await bob.page.goto('/voice');
  await bob.page.getByRole('link', { name: /Spanish for travellers/ }).click();
  await bob.page.getByRole('heading', { name: 'Spanish for travellers', level: 1 }).waitFor();
  const people = bob.page.getByRole('list', { name: 'In the room' });
  await people.getByText('Ana').waitFor();
  await people.getByText('Bob (you)').waitFor();
  await bob.page.getByRole('status').filter({ hasText: 'Connected' }).waitFor();

  // Ana sees him arrive, live.
  await ana.page.getByRole('list', { name: 'In the room' }).getByText('Bob').waitFor();
  await shot(ana.page, 'voice-room');

  // The host's audio reaches Bob through the SFU.
  await eventually(async () => (await audioBytesIn(bob.page)) > 2000, { what: "Ana's audio at Bob" });

  // Bob leaves; Ana's room shows it.
  await bob.page.getByRole('button', { name: 'Leave' }).click();
  await bob.page.waitForURL((url) => url.pathname === '/voice');
  await ana.page.getByRole('list', { name: 'In the room' }).getByText('Bob').waitFor({ state: 'detached' });
  assert.equal(await ana.page.getByRole('list', { name: 'In the room' }).getByRole('listitem').count(), 1);
  await done(ana, bob);
});
