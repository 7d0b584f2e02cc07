// Voice rooms in the browser: a host creates a room and speaks, a second
// person joins and hears the host through the server's SFU (WebRTC between
// each browser and the server), and the room follows who comes and goes.
// With three people: each speaker is heard by the others (getStats per
// stream, named by the SFU's track lists), muting stops a speaker's audio,
// and a listener is heard only once the host invites them to speak.

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

/**
 * Who sent each media section the SFU sends this person: `mid -> user_id`,
 * from the `tracks` lists of the SFU's answers and offers (over the socket,
 * or in the replies of the REST fallback that `recordSignalReplies` keeps).
 */
function trackOwners(p) {
  const owners = new Map();
  const visit = (v) => {
    if (!v || typeof v !== 'object') return;
    if (Array.isArray(v.tracks)) {
      for (const t of v.tracks) if (t && t.mid !== undefined && t.user_id !== undefined) owners.set(String(t.mid), t.user_id);
    }
    for (const x of Object.values(v)) visit(x);
  };
  for (const f of p.frames) visit(f);
  for (const r of p.signalReplies) visit(r);
  return owners;
}

/** Keeps the bodies of the page's REST signal replies in p.signalReplies. */
function recordSignalReplies(p) {
  p.signalReplies = [];
  p.page.on('response', async (res) => {
    if (!/\/api\/v1\/voice-rooms\/\d+\/signal$/.test(new URL(res.url()).pathname)) return;
    try {
      p.signalReplies.push(await res.json());
    } catch {
      // no body: nothing to learn
    }
  });
}

/**
 * Audio this person has received, per sender and stream:
 * {user_id: {"mid/ssrc": packets}}, from getStats of each receiving
 * transceiver (inbound-rtp), its mid named by the SFU's track lists. A
 * stream on a mid the SFU never named is filed under `unknown:<mid>`.
 */
async function audioBySender(p) {
  const streams = await p.page.evaluate(async () => {
    const out = [];
    for (const pc of window.__pcs || []) {
      if (pc.connectionState === 'closed') continue;
      for (const t of pc.getTransceivers()) {
        if (!t.mid || t.receiver.track?.kind !== 'audio') continue;
        (await t.receiver.getStats()).forEach((s) => {
          if (s.type === 'inbound-rtp' && s.kind === 'audio' && s.packetsReceived > 0) {
            out.push({ mid: t.mid, ssrc: s.ssrc, packets: s.packetsReceived, bytes: s.bytesReceived });
          }
        });
      }
    }
    return out;
  });
  const owners = trackOwners(p);
  const bySender = {};
  for (const s of streams) {
    const key = owners.has(s.mid) ? String(owners.get(s.mid)) : `unknown:${s.mid}`;
    (bySender[key] ||= {})[`${s.mid}/${s.ssrc}`] = s.packets;
  }
  return bySender;
}

/** Packets `listener` has received from `speaker`, all streams together. */
async function packetsFrom(listener, speaker) {
  return Object.values((await audioBySender(listener))[speaker.id] || {}).reduce((a, b) => a + b, 0);
}

/** Waits until `listener` receives new audio from `speaker`: one of its streams gains 25+ packets. */
async function hears(listener, speaker) {
  const before = (await audioBySender(listener))[speaker.id] || {};
  await eventually(async () => {
    const now = (await audioBySender(listener))[speaker.id] || {};
    return Object.entries(now).some(([stream, packets]) => packets >= (before[stream] || 0) + 25);
  }, { what: `${speaker.name}'s audio at ${listener.name}` });
}

/**
 * Waits until `listener` receives no more audio from `speaker`: two counts
 * at least a second apart are equal (Opus sends a packet at least every
 * 400 ms, DTX included, so a live stream never stands still that long).
 */
async function hearsNothingFrom(listener, speaker) {
  let last = null;
  await eventually(async () => {
    const now = { at: Date.now(), packets: await packetsFrom(listener, speaker) };
    if (!last) {
      last = now;
      return false;
    }
    if (now.at - last.at < 1000) return false;
    if (now.packets === last.packets) return true;
    last = now;
    return false;
  }, { every: 200, what: `${speaker.name}'s audio at ${listener.name} to stop` });
}

/** Audio this page has sent (outbound-rtp), in bytes. */
function audioBytesOut(page) {
  return page.evaluate(async () => {
    let bytes = 0;
    for (const pc of window.__pcs || []) {
      (await pc.getStats()).forEach((s) => {
        if (s.type === 'outbound-rtp' && s.kind === 'audio') bytes += s.bytesSent || 0;
      });
    }
    return bytes;
  });
}

/** Whose audio this person receives: their user ids, sorted. */
async function heardBy(p) {
  return Object.keys(await audioBySender(p)).sort();
}

test('a voice room with three browsers: speakers are heard by the others through the SFU, muting stops it, a listener speaks once invited', async () => {
  const people = [];
  for (const name of ['Ana', 'Bob', 'Cleo']) {
    const p = await person(t.browser, t.server);
    await trackPeerConnections(p);
    recordSignalReplies(p);
    Object.assign(p, await register(p.page, name));
    people.push(p);
  }
  const [ana, bob, cleo] = people;
  const seat = (p, who) => p.page.getByRole('list', { name: 'In the room' }).getByRole('listitem').filter({ hasText: who.name });
  const muteButton = (p) => p.page.getByRole('button', { name: 'Mute', exact: true });

  // Ana (the host) opens a room with two speaker seats, hers and one more.
  await ana.page.goto('/voice');
  await ana.page.getByRole('button', { name: 'New room' }).click();
  const dialog = ana.page.getByRole('dialog', { name: 'New voice room' });
  await dialog.getByLabel('Name').fill('Three of us');
  await dialog.getByLabel('Topic').fill('small talk');
  await dialog.getByLabel('Level').selectOption('intermediate');
  await dialog.getByLabel('Speaker seats').fill('2');
  await dialog.getByRole('button', { name: 'Create' }).click();
  await ana.page.waitForURL(/\/voice\/\d+$/);
  await ana.page.getByRole('status').filter({ hasText: 'Connected' }).waitFor();

  // Bob joins and takes the free seat; Cleo joins when the seats are taken
  // and listens.
  for (const p of [bob, cleo]) {
    await p.page.goto('/voice');
    await p.page.getByRole('link', { name: /Three of us/ }).click();
    await p.page.getByRole('list', { name: 'In the room' }).getByText(`${p.name} (you)`).waitFor();
    await p.page.getByRole('status').filter({ hasText: 'Connected' }).waitFor();
  }
  await seat(ana, cleo).waitFor();
  await seat(cleo, bob).getByText('speaker').waitFor();
  await seat(cleo, cleo).getByText('listener').waitFor();

  // Each speaker's audio reaches the other two, stream by stream.
  await hears(bob, ana);
  await hears(cleo, ana);
  await hears(ana, bob);
  await hears(cleo, bob);

  // Cleo, a listener, has no working microphone control (Mute is disabled,
  // she may only raise her hand), sends nothing and is heard by nobody.
  assert.equal(await muteButton(cleo).isDisabled(), true, "Cleo's Mute while a listener");
  await cleo.page.getByRole('button', { name: 'Raise hand' }).waitFor();
  assert.equal(await audioBytesOut(cleo.page), 0, 'a listener sends no audio');
  assert.deepEqual(await heardBy(ana), [String(bob.id)], 'whom Ana hears');
  assert.deepEqual(await heardBy(bob), [String(ana.id)], 'whom Bob hears');

  // Ana mutes herself with the room's Mute button: her track goes silent
  // and the server mutes her seat, so the SFU stops forwarding her audio.
  await muteButton(ana).click();
  await ana.page.getByRole('button', { name: 'Unmute' }).waitFor();
  await seat(bob, ana).getByText('muted').waitFor();
  await hearsNothingFrom(bob, ana);
  await hearsNothingFrom(cleo, ana);
  // ...while Bob is still heard: the room did not just go quiet.
  await hears(cleo, bob);
  await hears(ana, bob);

  // Unmuted, she is heard again.
  await ana.page.getByRole('button', { name: 'Unmute' }).click();
  await muteButton(ana).waitFor();
  await hears(bob, ana);
  await hears(cleo, ana);

  // The seats are full, so inviting Cleo is refused until Ana moves Bob
  // to the listeners; his audio then stops reaching the others.
  await seat(ana, cleo).getByRole('button', { name: 'Invite to speak' }).click();
  await ana.page.getByRole('alert').filter({ hasText: /every speaker seat is taken/ }).waitFor();
  assert.equal(await muteButton(cleo).isDisabled(), true, "Cleo's Mute after a refused invitation");
  await seat(ana, bob).getByRole('button', { name: 'Move to listeners' }).click();
  await seat(bob, bob).getByText('listener').waitFor();
  await eventually(() => muteButton(bob).isDisabled(), { what: "Bob's Mute to be disabled" });
  await hearsNothingFrom(ana, bob);
  await hearsNothingFrom(cleo, bob);
  // And his page lets go of the microphone: nothing live is sent any more.
  await eventually(() => bob.page.evaluate(() => (window.__pcs || []).every((pc) =>
    pc.getSenders().every((s) => !s.track || s.track.readyState === 'ended'))), { what: "Bob's microphone released" });

  // Invited now, Cleo's audio reaches both others.
  await seat(ana, cleo).getByRole('button', { name: 'Invite to speak' }).click();
  await seat(cleo, cleo).getByText('speaker').waitFor();
  await eventually(async () => !(await muteButton(cleo).isDisabled()), { what: "Cleo's Mute to be enabled" });
  await hears(ana, cleo);
  await hears(bob, cleo);
  for (const p of people) {
    const unknown = (await heardBy(p)).filter((k) => k.startsWith('unknown'));
    assert.deepEqual(unknown, [], `${p.name} receives no stream the SFU did not name`);
  }
  await shot(cleo.page, 'voice-room-three');
  await done(ana, bob, cleo);
});
