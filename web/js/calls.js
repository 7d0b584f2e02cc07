// 1-on-1 voice and video calls (also the calls random matching makes).
//
// Flow: the caller takes the microphone, places the call (`POST /calls`),
// and once the receiver accepts (`call_state` active) sends the offer over
// the socket (`signal` on `call:{id}`); the receiver answers. ICE
// candidates trickle both ways; candidates that arrive before the remote
// description wait for it. Opus gets the server's FEC/DTX/bitrate policy
// by SDP munging, capture its echo/noise/gain settings. When ICE connects
// the client says so (`POST /calls/{id}/connected`); while media flows it
// samples getStats(), shows a quality grade and posts it to
// `POST /calls/{id}/quality`. Incoming calls ring on every screen;
// accepting binds the call to this device (`call_accept` over the socket).
//
// After the first exchange either side renegotiates over the same
// `signal` frames (perfect negotiation, the receiver polite): turning the
// camera on or off, and a teacher's screen share, which is a track of its
// own in a stream of its own (announced with `screen_share`, which the
// server allows teachers only).

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

/** "m:ss" for a number of seconds. */
function minutes(s) {
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

class CallSession {
  constructor(call, role, stream, peer) {
    this.call = call;
    this.role = role;
    this.peer = peer;
    this.local = stream;
    this.remote = new MediaStream(); // the peer's microphone and camera
    this.screenStream = null; // the peer's shared screen, while they share
    this.mainStreamId = null;
    this.watched = new WeakSet();
    this.policy = call.media || {};
    this.pendingCandidates = [];
    // Perfect negotiation (the W3C pattern): either side may renegotiate
    // (camera on or off, a screen share); when both offer at once the
    // receiver is polite and yields, the caller ignores the other offer.
    this.polite = role !== 'caller';
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.negotiated = false; // the first offer/answer is done
    this.offered = false;
    this.ended = false;
    this.lastSample = null;
    this.qualityTimer = null;
    this.connectedAt = null;
    this.cameraSender = null;
    this.screen = null; // {stream, sender} while this side shares
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
    for (const track of this.local.getTracks()) {
      const sender = pc.addTrack(track, this.local);
      if (track.kind === 'video') this.cameraSender = sender;
    }
    pc.ontrack = (e) => this.onTrack(e);
    pc.onicecandidate = (e) => {
      if (e.candidate) this.signal('ice_candidate', e.candidate.toJSON());
    };
    pc.onnegotiationneeded = () => this.negotiate();
    pc.onconnectionstatechange = () => {
      const s = pc.connectionState;
      this.panel.dataset.connection = s;
      if (s === 'connected' && !this.connectedAt) {
        this.connectedAt = Date.now();
        this.setStatus('Connected');
        if (this.shareButton) this.shareButton.disabled = false;
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
   * A remote track. The peer's microphone and camera travel in one stream
   * (the one its audio is in); a track in any other stream is a shared
   * screen. Video shows while its track is unmuted: a track is muted when
   * the peer stops sending it (camera off, share stopped: both renegotiate).
   */
  onTrack(e) {
    const { track } = e;
    const stream = e.streams[0];
    if (!this.mainStreamId && (track.kind === 'audio' || !stream)) this.mainStreamId = stream?.id || 'none';
    const isScreen = track.kind === 'video' && stream && stream.id !== this.mainStreamId;
    if (isScreen) {
      this.screenStream = new MediaStream([track]);
      this.screenVideo.srcObject = this.screenStream;
    } else {
      for (const old of this.remote.getTracks()) if (old.kind === track.kind && old.readyState === 'ended') this.remote.removeTrack(old);
      if (!this.remote.getTrackById(track.id)) this.remote.addTrack(track);
      this.remoteAudio.srcObject = this.remote;
      this.remoteAudio.play?.().catch(() => {});
      if (track.kind === 'video') this.remoteVideo.srcObject = new MediaStream([track]);
    }
    // ontrack fires again when a track comes back (camera on again).
    for (const target of [track, stream]) {
      if (!target || this.watched.has(target)) continue;
      this.watched.add(target);
      for (const type of ['mute', 'unmute', 'ended', 'removetrack']) target.addEventListener(type, () => this.showVideos());
    }
    this.showVideos();
  }

  /** Shows the peer's camera and screen while they send them. */
  showVideos() {
    const live = (t) => t && t.readyState === 'live' && !t.muted;
    const camera = this.remoteVideo.srcObject?.getVideoTracks()[0];
    const screen = this.screenStream?.getVideoTracks()[0];
    const cameraOn = live(camera);
    const screenOn = live(screen);
    this.remoteVideo.hidden = !cameraOn;
    this.screenVideo.hidden = !screenOn;
    this.videos.hidden = !cameraOn && !screenOn && !this.localVideo.srcObject;
    this.videos.classList.toggle('has-screen', screenOn);
    this.panel.classList.toggle('fullscreen', this.call.call_type === 'video' || cameraOn || screenOn);
    this.panel.dataset.remoteCamera = cameraOn ? 'on' : 'off';
    this.panel.dataset.remoteScreen = screenOn ? 'on' : 'off';
    for (const v of [this.remoteVideo, this.screenVideo]) if (!v.hidden) v.play?.().catch(() => {});
  }

  /** Sends an offer for what changed (after the first exchange). */
  async negotiate() {
    if (!this.negotiated || this.ended) return;
    const pc = this.pc;
    try {
      this.makingOffer = true;
      const offer = await pc.createOffer();
      if (pc.signalingState !== 'stable') return;
      const local = rtcMedia.munged(offer, this.policy);
      await pc.setLocalDescription(local);
      this.signal('offer', local);
    } catch (err) {
      console.warn('renegotiation failed', err);
    } finally {
      this.makingOffer = false;
    }
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
      await this.ready;
      this.negotiated = true;
      await this.negotiate();
    }
  }

  async onFrame(frame) {
    if (frame.type === 'call_state' && frame.data?.id === this.call.id) {
      this.onState(frame.data);
      return;
    }
    if (frame.type === 'screen_share') {
      const on = Boolean(frame.data?.active);
      this.panel.dataset.peerSharing = on ? 'true' : 'false';
      this.setStatus(on ? `${this.peer.display_name} is sharing their screen` : 'Connected');
      return;
    }
    if (frame.type !== 'signal' || frame.data?.call_id !== this.call.id) return;
    const { kind, payload } = frame.data;
    const pc = await this.ready;
    try {
      if (kind === 'offer') {
        const collision = this.makingOffer || pc.signalingState !== 'stable';
        this.ignoreOffer = !this.polite && collision;
        if (this.ignoreOffer) return;
        // (A polite side in the middle of its own offer rolls it back here.)
        await pc.setRemoteDescription(payload);
        await this.flushCandidates();
        const answer = await pc.createAnswer();
        const local = rtcMedia.munged(answer, this.policy);
        await pc.setLocalDescription(local);
        this.signal('answer', local);
        this.negotiated = true;
      } else if (kind === 'answer') {
        if (pc.signalingState !== 'have-local-offer') return; // a stale answer
        await pc.setRemoteDescription(payload);
        await this.flushCandidates();
      } else if (kind === 'ice_candidate') {
        if (pc.remoteDescription) await pc.addIceCandidate(payload);
        else this.pendingCandidates.push(payload);
      } else if (kind === 'hangup') {
        this.teardown('ended');
      }
    } catch (err) {
      // Candidates of an offer this side ignored fail to apply: expected.
      if (!(kind === 'ice_candidate' && this.ignoreOffer)) console.warn('signal failed', kind, err);
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
        const grade = stats.grade(s);
        this.quality.textContent = `Quality: ${grade}${s.rtt_ms !== undefined ? ` · ${Math.round(s.rtt_ms)} ms` : ''}`;
        this.quality.dataset.grade = grade.toLowerCase();
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

  /** Seconds since media connected. */
  elapsed() {
    return this.connectedAt ? Math.floor((Date.now() - this.connectedAt) / 1000) : 0;
  }

  tickClock() {
    const update = () => {
      if (this.ended || !this.connectedAt) return;
      this.clock.textContent = minutes(this.elapsed());
      this.clockTimer = setTimeout(update, 1000);
    };
    update();
  }

  draw() {
    const video = this.call.call_type === 'video';
    this.status = h('p', { class: 'muted', role: 'status' }, '');
    this.clock = h('span', { class: 'muted small', 'aria-label': 'Call duration' });
    this.quality = h('p', { class: 'quality', 'aria-live': 'off' });
    // The peer's sound plays here; their camera and screen show (muted) in
    // the video elements, each only while it is sent.
    this.remoteAudio = h('audio', { autoplay: true });
    this.remoteVideo = h('video', { class: 'remote', autoplay: true, playsinline: true, muted: true, hidden: true, 'aria-label': `${this.peer.display_name}'s camera` });
    this.screenVideo = h('video', { class: 'screen', autoplay: true, playsinline: true, muted: true, hidden: true, 'aria-label': `${this.peer.display_name}'s screen` });
    for (const v of [this.remoteVideo, this.screenVideo]) v.muted = true;
    this.localVideo = h('video', { class: 'local', autoplay: true, playsinline: true, muted: true, 'aria-label': 'Your camera' });
    this.localVideo.muted = true;
    if (video) this.localVideo.srcObject = this.local;
    else this.localVideo.hidden = true;
    this.videos = h('div', { class: 'videos', hidden: !video }, this.remoteVideo, this.screenVideo, this.localVideo);

    const mute = h('button', { type: 'button', class: 'btn', 'aria-pressed': 'false' }, icon('mic'), 'Mute');
    mute.addEventListener('click', () => {
      const on = mute.getAttribute('aria-pressed') !== 'true';
      for (const t of this.local.getAudioTracks()) t.enabled = !on;
      mute.setAttribute('aria-pressed', String(on));
      mute.replaceChildren(icon(on ? 'micOff' : 'mic'), on ? 'Unmute' : 'Mute');
    });
    // The camera: on from the start in a video call; a voice call can turn
    // it on (which renegotiates).
    this.cameraButton = h('button', { type: 'button', class: 'btn', 'aria-pressed': String(video) }, icon('video'), video ? 'Camera off' : 'Camera on');
    this.cameraButton.addEventListener('click', () => this.toggleCamera());
    // Screen sharing is for teachers (the server refuses anyone else), in
    // any call once media connects.
    const me = session.me();
    const canShare = me?.role === 'teacher' && Boolean(navigator.mediaDevices?.getDisplayMedia);
    this.shareButton = canShare ? h('button', { type: 'button', class: 'btn', 'aria-pressed': 'false', disabled: true }, icon('screen'), 'Share screen') : null;
    this.shareButton?.addEventListener('click', () => this.toggleShare());
    const hang = h('button', { type: 'button', class: 'btn btn-danger', 'aria-label': 'Hang up' }, icon('hangup'), 'Hang up');
    hang.addEventListener('click', () => this.hangup());
    this.panel = h('section', {
      class: `call-panel${video ? ' fullscreen' : ''}`,
      'aria-label': `Call with ${this.peer.display_name}`,
      dataset: { callId: String(this.call.id) },
    },
    h('div', { class: 'row gap' }, avatar(this.peer), h('div', { class: 'grow' }, h('h2', {}, this.peer.display_name), this.status), this.clock),
    this.remoteAudio,
    this.videos,
    this.quality,
    h('div', { class: 'call-controls' }, mute, this.cameraButton, this.shareButton, hang));
    document.getElementById('call-layer').append(this.panel);
    hang.focus();
  }

  setStatus(text) {
    this.status.textContent = text;
  }

  /**
   * Camera off stops the camera (its light goes out) and stops sending
   * video; camera on takes it again. Both renegotiate, so the peer's video
   * track is muted while the camera is off and they see the avatar.
   */
  async toggleCamera() {
    const button = this.cameraButton;
    const on = button.getAttribute('aria-pressed') === 'true';
    const pc = await this.ready;
    button.disabled = true;
    try {
      if (on) {
        for (const t of this.local.getVideoTracks()) {
          t.stop();
          this.local.removeTrack(t);
        }
        if (this.cameraSender) {
          await this.cameraSender.replaceTrack(null);
          this.transceiverOf(this.cameraSender).direction = 'recvonly';
        }
        this.localVideo.srcObject = null;
        this.localVideo.hidden = true;
      } else {
        const taken = await navigator.mediaDevices.getUserMedia({ video: rtcMedia.CAMERA });
        const track = taken.getVideoTracks()[0];
        this.local.addTrack(track);
        if (this.cameraSender) {
          await this.cameraSender.replaceTrack(track);
          this.transceiverOf(this.cameraSender).direction = 'sendrecv';
        } else {
          this.cameraSender = pc.addTrack(track, this.local);
        }
        this.localVideo.srcObject = this.local;
        this.localVideo.hidden = false;
      }
      button.setAttribute('aria-pressed', String(!on));
      button.replaceChildren(icon('video'), on ? 'Camera on' : 'Camera off');
      this.showVideos();
    } catch (err) {
      toast(`Cannot use your camera: ${err.message}`, { kind: 'error' });
    } finally {
      button.disabled = false;
    }
  }

  transceiverOf(sender) {
    return this.pc.getTransceivers().find((t) => t.sender === sender);
  }

  /**
   * Shares the screen as a track of its own (the camera stays on), which
   * renegotiates; the server is asked first, so a refused share sends no
   * media. Stopping (or the browser's own "stop sharing") removes it.
   */
  async toggleShare() {
    const button = this.shareButton;
    const pc = await this.ready;
    if (this.screen) {
      const { stream, sender } = this.screen;
      this.screen = null;
      stream.getTracks().forEach((t) => t.stop());
      pc.removeTrack(sender);
      button.setAttribute('aria-pressed', 'false');
      button.replaceChildren(icon('screen'), 'Share screen');
      await this.signal('screen_share', { action: 'stop' });
      return;
    }
    button.disabled = true;
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
      await app.socket.request({ op: 'signal', call_id: this.call.id, kind: 'screen_share', payload: { action: 'start' } });
    } catch (err) {
      stream?.getTracks().forEach((t) => t.stop());
      toast(`Cannot share the screen: ${errorText(err)}`, { kind: 'error' });
      button.disabled = false;
      return;
    }
    const track = stream.getVideoTracks()[0];
    track.contentHint = 'detail';
    track.addEventListener('ended', () => {
      if (this.screen?.stream === stream) this.toggleShare();
    });
    this.screen = { stream, sender: pc.addTrack(track, stream) };
    button.setAttribute('aria-pressed', 'true');
    button.replaceChildren(icon('screen'), 'Stop sharing');
    button.disabled = false;
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
    const lasted = this.connectedAt ? this.elapsed() : null;
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
    this.screen?.stream.getTracks().forEach((t) => t.stop());
    this.local.getTracks().forEach((t) => t.stop());
    this.pc?.close();
    this.off();
    this.panel.remove();
    if (current === this) current = null;
    const text = END_TEXT[status] || 'Call ended.';
    toast(status === 'ended' && lasted !== null ? `Call ended · ${minutes(lasted)}` : text);
  }
}
