// Chat in the browser: live conversations (unread badges, typing, seen,
// replies, an image shared, edit and delete, delivered over the socket), a conversation read
// later (history over REST after a reload), and a dropped connection that
// resumes with since_seq without duplicates or gaps, with what was written
// offline sent once when the network returns.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { person, register, shot, eventually, picture, loadedImage, goOffline } from '../lib/browser.js';
import { suite, done } from '../lib/suite.js';

const t = suite();

/** The texts of the messages shown, in order. */
function messageTexts(page) {
  return page.locator('ol.messages > li.msg .content').allTextContents();
}

test('two people chat live: unread badge, typing, seen, reply, image share, edit, delete; a reload keeps the history', async () => {
  const ana = await person(t.browser, t.server);
  const bob = await person(t.browser, t.server);
  await register(ana.page, 'Ana');
  const bobUser = await register(bob.page, 'Bob');
  await bob.page.goto('/chat');

  // Ana starts a conversation from Bob's profile.
  await ana.page.goto(`/u/${bobUser.id}`);
  await ana.page.getByRole('button', { name: 'Message' }).click();
  await ana.page.waitForURL(/\/chat\/\d+$/);
  const box = ana.page.getByRole('textbox', { name: 'Message Bob' });
  await box.fill('Hola Bob, ¿practicamos?');
  await box.press('Enter');
  await ana.page.getByRole('log').getByText('Hola Bob, ¿practicamos?').waitFor();

  // Bob's list shows the new conversation with one unread message.
  const room = bob.page.getByRole('link', { name: /^Ana, 1 unread/ });
  await room.waitFor();
  await shot(bob.page, 'chat-list-unread');
  await room.click();
  await bob.page.getByRole('log').getByText('Hola Bob, ¿practicamos?').waitFor();

  // Ana sees it was seen.
  await ana.page.getByRole('log').locator('li.msg.mine .receipt.seen').waitFor();

  // Bob types: Ana sees it.
  await bob.page.getByRole('textbox', { name: 'Message Ana' }).pressSequentially('Cla');
  await ana.page.getByText('Bob is typing…').waitFor();

  // Bob replies to her message.
  await bob.page.getByRole('log').getByText('Hola Bob, ¿practicamos?').hover();
  await bob.page.getByRole('log').getByRole('button', { name: 'Reply' }).first().click();
  await bob.page.getByRole('textbox', { name: 'Message Ana' }).fill('¡Claro que sí!');
  await bob.page.getByRole('button', { name: 'Send' }).click();
  const reply = ana.page.getByRole('log').locator('li.msg').filter({ hasText: '¡Claro que sí!' });
  await reply.waitFor();
  assert.match(await reply.locator('.reply-quote').textContent(), /Ana: Hola Bob/);
  assert.ok(
    ana.frames.some((f) => f.op === 'event' && f.type === 'message' && f.topic?.startsWith('chat:') && f.data?.content === '¡Claro que sí!'),
    'the reply reached Ana over the socket',
  );
  await shot(ana.page, 'chat-conversation');

  // Ana shares a picture; Bob sees it arrive live and load, from a URL
  // signed for him.
  const file = await picture(ana.page, { width: 480, height: 360, name: 'mercado.png', label: 'Mercado' });
  await ana.page.getByLabel('Attach a file').setInputFiles(file);
  const anaImage = ana.page.getByRole('log').locator('li.msg.mine:not(.pending)').getByRole('img', { name: 'Shared image' });
  await loadedImage(anaImage);
  const bobImage = bob.page.getByRole('log').locator('li.msg:not(.mine)').getByRole('img', { name: 'Shared image' });
  assert.deepEqual(await loadedImage(bobImage), { width: 320, height: 240 }, 'the thumbnail');
  assert.match(await bobImage.getAttribute('src'), new RegExp(`/api/v1/media/\\d+/thumbnail\\?viewer=${bobUser.id}&`));
  assert.ok(
    bob.frames.some((f) => f.op === 'event' && f.type === 'message' && f.data?.message_type === 'image' && f.data?.media_id),
    'the image message reached Bob over the socket',
  );
  // Ana's messages were seen, the picture too.
  await eventually(async () => (await ana.page.getByRole('log').locator('li.msg.mine .receipt.seen').count()) === 2, { what: 'both of Ana\'s messages seen' });
  // His conversation list says what came last.
  await bob.page.getByRole('navigation', { name: 'Conversations' }).getByText('Photo', { exact: true }).waitFor();
  await shot(bob.page, 'chat-image');

  // Ana edits her message; Bob sees the new text, marked edited.
  const mine = ana.page.getByRole('log').locator('li.msg.mine').first();
  await mine.hover();
  await mine.getByRole('button', { name: 'Edit' }).click();
  await ana.page.getByRole('dialog').getByLabel('Message').fill('Hola Bob, ¿practicamos español?');
  await ana.page.getByRole('dialog').getByRole('button', { name: 'Save' }).click();
  await bob.page.getByRole('log').locator('li.msg').filter({ hasText: 'practicamos español?' }).getByText('edited').waitFor();

  // Bob deletes his reply; Ana sees it go.
  const his = bob.page.getByRole('log').locator('li.msg.mine').filter({ hasText: '¡Claro que sí!' });
  await his.hover();
  await his.getByRole('button', { name: 'Delete' }).click();
  await bob.page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
  await ana.page.getByRole('log').getByText('This message was deleted.').waitFor();

  // A reload keeps the history: the texts, the deletion and the picture.
  for (const p of [ana, bob]) {
    await p.page.reload();
    await p.page.getByRole('log').getByText('This message was deleted.').waitFor();
    assert.deepEqual(await messageTexts(p.page), ['Hola Bob, ¿practicamos español?']);
    await loadedImage(p.page.getByRole('log').getByRole('img', { name: 'Shared image' }));
  }
  await done(ana, bob);
});

test('after a lost connection the conversation resumes with no duplicates or gaps, and what was sent offline goes out once', async () => {
  const ana = await person(t.browser, t.server);
  const bob = await person(t.browser, t.server);
  await register(ana.page, 'Ana');
  const bobUser = await register(bob.page, 'Bob');
  await ana.page.goto(`/u/${bobUser.id}`);
  await ana.page.getByRole('button', { name: 'Message' }).click();
  await ana.page.waitForURL(/\/chat\/\d+$/);
  const roomPath = new URL(ana.page.url()).pathname;
  const anaBox = ana.page.getByRole('textbox', { name: 'Message Bob' });
  await anaBox.fill('one');
  await anaBox.press('Enter');

  await bob.page.goto(roomPath);
  await bob.page.getByRole('log').getByText('one').waitFor();

  // Bob's network goes (and with it his socket, closed and kept closed).
  await goOffline(bob);
  await bob.page.getByText('You are offline. Reconnecting…').waitFor();

  // Meanwhile Ana writes three messages, and Bob writes one (it waits).
  for (const text of ['two', 'three', 'four']) {
    await anaBox.fill(text);
    await anaBox.press('Enter');
    await ana.page.getByRole('log').getByText(text, { exact: true }).waitFor();
  }
  const bobBox = bob.page.getByRole('textbox', { name: 'Message Ana' });
  await bobBox.fill('sent while offline');
  await bobBox.press('Enter');

  await bob.page.getByRole('log').locator('li.msg.pending').filter({ hasText: 'sent while offline' }).waitFor();

  // The network returns: the socket resubscribes with since_seq, and the
  // waiting message goes out (once: the same client_msg_id).
  await bob.context.setOffline(false);
  await bob.page.evaluate(async () => {
    const { app } = await import('/js/app.js');
    app.socket.wanted = true;
    app.socket.reconnectNow();
  });
  await bob.page.getByText('You are offline. Reconnecting…').waitFor({ state: 'hidden' });
  await ana.page.getByRole('log').getByText('sent while offline').waitFor();
  await eventually(async () => (await messageTexts(bob.page)).length === 5, { what: "Bob's five messages" });
  assert.deepEqual(await messageTexts(bob.page), ['one', 'two', 'three', 'four', 'sent while offline']);
  assert.deepEqual(await messageTexts(ana.page), ['one', 'two', 'three', 'four', 'sent while offline']);
  // A reload (history over REST) shows the same, once each.
  await bob.page.reload();
  await bob.page.getByRole('log').getByText('sent while offline').waitFor();
  assert.deepEqual(await messageTexts(bob.page), ['one', 'two', 'three', 'four', 'sent while offline']);
  await done(ana, bob);
});

test('a conversation read later: unread badge, history, reply quote, seen, edit and delete after a reload', async () => {
  const ana = await person(t.browser, t.server);
  const bob = await person(t.browser, t.server);
  await register(ana.page, 'Ana');
  const bobUser = await register(bob.page, 'Bob');

  // Ana starts a conversation from Bob's profile and writes twice.
  await ana.page.goto(`/u/${bobUser.id}`);
  await ana.page.getByRole('button', { name: 'Message' }).click();
  await ana.page.waitForURL(/\/chat\/\d+$/);
  const roomPath = new URL(ana.page.url()).pathname;
  const box = ana.page.getByRole('textbox', { name: 'Message Bob' });
  for (const text of ['Hola Bob, ¿practicamos?', '¿Mañana a las diez?']) {
    await box.fill(text);
    await box.press('Enter');
    await ana.page.getByRole('log').locator('li.msg:not(.pending)').filter({ hasText: text }).waitFor();
  }
  assert.deepEqual(await messageTexts(ana.page), ['Hola Bob, ¿practicamos?', '¿Mañana a las diez?']);

  // Bob's list shows the conversation with two unread messages.
  await bob.page.goto('/chat');
  const room = bob.page.getByRole('link', { name: /^Ana, 2 unread/ });
  await room.waitFor();
  await shot(bob.page, 'chat-list-unread');
  await room.click();
  await bob.page.getByRole('log').getByText('¿Mañana a las diez?').waitFor();
  assert.deepEqual(await messageTexts(bob.page), ['Hola Bob, ¿practicamos?', '¿Mañana a las diez?']);
  // Opening it read them: the badge is gone.
  await bob.page.getByRole('navigation', { name: 'Conversations' }).getByRole('link', { name: /^Ana, (online|offline)$/ }).waitFor();

  // Bob replies to her first message.
  const first = bob.page.getByRole('log').locator('li.msg').filter({ hasText: 'Hola Bob' });
  await first.hover();
  await first.getByRole('button', { name: 'Reply' }).click();
  await bob.page.getByRole('textbox', { name: 'Message Ana' }).fill('¡Claro que sí!');
  await bob.page.getByRole('button', { name: 'Send' }).click();
  await bob.page.getByRole('log').locator('li.msg.mine:not(.pending)').filter({ hasText: '¡Claro que sí!' }).waitFor();

  // Ana opens the conversation again: the reply quotes her message, and
  // hers show as seen.
  await ana.page.goto(roomPath);
  const reply = ana.page.getByRole('log').locator('li.msg').filter({ hasText: '¡Claro que sí!' });
  await reply.waitFor();
  assert.match(await reply.locator('.reply-quote').textContent(), /^Ana: Hola Bob/);
  assert.equal(await ana.page.getByRole('log').locator('li.msg.mine .receipt.seen').count(), 2);
  await shot(ana.page, 'chat-conversation');

  // Ana edits her second message.
  const second = ana.page.getByRole('log').locator('li.msg.mine').filter({ hasText: '¿Mañana a las diez?' });
  await second.hover();
  await second.getByRole('button', { name: 'Edit' }).click();
  await ana.page.getByRole('dialog').getByLabel('Message').fill('¿Mañana a las once?');
  await ana.page.getByRole('dialog').getByRole('button', { name: 'Save' }).click();
  await ana.page.getByRole('log').locator('li.msg').filter({ hasText: '¿Mañana a las once?' }).getByText('edited').waitFor();

  // Bob deletes his reply.
  const his = bob.page.getByRole('log').locator('li.msg.mine').filter({ hasText: '¡Claro que sí!' });
  await his.hover();
  await his.getByRole('button', { name: 'Delete' }).click();
  await bob.page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
  await bob.page.getByRole('log').getByText('This message was deleted.').waitFor();

  // Each sees the other's change on opening the conversation.
  await bob.page.reload();
  await bob.page.getByRole('log').locator('li.msg').filter({ hasText: '¿Mañana a las once?' }).getByText('edited').waitFor();
  await ana.page.reload();
  await ana.page.getByRole('log').getByText('This message was deleted.').waitFor();
  assert.deepEqual(await messageTexts(ana.page), ['Hola Bob, ¿practicamos?', '¿Mañana a las once?']);

  await done(ana, bob);
});
