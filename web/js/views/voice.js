// Voice rooms: browse and create, join (REST), then media through the
// server's SFU: the client offers over the socket (`signal` with
// `room_id`), the SFU answers, and sends its own offers when tracks come
// or go, which the client answers. Participants, mutes, speaking and hands
// arrive on `voice:{id}`.

import * as api from '../api.js';
import * as session from '../session.js';
import * as rtcMedia from '../rtc/media.js';
import { app } from '../app.js';
import { h, field, avatar } from '../dom.js';
import { icon } from '../icons.js';
import { busy, toast, errorText, modal } from '../ui.js';

const LEVELS = [['', 'Any level'], ['beginner', 'Beginner'], ['intermediate', 'Intermediate'], ['advanced', 'Advanced']];
const HEARTBEAT_MS = 20_000;

export function render({ params }) {
  return params.id ? roomView(Number(params.id)) : listView();
}

function listView() {
  const topic = h('input', { type: 'search', name: 'topic', placeholder: 'travel, food, work…' });
  const level = h('select', { name: 'difficulty_level' }, LEVELS.map(([v, l]) => h('option', { value: v }, l)));
  const list = h('div', { 'aria-live': 'polite' });
  const load = async () => {
    list.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
    try {
      const page = await api.get('/voice-rooms', { topic: topic.value.trim(), difficulty_level: level.value, limit: 50 });
      list.replaceChildren(...(page.items.length ? page.items.map(roomCard) : [h('p', { class: 'muted empty' }, 'No open rooms. Start one!')]));
    } catch (err) {
      list.replaceChildren(h('p', { class: 'muted empty' }, err.status === 404 ? 'Voice rooms are not available on this server yet.' : errorText(err)));
    }
  };
  const filters = h('form', { class: 'row gap wrap', role: 'search', onsubmit: (e) => { e.preventDefault(); load(); } },
    field('Topic', topic).field, field('Level', level).field,
    h('button', { type: 'submit', class: 'btn' }, 'Search'));
  const create = h('button', { type: 'button', class: 'btn btn-primary', onclick: () => createRoom() }, 'New room');
  load();
  return {
    el: h('section', { class: 'page stack' }, h('div', { class: 'row between' }, h('h1', {}, 'Voice rooms'), create), filters, list),
    title: 'Voice rooms',
  };
}

function roomCard(room) {
  return h('a', { class: 'card room-card', href: `/voice/${room.id}` },
    h('div', { class: 'row between' }, h('strong', {}, room.name), h('span', { class: 'chip' }, room.difficulty_level)),
    room.topic ? h('p', { class: 'muted' }, `Topic: ${room.topic}`) : null,
    room.description ? h('p', {}, room.description) : null,
    h('p', { class: 'small muted' }, icon('headphones', { size: 14 }), ` ${room.current_participants ?? 0} / ${room.max_participants} listening`));
}

async function createRoom() {
  const values = await modal('New voice room', (close) => {
    const name = h('input', { type: 'text', required: true, maxlength: 100 });
    const topic = h('input', { type: 'text', maxlength: 100 });
    const description = h('textarea', { rows: 2, maxlength: 500 });
    const level = h('select', {}, LEVELS.slice(1).map(([v, l]) => h('option', { value: v }, l)));
    // Seats for speakers, the host's included; who joins when they are
    // taken listens until the host invites them. Empty: the server's default.
    const seats = h('input', { type: 'number', min: 1, step: 1, inputmode: 'numeric' });
    return h('form', {
      class: 'stack',
      onsubmit: (e) => {
        e.preventDefault();
        const values = { name: name.value.trim(), topic: topic.value.trim(), description: description.value.trim(), difficulty_level: level.value };
        if (seats.value) values.max_speakers = Number(seats.value);
        close(values);
      },
    }, field('Name', name).field, field('Topic', topic).field, field('Description', description).field, field('Level', level).field,
    field('Speaker seats', seats).field,
    h('div', { class: 'row end' },
      h('button', { type: 'button', class: 'btn', onclick: () => close(undefined) }, 'Cancel'),
      h('button', { type: 'submit', class: 'btn btn-primary' }, 'Create')));
  });
  if (!values) return;
  try {
    const room = await api.post('/voice-rooms', values);
    app.navigate(`/voice/${room.id}`);
  } catch (err) {
    toast(errorText(err), { kind: 'error' });
  }
}

function roomView(id) {
  const me = session.me();
  const people = new Map(); // user_id -> {p, li}
  const grid = h('ul', { class: 'participants', 'aria-label': 'In the room' });
  const title = h('h1', {}, 'Voice room');
  const info = h('p', { class: 'muted' });
  const status = h('p', { role: 'status', class: 'muted' }, 'Joining…');
  const audio = h('div', { hidden: true });
  const mute = h('button', { type: 'button', class: 'btn', 'aria-pressed': 'false', disabled: true }, icon('mic'), 'Mute');
  const hand = h('button', { type: 'button', class: 'btn', 'aria-pressed': 'false', hidden: true }, 'Raise hand');
  const leave = h('button', { type: 'button', class: 'btn btn-danger' }, icon('hangup'), 'Leave');
  let pc = null;
  let local = null;
  let own = null; // the audio transceiver: sends while speaking, receive-only as a listener
  let policy = {};
  let left = false;
  let heartbeat = null;
  let offTopic = () => {};
  let offUser = () => {};

  let myRole = null;
  const setRole = (userId, role) => api.post(`/voice-rooms/${id}/participants/${userId}/role`, { role })
    .catch((err) => toast(errorText(err), { kind: 'error' }));
  const drawPerson = (p) => {
    const had = people.get(p.user_id);
    if (p.user_id === me.id) myRole = p.role;
    // The host invites listeners to speak and moves speakers back.
    const hostAction = myRole === 'host' && p.user_id !== me.id
      ? (p.role === 'listener'
        ? h('button', { type: 'button', class: 'btn btn-small', onclick: () => setRole(p.user_id, 'speaker') }, 'Invite to speak')
        : p.role === 'speaker' ? h('button', { type: 'button', class: 'btn btn-quiet btn-small', onclick: () => setRole(p.user_id, 'listener') }, 'Move to listeners') : null)
      : null;
    const li = h('li', { class: `participant${p.is_speaking ? ' speaking' : ''}`, dataset: { userId: String(p.user_id) } },
      avatar({ display_name: p.display_name, avatar: p.avatar }, 'lg'),
      h('strong', {}, p.display_name + (p.user_id === me.id ? ' (you)' : '')),
      h('span', { class: 'small muted' }, p.role, p.is_muted ? ' · muted' : '', p.hand_raised ? ' · hand raised' : ''),
      hostAction);
    if (had) had.li.replaceWith(li);
    else grid.append(li);
    people.set(p.user_id, { p, li });
  };
  const removePerson = (userId) => {
    people.get(userId)?.li.remove();
    people.delete(userId);
  };

  const onRoomEvent = (frame) => {
    const d = frame.data || {};
    const known = people.get(d.user_id)?.p;
    switch (frame.type) {
      case 'participant_joined':
        drawPerson(d.participant || d);
        break;
      case 'participant_left':
        removePerson(d.user_id);
        if (d.user_id === me.id && !left) finish('You were removed from the room.');
        break;
      case 'mute_changed':
        if (known) drawPerson({ ...known, is_muted: d.is_muted ?? d.muted });
        break;
      case 'speaking':
        if (known) drawPerson({ ...known, is_speaking: d.is_speaking ?? d.speaking });
        break;
      case 'hand_raised':
        if (known) drawPerson({ ...known, hand_raised: d.hand_raised ?? d.raised });
        break;
      case 'role_changed':
        if (known) drawPerson({ ...known, role: d.role });
        if (d.user_id === me.id) {
          mute.disabled = d.role === 'listener';
          hand.hidden = d.role !== 'listener';
          if (d.role !== 'listener') speak();
          else quiet();
        }
        break;
      case 'room_closed':
        finish('The room was closed.');
        break;
      default:
    }
  };

  const onSignal = async (frame) => {
    if (frame.type !== 'signal' || frame.data?.from !== 'sfu' || !pc) return;
    if (frame.data.room_id !== undefined && frame.data.room_id !== id) return;
    await applySfu(frame.data.kind, frame.data.payload);
  };

  const applySfu = async (kind, payload) => {
    try {
      if (kind === 'answer') {
        await pc.setRemoteDescription(payload);
      } else if (kind === 'offer') {
        // The SFU renegotiates when tracks come or go: answer it.
        await pc.setRemoteDescription(payload);
        const answer = rtcMedia.munged(await pc.createAnswer(), policy);
        await pc.setLocalDescription(answer);
        await sendSignal('answer', answer);
      } else if (kind === 'ice_candidate' && payload) {
        await pc.addIceCandidate(payload);
      }
    } catch (err) {
      console.warn('SFU signal failed', kind, err);
    }
  };

  const sendSignal = async (kind, payload) => {
    // Over the socket when it is up, else the same over REST; the SFU's
    // answer (or its own offer) may come back in the reply itself.
    const reply = app.socket.state === 'open'
      ? await app.socket.request({ op: 'signal', room_id: id, kind, payload })
      : await api.post(`/voice-rooms/${id}/signal`, { kind, payload });
    if (reply?.answer) await applySfu('answer', reply.answer);
    if (reply?.offer) await applySfu('offer', reply.offer);
  };

  const renegotiate = async () => {
    if (!pc) return;
    const offer = rtcMedia.munged(await pc.createOffer(), policy);
    await pc.setLocalDescription(offer);
    await sendSignal('offer', offer);
  };

  // Invited to speak: a listener joined without a microphone, so it takes
  // it now and sends it on its receive-only transceiver, then offers again.
  const speak = async () => {
    if (!pc) return;
    try {
      if (!local) {
        local = await rtcMedia.getMedia(policy);
        const [track] = local.getAudioTracks();
        if (own && track) {
          await own.sender.replaceTrack(track);
          own.sender.setStreams(local);
          own.direction = 'sendrecv';
        }
      }
      await renegotiate();
    } catch (err) {
      toast(`Cannot use the microphone: ${err.message || err.code}`, { kind: 'error' });
    }
  };

  // Moved back to the listeners: release the microphone (the server would
  // drop its packets anyway) and stop sending on the transceiver.
  const quiet = async () => {
    if (!pc || !local) return;
    for (const t of local.getTracks()) t.stop();
    local = null;
    try {
      if (own) {
        await own.sender.replaceTrack(null);
        own.direction = 'recvonly';
      }
      await renegotiate();
    } catch (err) {
      toast(errorText(err), { kind: 'error' });
    }
  };

  const join = async () => {
    let joined;
    try {
      joined = await api.post(`/voice-rooms/${id}/join`);
    } catch (err) {
      status.textContent = err.status === 404 ? 'This room is not available.' : errorText(err);
      return;
    }
    const room = joined.room;
    title.textContent = room.name;
    document.title = `${room.name} · Palaver`;
    info.textContent = [room.topic && `Topic: ${room.topic}`, room.difficulty_level].filter(Boolean).join(' · ');
    for (const p of joined.participants || []) drawPerson(p);
    if (joined.me) drawPerson(joined.me);
    offTopic = app.socket.subscribe(`voice:${id}`, onRoomEvent);
    offUser = app.socket.on(`user:${me.id}`, onSignal);
    const media = joined.media || {};
    // The same audio policy as calls: {audio: constraints, opus}.
    policy = media;
    const publish = media.publish?.audio ?? joined.me?.role !== 'listener';
    hand.hidden = publish;
    mute.disabled = !publish;
    try {
      pc = new RTCPeerConnection({ iceServers: (media.ice_servers || []).map((s) => ({ urls: s.urls, username: s.username ?? undefined, credential: s.credential ?? undefined })) });
      pc.ontrack = (e) => {
        const el = h('audio', { autoplay: true });
        el.srcObject = e.streams[0] || new MediaStream([e.track]);
        audio.append(el);
        e.track.addEventListener('ended', () => el.remove());
      };
      pc.onconnectionstatechange = () => {
        status.textContent = { connected: 'Connected', connecting: 'Connecting…', failed: 'Audio connection failed', disconnected: 'Reconnecting…' }[pc.connectionState] || status.textContent;
      };
      if (publish) {
        local = await rtcMedia.getMedia(policy);
        for (const t of local.getAudioTracks()) {
          const sender = pc.addTrack(t, local);
          own = pc.getTransceivers().find((tr) => tr.sender === sender) ?? own;
        }
      } else {
        own = pc.addTransceiver('audio', { direction: 'recvonly' });
      }
      await renegotiate();
    } catch (err) {
      status.textContent = `Cannot connect audio: ${err.message || err.code}`;
    }
    heartbeat = setInterval(() => api.post(`/voice-rooms/${id}/heartbeat`).catch(() => {}), HEARTBEAT_MS);
  };

  mute.addEventListener('click', () => {
    const on = mute.getAttribute('aria-pressed') !== 'true';
    for (const t of local?.getAudioTracks() || []) t.enabled = !on;
    mute.setAttribute('aria-pressed', String(on));
    mute.replaceChildren(icon(on ? 'micOff' : 'mic'), on ? 'Unmute' : 'Mute');
    api.post(`/voice-rooms/${id}/participants/${me.id}/mute`, { muted: on }).catch(() => {});
  });
  hand.addEventListener('click', () => busy(hand, async () => {
    const up = hand.getAttribute('aria-pressed') !== 'true';
    try {
      await api.post(`/voice-rooms/${id}/hand`, { raised: up });
      hand.setAttribute('aria-pressed', String(up));
      hand.textContent = up ? 'Lower hand' : 'Raise hand';
    } catch (err) {
      toast(errorText(err), { kind: 'error' });
    }
  }));
  leave.addEventListener('click', () => finish());

  function cleanup() {
    if (left) return;
    left = true;
    clearInterval(heartbeat);
    offTopic();
    offUser();
    local?.getTracks().forEach((t) => t.stop());
    pc?.close();
    api.post(`/voice-rooms/${id}/leave`).catch(() => {});
  }
  function finish(message) {
    cleanup();
    if (message) toast(message);
    app.navigate('/voice');
  }

  join();
  const el = h('section', { class: 'page stack' },
    h('p', {}, h('a', { href: '/voice' }, '← All rooms')),
    title, info, status, grid, audio,
    h('div', { class: 'call-controls' }, mute, hand, leave));
  return { el, title: 'Voice room', destroy: cleanup };
}
