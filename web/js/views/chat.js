// Chat: the conversation list (unread badges, presence dots, live
// previews) and a conversation (history on scroll-up, live messages,
// typing, "seen", replies, edit/delete, images and files).
//
// Delivery: the conversation subscribes to `chat:{id}` before it reads
// the newest page over REST, so nothing falls between the two; the
// socket resumes with since_seq after a reconnect. Messages are kept by
// seq, so a replayed or repeated event changes nothing; a jump in seq
// (or the server's `resync_required`) is filled over REST. Sending uses a
// client_msg_id: a message that could not be sent stays pending and is
// retried when the connection returns, and a retry never duplicates it.

import * as api from '../api.js';
import * as session from '../session.js';
import * as media from '../media.js';
import { app } from '../app.js';
import { h, avatar, clock, field, uid } from '../dom.js';
import { icon } from '../icons.js';
import { busy, toast, errorText, confirmDialog, modal, reportDialog } from '../ui.js';

/** What a message without text is called in previews and quotes (as in notifications). */
const mediaLabel = (type) => ({ image: 'Photo', video: 'Video', audio: 'Audio', file: 'File' })[type] || type;

const PAGE = 30;
const TYPING_SEND_EVERY_MS = 3000;
const TYPING_SHOW_MS = 7000;

/** Shared between the list and the open conversation while /chat is mounted. */
let mounted = null;

export function render({ params }) {
  const roomId = params.id ? Number(params.id) : null;
  // Moving between conversations keeps the list; only the pane changes.
  if (mounted && document.body.contains(mounted.el)) {
    mounted.open(roomId);
    return { el: mounted.el, title: 'Chat', destroy: mounted.destroyIfLeaving };
  }
  mounted = chatScreen();
  mounted.open(roomId);
  return { el: mounted.el, title: 'Chat', destroy: mounted.destroyIfLeaving };
}

function chatScreen() {
  const me = session.me();
  const rooms = new Map(); // id -> {room, li, offs: []}
  const listEl = h('ul', { 'aria-label': 'Conversations' });
  const emptyEl = h('p', { class: 'muted empty', hidden: true }, 'No conversations yet. Open a profile and press Message.');
  const pane = h('div', { class: 'conversation-pane' });
  const layout = h('div', { class: 'chat-layout' },
    h('nav', { class: 'room-list', 'aria-label': 'Conversations' },
      h('div', { class: 'row between room-list-head' }, h('h1', {}, 'Chat'),
        h('button', { type: 'button', class: 'btn btn-small', onclick: () => newConversation() }, 'New')),
      listEl, emptyEl),
    pane);
  let conversation = null;
  let openId = null;

  const titleOf = (room) => {
    if (room.room_type === 'private') {
      const other = room.participants?.find((p) => p.user.id !== me.id);
      return other?.user.display_name || room.name || 'Conversation';
    }
    return room.name || room.participants?.map((p) => p.user.display_name).join(', ') || 'Group';
  };
  const otherOf = (room) => (room.room_type === 'private' ? room.participants?.find((p) => p.user.id !== me.id)?.user : null);

  const preview = (m) => {
    if (!m) return 'No messages yet';
    if (m.is_deleted) return 'Message deleted';
    const who = m.sender?.id === me.id ? 'You: ' : '';
    if (m.message_type !== 'text' && m.message_type !== 'system') return `${who}${m.content || mediaLabel(m.message_type)}`;
    return `${who}${m.content || ''}`;
  };

  const drawRoom = (entry) => {
    const { room } = entry;
    const other = otherOf(room);
    const unread = room.unread_count || 0;
    const dot = h('span', { class: `presence ${entry.online ? 'online' : ''}` }, avatar(other || { display_name: titleOf(room) }));
    const name = titleOf(room);
    const link = h('a', {
      href: `/chat/${room.id}`,
      class: 'room-link',
      'aria-current': room.id === openId ? 'page' : null,
      'aria-label': `${name}${unread ? `, ${unread} unread` : ''}${other ? (entry.online ? ', online' : ', offline') : ''}`,
    }, dot,
    h('span', { class: 'grow' }, h('strong', { class: 'room-name' }, name), h('span', { class: 'preview' }, preview(room.last_message))),
    unread ? h('span', { class: 'unread-badge', 'aria-hidden': 'true' }, unread > 99 ? '99+' : String(unread)) : null);
    const li = h('li', { dataset: { roomId: String(room.id) } }, link);
    if (entry.li) entry.li.replaceWith(li);
    entry.li = li;
  };

  const sortList = () => {
    const entries = [...rooms.values()].sort((a, b) => (b.room.last_message_at || b.room.updated_at || '').localeCompare(a.room.last_message_at || a.room.updated_at || ''));
    listEl.replaceChildren(...entries.map((e) => e.li));
    emptyEl.hidden = entries.length > 0;
  };

  const track = (room) => {
    let entry = rooms.get(room.id);
    if (!entry) {
      entry = { room, li: null, offs: [], online: false };
      rooms.set(room.id, entry);
      entry.offs.push(app.socket.subscribe(`chat:${room.id}`, (frame) => onRoomEvent(entry, frame)));
      const other = otherOf(room);
      if (other) {
        entry.offs.push(app.socket.subscribe(`presence:${other.id}`, (frame) => {
          if (frame.type !== 'presence') return;
          entry.online = Boolean(frame.data?.online);
          entry.lastSeen = frame.data?.last_seen;
          drawRoom(entry);
          if (conversation?.roomId === room.id) conversation.setPresence(entry.online, entry.lastSeen);
        }));
      }
    } else {
      // A fresher copy from the server, but what this client already read
      // (a read it just sent) stays read.
      const readSeq = Math.max(room.last_read_seq || 0, entry.room.last_read_seq || 0);
      const lastSeq = Math.max(room.last_seq || 0, entry.room.last_seq || 0);
      entry.room = { ...room, last_read_seq: readSeq, last_seq: lastSeq, unread_count: Math.min(room.unread_count ?? 0, Math.max(0, lastSeq - readSeq)) };
    }
    drawRoom(entry);
    return entry;
  };

  const onRoomEvent = (entry, frame) => {
    const room = entry.room;
    if (frame.type === 'message' && frame.data) {
      const m = frame.data;
      room.last_message = m;
      room.last_message_at = m.created_at;
      room.last_seq = Math.max(room.last_seq || 0, m.seq);
      const viewing = conversation?.roomId === room.id && conversation.visible();
      if (m.sender?.id !== me.id && !viewing) room.unread_count = (room.unread_count || 0) + 1;
      drawRoom(entry);
      sortList();
    } else if (frame.type === 'read' && frame.data?.user_id === me.id) {
      room.last_read_seq = frame.data.seq;
      room.unread_count = Math.max(0, (room.last_seq || 0) - frame.data.seq);
      drawRoom(entry);
    } else if ((frame.type === 'message_edited' || frame.type === 'message_deleted') && room.last_message?.id === frame.data?.id) {
      room.last_message = frame.type === 'message_deleted' ? { ...room.last_message, is_deleted: true } : frame.data;
      drawRoom(entry);
    } else if (frame.type === 'room_updated' && frame.data?.name !== undefined) {
      room.name = frame.data.name;
      drawRoom(entry);
    }
  };

  const loadRooms = async () => {
    try {
      let cursor = null;
      do {
        const page = await api.get('/chat/rooms', { cursor, limit: 50 });
        for (const room of page.items) track(room);
        cursor = page.next_cursor;
      } while (cursor && rooms.size < 200);
      sortList();
    } catch (err) {
      emptyEl.hidden = false;
      emptyEl.textContent = err.status === 404 ? 'Chat is not available on this server yet.' : errorText(err);
    }
  };

  const offUser = app.socket.on(`user:${me.id}`, (frame) => {
    if (frame.type === 'chat_room_added') {
      api.get(`/chat/rooms/${frame.data.room_id}`).then((room) => {
        track(room);
        sortList();
      }).catch(() => {});
    } else if (frame.type === 'chat_room_removed') {
      const entry = rooms.get(frame.data.room_id);
      if (entry) {
        entry.offs.forEach((off) => off());
        entry.li.remove();
        rooms.delete(frame.data.room_id);
      }
      if (openId === frame.data.room_id) app.navigate('/chat');
    }
  });

  async function newConversation() {
    const picked = await modal('New conversation', (close) => {
      const list = h('div', { class: 'stack' }, h('p', { class: 'muted' }, 'Loading the people you follow…'));
      const name = h('input', { type: 'text', maxlength: 100 });
      const form = h('form', {
        class: 'stack',
        onsubmit: (e) => {
          e.preventDefault();
          const ids = [...form.querySelectorAll('input[type=checkbox]:checked')].map((c) => Number(c.value));
          if (ids.length) close({ ids, name: name.value.trim() });
        },
      }, h('fieldset', {}, h('legend', {}, 'With'), list), field('Group name (for more than one person)', name).field,
      h('div', { class: 'row end' },
        h('button', { type: 'button', class: 'btn', onclick: () => close(undefined) }, 'Cancel'),
        h('button', { type: 'submit', class: 'btn btn-primary' }, 'Start')));
      api.get(`/users/${me.id}/following`, { limit: 100 }).then((page) => {
        list.replaceChildren(...(page.items.length ? page.items.map((u) => {
          const id = uid('pick');
          return h('div', { class: 'row gap' }, h('input', { type: 'checkbox', id, value: String(u.id) }), h('label', { for: id }, u.display_name));
        }) : [h('p', { class: 'muted' }, 'Follow people to start conversations with them.')]));
      }, (err) => list.replaceChildren(h('p', { class: 'form-error' }, errorText(err))));
      return form;
    });
    if (!picked) return;
    try {
      const body = picked.ids.length === 1
        ? { room_type: 'private', participant_ids: picked.ids }
        : { room_type: 'group', participant_ids: picked.ids, name: picked.name || undefined };
      const room = await api.post('/chat/rooms', body);
      track(room);
      sortList();
      app.navigate(`/chat/${room.id}`);
    } catch (err) {
      toast(errorText(err), { kind: 'error' });
    }
  }

  const open = async (roomId) => {
    openId = roomId;
    layout.classList.toggle('in-room', Boolean(roomId));
    for (const entry of rooms.values()) drawRoom(entry);
    if (conversation?.roomId === roomId) return;
    conversation?.destroy();
    conversation = null;
    if (!roomId) {
      pane.replaceChildren(h('div', { class: 'empty muted' }, h('p', {}, 'Pick a conversation.')));
      return;
    }
    let entry = rooms.get(roomId);
    if (!entry) {
      try {
        entry = track(await api.get(`/chat/rooms/${roomId}`));
        sortList();
      } catch (err) {
        pane.replaceChildren(h('div', { class: 'page' }, h('h2', {}, 'Conversation'), h('p', {}, err.status === 404 ? 'This conversation is not available.' : errorText(err))));
        return;
      }
    }
    if (openId !== roomId) return;
    conversation = conversationView(entry.room, {
      title: titleOf(entry.room),
      other: otherOf(entry.room),
      onRead: (seq) => {
        entry.room.last_read_seq = Math.max(entry.room.last_read_seq || 0, seq);
        entry.room.unread_count = Math.max(0, (entry.room.last_seq || 0) - entry.room.last_read_seq);
        drawRoom(entry);
      },
    });
    conversation.setPresence(entry.online, entry.lastSeen);
    pane.replaceChildren(conversation.el);
    conversation.focus();
  };

  loadRooms();
  return {
    el: layout,
    open,
    // The router calls destroy on every navigation; keep everything while
    // the next screen is chat too.
    destroyIfLeaving() {
      queueMicrotask(() => {
        if (location.pathname.startsWith('/chat')) return;
        conversation?.destroy();
        for (const entry of rooms.values()) entry.offs.forEach((off) => off());
        offUser();
        mounted = null;
      });
    },
  };
}

/** One conversation. */
function conversationView(room, { title, other, onRead }) {
  const me = session.me();
  const topic = `chat:${room.id}`;
  const bySeq = new Map(); // seq -> {m, li}
  const pending = new Map(); // client_msg_id -> {body, li, state}
  const participants = new Map((room.participants || []).map((p) => [p.user.id, p]));
  let oldestSeq = null;
  let newestSeq = 0;
  let historyDone = false;
  let ready = false;
  const buffered = [];
  let replyTo = null;
  let typingSentAt = 0;
  const typers = new Map(); // user_id -> timer

  const status = h('span', { class: 'muted small' });
  const list = h('ol', { class: 'messages', role: 'log', 'aria-live': 'polite', 'aria-label': `Messages with ${title}`, tabindex: '0' });
  const topSentinel = h('li', { class: 'day-sep', 'aria-hidden': 'true' }, '');
  list.append(topSentinel);
  const typingEl = h('div', { class: 'typing', 'aria-live': 'polite' });
  const replyBar = h('div', { class: 'replying', hidden: true });
  const text = h('textarea', { rows: 1, maxlength: 4000, placeholder: 'Message', 'aria-label': `Message ${title}` });
  const fileInput = h('input', { type: 'file', class: 'visually-hidden', id: uid('attach') });
  const attach = h('label', { class: 'btn btn-quiet', for: fileInput.id, title: 'Attach a file' }, icon('clip'), h('span', { class: 'visually-hidden' }, 'Attach a file'));
  const sendBtn = h('button', { type: 'submit', class: 'btn btn-primary', 'aria-label': 'Send' }, icon('send'));
  const composer = h('form', { class: 'composer-bar', onsubmit: (e) => { e.preventDefault(); sendText(); } }, fileInput, attach, text, sendBtn);
  const el = h('section', { class: 'conversation', 'aria-label': `Conversation with ${title}` },
    h('header', { class: 'conversation-head' },
      h('a', { href: '/chat', class: 'btn btn-quiet btn-small back', 'aria-label': 'All conversations' }, '←'),
      avatar(other || { display_name: title }),
      h('div', { class: 'grow' }, h('h2', { class: 'conv-title' }, other ? h('a', { href: `/u/${other.id}`, class: 'quiet' }, title) : title), status),
      other ? h('button', { type: 'button', class: 'btn btn-quiet', 'aria-label': `Call ${title}`, onclick: async () => (await import('../calls.js')).startCall(other, 'voice') }, icon('phone')) : null,
      other ? h('button', { type: 'button', class: 'btn btn-quiet', 'aria-label': `Video call ${title}`, onclick: async () => (await import('../calls.js')).startCall(other, 'video') }, icon('video')) : null),
    list, typingEl, replyBar, composer);

  // --- drawing ---

  const quoteOf = (id) => {
    for (const { m } of bySeq.values()) if (m.id === id) return m;
    return null;
  };

  const bubble = (m, { isPending = false, failed = false } = {}) => {
    const mine = m.sender?.id === me.id;
    const classes = ['msg'];
    if (mine) classes.push('mine');
    if (isPending) classes.push('pending');
    if (failed) classes.push('failed');
    if (m.is_deleted) classes.push('deleted');
    const li = h('li', { class: classes.join(' '), dataset: { seq: m.seq ? String(m.seq) : '', id: m.id ? String(m.id) : '' } });
    if (m.message_type === 'system') {
      li.className = 'day-sep';
      li.textContent = m.content || '';
      return li;
    }
    const quoted = m.reply_to ? quoteOf(m.reply_to) : null;
    const body = [];
    if (room.room_type !== 'private' && !mine) body.push(h('strong', { class: 'small' }, m.sender?.display_name || ''), h('br'));
    if (m.reply_to) body.push(h('span', { class: 'reply-quote' }, quoted ? `${quoted.sender?.display_name}: ${quoted.is_deleted ? 'deleted message' : (quoted.content || mediaLabel(quoted.message_type))}` : 'Reply to an earlier message'));
    if (m.is_deleted) body.push('This message was deleted.');
    else {
      if (m.media_id || m.local_file) {
        body.push(m.local_file
          ? h('span', { class: 'muted small' }, `Uploading ${m.local_file}…`)
          // The message's own media carry URLs signed for this user (and
          // the size, so the bubble keeps its shape while loading).
          : media.mediaElement({ ...(m.media || { id: m.media_id }), kind: m.message_type === 'text' ? 'file' : m.message_type }, { alt: m.content || 'Shared image' }));
      }
      if (m.shared_moment_id) body.push(h('a', { href: `/moments/${m.shared_moment_id}` }, 'Shared a moment'));
      if (m.content) body.push(h('span', { class: 'content' }, m.content));
    }
    const meta = h('span', { class: 'msg-meta' },
      m.is_edited && !m.is_deleted ? h('span', {}, 'edited') : null,
      m.created_at ? clock(m.created_at) : null,
      mine ? receipt(m, isPending, failed) : null);
    const tools = m.is_deleted || isPending ? null : h('span', { class: 'msg-tools' },
      h('button', { type: 'button', class: 'btn btn-quiet btn-small', 'aria-label': 'Reply', onclick: () => startReply(m) }, icon('reply', { size: 16 })),
      mine && m.message_type === 'text' ? h('button', { type: 'button', class: 'btn btn-quiet btn-small', 'aria-label': 'Edit', onclick: () => edit(m) }, icon('edit', { size: 16 })) : null,
      mine ? h('button', { type: 'button', class: 'btn btn-quiet btn-small', 'aria-label': 'Delete', onclick: () => remove(m) }, icon('trash', { size: 16 })) : null,
      !mine ? h('button', { type: 'button', class: 'btn btn-quiet btn-small', onclick: () => reportMessage(m) }, 'Report') : null);
    li.append(...body, meta);
    if (tools) li.append(tools);
    if (failed) {
      li.append(h('button', { type: 'button', class: 'btn btn-small', onclick: () => retry(m.client_msg_id) }, 'Retry'));
    }
    return li;
  };

  /** ✓ sent, ✓✓ seen (by the other person, or by everyone in a group). */
  function receipt(m, isPending, failed) {
    if (failed) return h('span', { class: 'receipt' }, 'Not sent');
    if (isPending) return h('span', { class: 'receipt' }, 'Sending…');
    const others = [...participants.values()].filter((p) => p.user.id !== me.id);
    const seenBy = others.filter((p) => (p.last_read_seq || 0) >= m.seq);
    if (others.length && seenBy.length === others.length) {
      return h('span', { class: 'receipt seen', title: 'Seen' }, icon('checks', { size: 14 }), h('span', { class: 'visually-hidden' }, 'Seen'));
    }
    return h('span', { class: 'receipt', title: 'Sent' }, icon('check', { size: 14 }), h('span', { class: 'visually-hidden' }, 'Sent'));
  }

  const atBottom = () => list.scrollHeight - list.scrollTop - list.clientHeight < 80;

  /** Puts a stored message in its place by seq (new, or a new version). */
  const place = (m) => {
    const stick = atBottom();
    const had = bySeq.get(m.seq);
    const li = bubble(m);
    if (had) had.li.replaceWith(li);
    else {
      let before = null;
      for (const child of list.children) {
        const s = Number(child.dataset.seq);
        if (s && s > m.seq) {
          before = child;
          break;
        }
      }
      if (!before) {
        // After the last stored message, before pending ones.
        before = list.querySelector('li.pending, li.failed');
      }
      list.insertBefore(li, before);
    }
    bySeq.set(m.seq, { m, li });
    if (oldestSeq === null || m.seq < oldestSeq) oldestSeq = m.seq;
    if (m.seq > newestSeq) newestSeq = m.seq;
    if (m.client_msg_id && pending.has(m.client_msg_id)) {
      pending.get(m.client_msg_id).li.remove();
      pending.delete(m.client_msg_id);
    }
    if (stick || m.sender?.id === me.id) list.scrollTop = list.scrollHeight;
  };

  const redrawMine = () => {
    for (const entry of bySeq.values()) {
      if (entry.m.sender?.id === me.id) {
        const li = bubble(entry.m);
        entry.li.replaceWith(li);
        entry.li = li;
      }
    }
  };

  // --- live events ---

  const onEvent = (frame) => {
    if (!ready) {
      buffered.push(frame);
      return;
    }
    if (frame.op === 'error' && frame.code === 'resync_required') {
      reloadNewest();
      return;
    }
    const d = frame.data || {};
    switch (frame.type) {
      case 'message':
        if (newestSeq && d.seq > newestSeq + 1) fillGap(newestSeq, d.seq);
        place(d);
        stopTyping(d.sender?.id);
        markRead();
        break;
      case 'message_edited':
        if (bySeq.has(d.seq)) place(d);
        break;
      case 'message_deleted':
        if (bySeq.has(d.seq)) place({ ...bySeq.get(d.seq).m, is_deleted: true, content: null, media_id: null });
        break;
      case 'read': {
        const p = participants.get(d.user_id);
        if (p) p.last_read_seq = Math.max(p.last_read_seq || 0, d.seq);
        if (d.user_id !== me.id) redrawMine();
        else onRead(d.seq);
        break;
      }
      case 'typing':
        if (d.user_id !== me.id) showTyping(d.user_id, d.is_typing);
        break;
      case 'unsubscribed':
        status.textContent = 'You are no longer in this conversation.';
        composer.hidden = true;
        break;
      default:
    }
  };
  const offTopic = app.socket.subscribe(topic, onEvent);
  // Back online (the topic confirmed again): what was not sent goes now
  // (same client_msg_id: no duplicates).
  const onOpen = (e) => {
    if (e.detail?.topic !== topic) return;
    for (const id of pending.keys()) retry(id);
  };
  app.socket.addEventListener('subscribed', onOpen);
  // Without a live topic a message waiting for the network goes when the
  // browser is back online.
  const onOnline = () => {
    for (const id of pending.keys()) retry(id);
  };
  window.addEventListener('online', onOnline);

  const showTyping = (userId, isTyping) => {
    clearTimeout(typers.get(userId));
    typers.delete(userId);
    if (isTyping) typers.set(userId, setTimeout(() => showTyping(userId, false), TYPING_SHOW_MS));
    const names = [...typers.keys()].map((id) => participants.get(id)?.user.display_name || 'Someone');
    typingEl.textContent = names.length === 0 ? '' : names.length === 1 ? `${names[0]} is typing…` : `${names.join(', ')} are typing…`;
  };
  const stopTyping = (userId) => {
    if (typers.has(userId)) showTyping(userId, false);
  };

  // --- history ---

  const loadNewest = async () => {
    const page = await api.get(`/chat/rooms/${room.id}/messages`, { limit: PAGE });
    for (const m of page.items) place(m);
    historyDone = !page.next_cursor;
    list.scrollTop = list.scrollHeight;
  };

  const loadOlder = async () => {
    if (historyDone || oldestSeq === null || oldestSeq <= 1) {
      historyDone = true;
      topSentinel.textContent = 'Beginning of the conversation';
      return;
    }
    const height = list.scrollHeight;
    const page = await api.get(`/chat/rooms/${room.id}/messages`, { before_seq: oldestSeq, limit: PAGE });
    for (const m of page.items) place(m);
    historyDone = !page.next_cursor;
    if (historyDone) topSentinel.textContent = 'Beginning of the conversation';
    list.scrollTop += list.scrollHeight - height; // keep what was on screen in place
  };

  let filling = null;
  const fillGap = (after, before) => {
    filling = (filling || Promise.resolve()).then(async () => {
      let cursor = after;
      while (cursor !== null) {
        const page = await api.get(`/chat/rooms/${room.id}/messages`, { after_seq: cursor, before_seq: before, limit: 100 });
        for (const m of page.items) place(m);
        cursor = page.next_cursor ? Number(page.next_cursor) : null;
      }
    }).catch(() => {});
  };

  const reloadNewest = async () => {
    await loadNewest().catch(() => {});
    if (newestSeq) app.socket.setLastSeq(topic, newestSeq);
  };

  let loadingOlder = false;
  const topObserver = new IntersectionObserver((entries) => {
    if (!ready || loadingOlder || !entries.some((e) => e.isIntersecting)) return;
    loadingOlder = true;
    loadOlder().catch(() => {}).finally(() => {
      loadingOlder = false;
    });
  }, { root: list, rootMargin: '200px 0px 0px 0px' });

  (async () => {
    try {
      await loadNewest();
    } catch (err) {
      list.append(h('li', { class: 'day-sep' }, errorText(err)));
    }
    ready = true;
    if (newestSeq && app.socket.lastSeq(topic) === null) app.socket.setLastSeq(topic, newestSeq);
    for (const frame of buffered.splice(0)) onEvent(frame);
    markRead();
    topObserver.observe(topSentinel);
  })();

  // --- reading ---

  let lastReadSent = room.last_read_seq || 0;
  const visible = () => document.visibilityState === 'visible' && el.isConnected;
  const markRead = () => {
    if (!visible() || newestSeq <= lastReadSent) return;
    lastReadSent = newestSeq;
    const seq = newestSeq;
    if (!(app.socket.isLive(topic) && app.socket.send({ op: 'read', topic, seq }))) {
      api.post(`/chat/rooms/${room.id}/read`, { seq }).catch(() => {});
    }
    onRead(seq);
  };
  const onVisibility = () => markRead();
  document.addEventListener('visibilitychange', onVisibility);

  // --- sending ---

  const sendFrame = async (body) => {
    if (app.socket.isLive(topic)) {
      return app.socket.request({ op: 'send', topic, ...body });
    }
    // Not subscribed live (no connection, or a server without the chat
    // topic): the REST endpoint has the same effect and the same
    // idempotency, so messages still go out.
    return api.post(`/chat/rooms/${room.id}/messages`, body);
  };

  const submit = async (body) => {
    const draft = {
      ...body,
      sender: { id: me.id, display_name: me.display_name },
      created_at: new Date().toISOString(),
    };
    const entry = { body, state: 'pending', li: bubble(draft, { isPending: true }) };
    pending.set(body.client_msg_id, entry);
    list.append(entry.li);
    list.scrollTop = list.scrollHeight;
    await deliver(body.client_msg_id);
  };

  const deliver = async (clientMsgId) => {
    const entry = pending.get(clientMsgId);
    if (!entry || entry.sending) return;
    entry.sending = true;
    try {
      const answer = await sendFrame(entry.body);
      // An ack ({seq, id}) or the stored message; the event may come first or later.
      const stored = answer && answer.seq && answer.sender ? answer : null;
      if (stored) place(stored);
      else if (answer?.seq && !bySeq.has(answer.seq)) {
        place({ ...entry.body, id: answer.id, seq: answer.seq, sender: { id: me.id, display_name: me.display_name }, created_at: new Date().toISOString(), is_edited: false, is_deleted: false });
      } else if (answer?.seq && pending.has(clientMsgId)) {
        pending.get(clientMsgId).li.remove();
        pending.delete(clientMsgId);
      }
    } catch (err) {
      const still = pending.get(clientMsgId);
      if (!still) return;
      still.sending = false;
      // Lost connection: stays pending and goes again on reconnect.
      const transient = err.code === 'disconnected' || err.code === 'timeout' || err instanceof TypeError || err.status >= 500;
      if (!transient) toast(errorText(err), { kind: 'error' });
      const li = bubble({ ...still.body, sender: { id: me.id }, created_at: new Date().toISOString() }, { isPending: transient, failed: !transient });
      still.li.replaceWith(li);
      still.li = li;
      return;
    }
    const done = pending.get(clientMsgId);
    if (done) done.sending = false;
  };

  const retry = (clientMsgId) => {
    const entry = pending.get(clientMsgId);
    if (entry && !entry.sending) deliver(clientMsgId);
  };

  const sendText = () => {
    const content = text.value.trim();
    if (!content) return;
    text.value = '';
    sendTyping(false);
    submit({ client_msg_id: crypto.randomUUID(), content, message_type: 'text', reply_to: replyTo?.id ?? null });
    cancelReply();
    text.focus();
  };

  fileInput.addEventListener('change', async () => {
    const file = fileInput.files[0];
    fileInput.value = '';
    if (!file) return;
    const clientMsgId = crypto.randomUUID();
    const placeholder = bubble({ sender: { id: me.id }, local_file: file.name, created_at: new Date().toISOString() }, { isPending: true });
    list.append(placeholder);
    list.scrollTop = list.scrollHeight;
    try {
      const item = await api.upload(file);
      media.remember(item);
      placeholder.remove();
      const kind = media.kindOf(item.content_type || file.type);
      await submit({ client_msg_id: clientMsgId, content: null, message_type: kind, media_id: item.id, reply_to: replyTo?.id ?? null });
      cancelReply();
    } catch (err) {
      placeholder.remove();
      toast(errorText(err), { kind: 'error' });
    }
  });

  text.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      sendText();
    } else if (e.key === 'Escape' && replyTo) {
      cancelReply();
    }
  });
  let typingIdle = null;
  text.addEventListener('input', () => {
    if (text.value.trim()) sendTyping(true);
    clearTimeout(typingIdle);
    typingIdle = setTimeout(() => sendTyping(false), 4000);
  });
  text.addEventListener('blur', () => sendTyping(false));

  function sendTyping(isTyping) {
    if (!app.socket.isLive(topic)) return;
    const now = Date.now();
    if (isTyping && now - typingSentAt < TYPING_SEND_EVERY_MS) return;
    if (!isTyping && typingSentAt === 0) return;
    typingSentAt = isTyping ? now : 0;
    app.socket.send({ op: 'typing', topic, is_typing: isTyping });
  }

  function startReply(m) {
    replyTo = m;
    replyBar.replaceChildren(
      h('span', {}, `Replying to ${m.sender?.display_name}: ${(m.content || mediaLabel(m.message_type)).slice(0, 80)}`),
      h('button', { type: 'button', class: 'btn btn-quiet btn-small', onclick: cancelReply }, 'Cancel'));
    replyBar.hidden = false;
    text.focus();
  }
  function cancelReply() {
    replyTo = null;
    replyBar.hidden = true;
    replyBar.replaceChildren();
  }

  async function edit(m) {
    const content = await modal('Edit message', (close) => {
      const input = h('textarea', { rows: 3, maxlength: 4000 });
      input.value = m.content || '';
      queueMicrotask(() => input.focus());
      return h('form', { class: 'stack', onsubmit: (e) => { e.preventDefault(); close(input.value.trim()); } },
        field('Message', input).field,
        h('div', { class: 'row end' },
          h('button', { type: 'button', class: 'btn', onclick: () => close(undefined) }, 'Cancel'),
          h('button', { type: 'submit', class: 'btn btn-primary' }, 'Save')));
    });
    if (!content || content === m.content) return;
    try {
      place(await api.patch(`/chat/messages/${m.id}`, { content }));
    } catch (err) {
      toast(errorText(err), { kind: 'error' });
    }
  }

  async function remove(m) {
    if (!(await confirmDialog('Delete this message?', 'It is removed for everyone in the conversation.', 'Delete'))) return;
    try {
      await api.del(`/chat/messages/${m.id}`);
      place({ ...m, is_deleted: true, content: null, media_id: null });
    } catch (err) {
      toast(errorText(err), { kind: 'error' });
    }
  }

  async function reportMessage(m) {
    const answer = await reportDialog('message');
    if (!answer) return;
    try {
      await api.post('/reports', { report_type: answer.report_type, description: answer.description || undefined, reported_message: m.id });
      toast('Thanks, a moderator will look at it.');
    } catch (err) {
      toast(errorText(err), { kind: 'error' });
    }
  }

  return {
    el,
    roomId: room.id,
    visible,
    focus() {
      text.focus({ preventScroll: true });
    },
    setPresence(online, lastSeen) {
      if (!other) {
        status.textContent = `${participants.size} people`;
        return;
      }
      status.textContent = online ? 'online' : lastSeen ? `last seen ${new Date(lastSeen).toLocaleString()}` : '';
    },
    destroy() {
      sendTyping(false);
      offTopic();
      topObserver.disconnect();
      app.socket.removeEventListener('subscribed', onOpen);
      window.removeEventListener('online', onOnline);
      document.removeEventListener('visibilitychange', onVisibility);
      for (const t of typers.values()) clearTimeout(t);
    },
  };
}
