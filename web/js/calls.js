// 1-on-1 voice and video calls (also the calls random matching makes).
//
// Flow: the caller takes the microphone, places the call (`POST /calls`),
// and once the receiver accepts (`call_state` active) sends the offer over
// the socket (`signal` on `call:{id}`); the receiver answers. ICE
// candidates trickle both ways; candidates that arrive before the remote
// description wait for it. Opus gets the server's FEC/DTX/bitrate policy
// by SDP munging, capture its echo/noise/gain settings. When ICE connects
// the client says so (`POST /calls/{id}/connected`); while media flows it
// samples getStats() and posts quality to `POST /calls/{id}/quality`.
// Incoming calls ring on every screen; accepting binds the call to this
// device (`call_accept` over the socket).

import * as api from './api.js';
import * as session from './session.js';
import * as rtcMedia from './rtc/media.js';
import * as stats from './rtc/stats.js';
import { app } from './app.js';
import { h, avatar } from './dom.js';
import { icon } from './icons.js';
import { toast, errorText } from './ui.js';

const FINAL = new Set(['ended', 'missed', 'declined', 'busy', 'failed']);
const QUALITY_FIRST_MS = 2000;
const QUALITY_EVERY_MS = 15000;
const END_TEXT = {
  declined: 'Call declined.',
  missed: 'No answer.',
  busy: 'They are in another call.',
  failed: 'The call could not connect.',
  ended: 'Call ended.',
};

let current = null; // the CallSession
let offUser = null;
const ringing = new Map(); // call id -> ring UI

/** Starts listening for incoming calls (after sign-in). */
export function start() {
  stop();
  const me = session.me();
  offUser = app.socket.on(`user:${me.id}`, (frame) => {
    const call = frame.data;
    if (frame.type === 'call_incoming' && call?.id) ring(call);
    if (frame.type === 'call_state' && call?.id) {
      if (current?.call.id === call.id) current.onState(call);
      if (ringing.has(call.id) && call.status !== 'ringing') stopRinging(call.id, call.status);
    }
  });
}

/** Stops (sign-out): hangs up and forgets. */
export function stop() {
  offUser?.();
  offUser = null;
  current?.hangup();
  for (const id of [...ringing.keys()]) stopRinging(id);
}

/** The call in progress, if any (tests and other screens look at it). */
export function active() {
  return current;
}

/** Calls a user: `type` is `voice` or `video`. */
export async function startCall(user, type) {
  if (current) {
    toast('You are already in a call.', { kind: 'error' });
    return null;
  }
  let stream;
  try {
    stream = await rtcMedia.getMedia({}, { video: type === 'video' });
  } catch (err) {
    toast(`Cannot use your ${type === 'video' ? 'camera or microphone' : 'microphone'}: ${err.message}`, { kind: 'error' });
    return null;
  }
  let call;
  try {
    call = await api.post('/calls', { receiver_id: user.id, call_type: type });
  } catch (err) {
    stream.getTracks().forEach((t) => t.stop());
    toast(errorText(err), { kind: 'error' });
    return null;
  }
  if (FINAL.has(call.status)) {
    stream.getTracks().forEach((t) => t.stop());
    toast(END_TEXT[call.status] || 'The call did not go through.', { kind: 'error' });
    return null;
  }
  // The policy comes with the call: apply its capture settings to the
  // microphone taken before (taking it first means no ringing without one).
  const { constraints } = rtcMedia.normalize(call.media);
  for (const track of stream.getAudioTracks()) track.applyConstraints(constraints).catch(() => {});
  current = new CallSession(call, 'caller', stream, user);
  return current;
}

/** Takes a match (`match_found`): the caller offers, the callee accepts. */
export async function joinMatch(found) {
  if (current) return null;
  const type = found.call?.call_type || 'voice';
  let stream;
  try {
    stream = await rtcMedia.getMedia(found.call?.media, { video: type === 'video' });
  } catch (err) {
    toast(`Cannot use your microphone: ${err.message}`, { kind: 'error' });
    api.post(`/calls/${found.call_id}/decline`).catch(() => {});
    return null;
  }
  const role = found.role === 'caller' ? 'caller' : 'receiver';
  const call = found.call || { id: found.call_id, call_type: type, status: 'ringing' };
  current = new CallSession(call, role, stream, found.peer);
  if (role === 'receiver') await current.accept();
  return current;
}

// --- ringing ---

function ring(call) {
  if (ringing.has(call.id) || current?.call.id === call.id) return;
  const caller = call.caller;
  const accept = h('button', { type: 'button', class: 'btn btn-primary' }, icon(call.call_type === 'video' ? 'video' : 'phone'), 'Accept');
  const decline = h('button', { type: 'button', class: 'btn btn-danger' }, icon('hangup'), 'Decline');
  const panel = h('div', { class: 'call-panel', role: 'alertdialog', 'aria-labelledby': `ring-${call.id}`, 'aria-describedby': `ring-d-${call.id}` },
    h('div', { class: 'row gap' }, avatar(caller, 'lg'),
      h('div', {}, h('h2', { id: `ring-${call.id}` }, caller.display_name),
        h('p', { id: `ring-d-${call.id}`, class: 'muted' }, `Incoming ${call.call_type} call${call.is_match ? ' (practice match)' : ''}`))),
    h('div', { class: 'call-controls' }, accept, decline));
  accept.addEventListener('click', async () => {
    stopRinging(call.id);
    if (current) {
      toast('End your call first.', { kind: 'error' });
      return;
    }
    let stream;
    try {
      stream = await rtcMedia.getMedia(call.media, { video: call.call_type === 'video' });
    } catch (err) {
      toast(`Cannot use your microphone: ${err.message}`, { kind: 'error' });
      api.post(`/calls/${call.id}/decline`).catch(() => {});
      return;
    }
    current = new CallSession(call, 'receiver', stream, caller);
    await current.accept();
  });
  decline.addEventListener('click', () => {
    stopRinging(call.id);
    api.post(`/calls/${call.id}/decline`).catch((err) => toast(errorText(err), { kind: 'error' }));
  });
  document.getElementById('call-layer').append(panel);
  ringing.set(call.id, panel);
  accept.focus();
}

function stopRinging(id, status) {
  const panel = ringing.get(id);
  if (!panel) return;
  ringing.delete(id);
  panel.remove();
  if (status === 'missed' || status === 'ended') toast('Missed call.');
}

// --- a call ---

class CallSession {
  constructor(call, role, stream, peer) {
    this.call = call;
    this.role = role;
    this.peer = peer;
    this.local = stream;
    this.remote = new MediaStream();
    this.policy = call.media || {};
    this.pendingCandidates = [];
    this.offered = false;
    this.ended = false;
    this.lastSample = null;
    this.qualityTimer = null;
    this.connectedAt = null;
    this.topic = `call:${call.id}`;
    this.off = app.socket.subscribe(this.topic, (frame) => this.onFrame(frame));
    this.draw();
    this.ready = this.setupPeer();
    this.onState(call);
  }

  async setupPeer() {
    const iceServers = await rtcMedia.iceServers(api);
    const pc = new RTCPeerConnection({ iceServers });
    this.pc = pc;
    for (const track of this.local.getTracks()) pc.addTrack(track, this.local);
    pc.ontrack = (e) => {
      for (const track of e.streams[0]?.getTracks() || [e.track]) if (!this.remote.getTrackById(track.id)) this.remote.addTrack(track);
      this.remoteMedia.srcObject = this.remote;
      this.remoteMedia.play?.().catch(() => {});
    };
    pc.onicecandidate = (e) => {
      if (e.candidate) this.signal('ice_candidate', e.candidate.toJSON());
    };
    pc.onconnectionstatechange = () => {
      const s = pc.connectionState;
      this.panel.dataset.connection = s;
      if (s === 'connected' && !this.connectedAt) {
        this.connectedAt = Date.now();
        this.setStatus('Connected');
        // Media flows: the server stops the media timeout.
        api.post(`/calls/${this.call.id}/connected`).catch(() => {});
        this.startQuality();
        this.tickClock();
      } else if (s === 'failed') {
        this.setStatus('Connection lost');
        this.hangup();
      } else if (s === 'disconnected') {
        this.setStatus('Reconnecting…');
      }
    };
    return pc;
  }

  /**
   * Accepts on this device: over the socket (`call_accept`), which binds
   * the call to this connection so signals reach only it; over REST when
   * there is no connection.
   */
  async accept() {
    try {
      if (app.socket.state === 'open') {
        const ack = await app.socket.request({ op: 'call_accept', call_id: this.call.id });
        await this.onState({ ...this.call, status: ack.status || 'active' });
      } else {
        await this.onState(await api.post(`/calls/${this.call.id}/accept`));
      }
    } catch (err) {
      toast(errorText(err), { kind: 'error' });
      this.teardown('failed');
    }
  }

  /** The server's word on the call: active starts media, final ends it. */
  async onState(call) {
    if (this.ended) return;
    this.call = { ...this.call, ...call };
    if (call.media) this.policy = call.media;
    if (FINAL.has(call.status)) {
      this.teardown(call.status);
      return;
    }
    if (call.status === 'ringing') this.setStatus(this.role === 'caller' ? 'Ringing…' : 'Connecting…');
    if (call.status === 'active' && this.role === 'caller' && !this.offered) {
      this.offered = true;
      this.setStatus('Connecting…');
      const pc = await this.ready;
      const offer = await pc.createOffer();
      const local = rtcMedia.munged(offer, this.policy);
      await pc.setLocalDescription(local);
      this.signal('offer', local);
    }
  }

  async onFrame(frame) {
    if (frame.type === 'call_state' && frame.data?.id === this.call.id) {
      this.onState(frame.data);
      return;
    }
    if (frame.type === 'screen_share') {
      this.setStatus(frame.data?.active ? `${this.peer.display_name} is sharing their screen` : 'Connected');
      return;
    }
    if (frame.type !== 'signal' || frame.data?.call_id !== this.call.id) return;
    const { kind, payload } = frame.data;
    const pc = await this.ready;
    try {
      if (kind === 'offer') {
        await pc.setRemoteDescription(payload);
        await this.flushCandidates();
        const answer = await pc.createAnswer();
        const local = rtcMedia.munged(answer, this.policy);
        await pc.setLocalDescription(local);
        this.signal('answer', local);
      } else if (kind === 'answer') {
        await pc.setRemoteDescription(payload);
        await this.flushCandidates();
      } else if (kind === 'ice_candidate') {
        if (pc.remoteDescription) await pc.addIceCandidate(payload);
        else this.pendingCandidates.push(payload);
      } else if (kind === 'hangup') {
        this.teardown('ended');
      }
    } catch (err) {
      console.warn('signal failed', kind, err);
    }
  }

  async flushCandidates() {
    for (const c of this.pendingCandidates.splice(0)) await this.pc.addIceCandidate(c).catch(() => {});
  }

  signal(kind, payload) {
    return app.socket.request({ op: 'signal', call_id: this.call.id, kind, payload }).catch((err) => {
      if (kind !== 'ice_candidate') console.warn('signal not sent', kind, err.code);
    });
  }

  startQuality() {
    const post = async () => {
      if (this.ended || !this.pc) return;
      try {
        const s = await stats.sample(this.pc, this.lastSample);
        this.lastSample = s;
        this.quality.textContent = `Quality: ${stats.grade(s)}${s.rtt_ms !== undefined ? ` · ${Math.round(s.rtt_ms)} ms` : ''}`;
        this.panel.dataset.quality = 'reported';
        await api.post(`/calls/${this.call.id}/quality`, stats.report(s));
      } catch {
        // A missed report is not worth bothering anyone about.
      }
    };
    this.qualityTimer = setTimeout(function again() {
      post();
      this.qualityTimer = setTimeout(again.bind(this), QUALITY_EVERY_MS);
    }.bind(this), QUALITY_FIRST_MS);
  }

  tickClock() {
    const update = () => {
      if (this.ended || !this.connectedAt) return;
      const s = Math.floor((Date.now() - this.connectedAt) / 1000);
      this.clock.textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
      this.clockTimer = setTimeout(update, 1000);
    };
    update();
  }

  draw() {
    const video = this.call.call_type === 'video';
    this.status = h('p', { class: 'muted', role: 'status' }, '');
    this.clock = h('span', { class: 'muted small' });
    this.quality = h('p', { class: 'quality', 'aria-live': 'off' });
    this.remoteMedia = video
      ? h('video', { class: 'remote', autoplay: true, playsinline: true })
      : h('audio', { autoplay: true });
    const localVideo = video ? h('video', { class: 'local', autoplay: true, playsinline: true, muted: true }) : null;
    if (localVideo) {
      localVideo.muted = true;
      localVideo.srcObject = this.local;
    }
    const mute = h('button', { type: 'button', class: 'btn', 'aria-pressed': 'false' }, icon('mic'), 'Mute');
    mute.addEventListener('click', () => {
      const on = mute.getAttribute('aria-pressed') !== 'true';
      for (const t of this.local.getAudioTracks()) t.enabled = !on;
      mute.setAttribute('aria-pressed', String(on));
      mute.replaceChildren(icon(on ? 'micOff' : 'mic'), on ? 'Unmute' : 'Mute');
    });
    const camera = video ? h('button', { type: 'button', class: 'btn', 'aria-pressed': 'false' }, icon('video'), 'Camera off') : null;
    camera?.addEventListener('click', () => {
      const off = camera.getAttribute('aria-pressed') !== 'true';
      for (const t of this.local.getVideoTracks()) t.enabled = !off;
      camera.setAttribute('aria-pressed', String(off));
      camera.replaceChildren(icon('video'), off ? 'Camera on' : 'Camera off');
    });
    const me = session.me();
    const canShare = video && ['teacher', 'admin'].includes(me?.role) && navigator.mediaDevices?.getDisplayMedia;
    const share = canShare ? h('button', { type: 'button', class: 'btn', 'aria-pressed': 'false' }, icon('screen'), 'Share screen') : null;
    share?.addEventListener('click', () => this.toggleShare(share));
    const hang = h('button', { type: 'button', class: 'btn btn-danger', 'aria-label': 'Hang up' }, icon('hangup'), 'Hang up');
    hang.addEventListener('click', () => this.hangup());
    this.panel = h('section', {
      class: `call-panel${video ? ' fullscreen' : ''}`,
      'aria-label': `Call with ${this.peer.display_name}`,
      dataset: { callId: String(this.call.id) },
    },
    h('div', { class: 'row gap' }, avatar(this.peer), h('div', { class: 'grow' }, h('h2', {}, this.peer.display_name), this.status), this.clock),
    video ? h('div', { class: 'videos' }, this.remoteMedia, localVideo) : this.remoteMedia,
    this.quality,
    h('div', { class: 'call-controls' }, mute, camera, share, hang));
    document.getElementById('call-layer').append(this.panel);
    hang.focus();
  }

  setStatus(text) {
    this.status.textContent = text;
  }

  async toggleShare(button) {
    const sender = this.pc?.getSenders().find((s) => s.track?.kind === 'video');
    if (!sender) return;
    if (this.screen) {
      this.screen.getTracks().forEach((t) => t.stop());
      this.screen = null;
      await sender.replaceTrack(this.local.getVideoTracks()[0] || null);
      button.setAttribute('aria-pressed', 'false');
      this.signal('screen_share', { action: 'stop' });
      return;
    }
    try {
      this.screen = await navigator.mediaDevices.getDisplayMedia({ video: true });
      const track = this.screen.getVideoTracks()[0];
      track.addEventListener('ended', () => {
        if (this.screen) this.toggleShare(button);
      });
      await sender.replaceTrack(track);
      button.setAttribute('aria-pressed', 'true');
      this.signal('screen_share', { action: 'start' });
    } catch (err) {
      toast(`Cannot share the screen: ${err.message}`, { kind: 'error' });
    }
  }

  /** Ends the call on the server and here. */
  async hangup() {
    if (this.ended) return;
    const sent = app.socket.state === 'open'
      ? this.signal('hangup', {})
      : api.post(`/calls/${this.call.id}/end`).catch(() => {});
    this.teardown('ended');
    await sent;
  }

  async teardown(status) {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.qualityTimer);
    clearTimeout(this.clockTimer);
    // A last quality report for the whole call.
    if (this.pc && this.connectedAt) {
      try {
        const s = await stats.sample(this.pc, null);
        await api.post(`/calls/${this.call.id}/quality`, stats.report(s));
      } catch {
        // ended anyway
      }
    }
    this.screen?.getTracks().forEach((t) => t.stop());
    this.local.getTracks().forEach((t) => t.stop());
    this.pc?.close();
    this.off();
    this.panel.remove();
    if (current === this) current = null;
    toast(END_TEXT[status] || 'Call ended.');
  }
}
