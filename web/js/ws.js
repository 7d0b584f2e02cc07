// The client of the multiplexed WebSocket (`GET /ws`).
//
// Frames are JSON objects with an `op`. Requests carry a `ref` and are
// answered by an `ack` (or an `error`) with the same ref; events arrive as
// `{op: "event", topic, type, seq?, data}`. The socket reconnects by
// itself (exponential backoff with jitter, at once when the browser comes
// back online) and re-subscribes every topic; sequenced topics (chat)
// resume with `since_seq` = the last seq seen, so the server replays
// exactly what was missed. An event this client already has (seq not
// above the last seen) is dropped, so a resume shows no duplicates.
// An `error` frame about a topic (`resync_required`: too much was missed
// to replay) and `unsubscribed` events reach that topic's handlers.
//
// Written by hand: the protocol is Palaver's own, and the whole client is
// smaller than an adapter to a generic library would be.

const PING_EVERY_MS = 25_000;
const PONG_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 10_000;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15_000;
/** The server's close code for a token that is no longer valid. */
const CLOSE_UNAUTHORIZED = 4001;

/** A request the server refused, or one that could not be answered. */
export class SocketError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

export class Socket extends EventTarget {
  /**
   * @param {object} opts
   * @param {() => Promise<string|null>} opts.token the access token to connect with
   * @param {() => Promise<unknown>} [opts.refresh] renews the token (after close code 4001)
   * @param {string} [opts.url] the endpoint (default: this origin's /ws)
   */
  constructor({ token, refresh, url }) {
    super();
    this.tokenFn = token;
    this.refreshFn = refresh;
    this.url = url || `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
    this.ws = null;
    this.state = 'closed';
    this.wanted = false;
    this.attempt = 0;
    this.nextRef = 1;
    this.pending = new Map(); // ref -> {resolve, reject, timer}
    this.topics = new Map(); // topic -> {handlers: Set, subscribed: bool, lastSeq: number|null}
    this.retryTimer = null;
    this.pingTimer = null;
    this.onOnline = () => this.reconnectNow();
    window.addEventListener('online', this.onOnline);
  }

  /** Connects, and keeps reconnecting until stop(). */
  start() {
    this.wanted = true;
    if (!this.ws) this.connect();
  }

  /** Closes for good (sign-out). */
  stop() {
    this.wanted = false;
    clearTimeout(this.retryTimer);
    window.removeEventListener('online', this.onOnline);
    this.ws?.close(1000, 'bye');
    this.teardown();
    this.setState('closed');
  }

  /** Listens to a topic without subscribing (`user:{id}` is automatic). */
  on(topic, handler) {
    const t = this.topic(topic);
    t.handlers.add(handler);
    return () => {
      t.handlers.delete(handler);
      if (!t.handlers.size && !t.subscribed) this.topics.delete(topic);
    };
  }

  /**
   * Subscribes to a topic; `sinceSeq`: replay what came after it. The
   * subscription survives reconnects. Returns a function that unsubscribes.
   */
  subscribe(topic, handler, { sinceSeq = null } = {}) {
    const t = this.topic(topic);
    t.handlers.add(handler);
    if (sinceSeq !== null && (t.lastSeq === null || sinceSeq > t.lastSeq)) t.lastSeq = sinceSeq;
    // A second listener on a subscribed topic shares the subscription.
    if (t.subscribed) return this.unsubscriber(topic, t, handler);
    t.subscribed = true;
    if (this.state === 'open') this.sendSubscribe(topic, t);
    return this.unsubscriber(topic, t, handler);
  }

  unsubscriber(topic, t, handler) {
    return () => {
      t.handlers.delete(handler);
      if (t.handlers.size) return;
      this.topics.delete(topic);
      if (this.state === 'open') this.request({ op: 'unsubscribe', topic }).catch(() => {});
    };
  }

  /** Sends a frame with a ref and waits for its ack (or error). */
  request(frame, { timeout = REQUEST_TIMEOUT_MS } = {}) {
    if (this.state !== 'open') return Promise.reject(new SocketError('disconnected', 'not connected'));
    const ref = String(this.nextRef++);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(ref);
        reject(new SocketError('timeout', `no answer to ${frame.op}`));
      }, timeout);
      this.pending.set(ref, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ ...frame, ref }));
    });
  }

  /** Sends a frame nobody answers (typing, read); false when offline. */
  send(frame) {
    if (this.state !== 'open') return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Forgets a topic's position (after reloading its history over REST). */
  setLastSeq(topic, seq) {
    const t = this.topics.get(topic);
    if (t) t.lastSeq = seq;
  }

  /** The last seq seen on a topic. */
  lastSeq(topic) {
    return this.topics.get(topic)?.lastSeq ?? null;
  }

  // --- internals ---

  topic(name) {
    let t = this.topics.get(name);
    if (!t) {
      t = { handlers: new Set(), subscribed: false, lastSeq: null, live: false };
      this.topics.set(name, t);
    }
    return t;
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent('status', { detail: state }));
  }

  async connect() {
    clearTimeout(this.retryTimer);
    this.setState('connecting');
    let token;
    try {
      token = await this.tokenFn();
    } catch {
      token = null;
    }
    if (!this.wanted) return;
    if (!token) {
      this.scheduleRetry();
      return;
    }
    const ws = new WebSocket(`${this.url}?token=${encodeURIComponent(token)}`);
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.attempt = 0;
      this.setState('open');
      for (const [name, t] of this.topics) if (t.subscribed) this.sendSubscribe(name, t);
      this.startPing();
      this.dispatchEvent(new Event('open'));
    };
    ws.onmessage = (msg) => {
      if (this.ws === ws) this.receive(msg.data);
    };
    ws.onclose = async (event) => {
      if (this.ws !== ws) return;
      this.teardown();
      this.setState('closed');
      if (event.code === CLOSE_UNAUTHORIZED && this.refreshFn) {
        // The token expired or the session changed: renew before retrying.
        try {
          await this.refreshFn();
        } catch {
          // scheduleRetry tries again; a dead session signs out elsewhere.
        }
      }
      if (this.wanted) this.scheduleRetry();
    };
    ws.onerror = () => {}; // onclose follows and handles it
  }

  sendSubscribe(topic, t) {
    const frame = { op: 'subscribe', topic };
    if (t.lastSeq !== null) frame.since_seq = t.lastSeq;
    t.live = false;
    this.request(frame).then(() => {
      t.live = true;
      this.dispatchEvent(new CustomEvent('subscribed', { detail: { topic } }));
    }, (err) => {
      this.dispatchEvent(new CustomEvent('subscribe_error', { detail: { topic, error: err } }));
    });
  }

  /** Whether the server confirmed the subscription on this connection. */
  isLive(topic) {
    return this.state === 'open' && Boolean(this.topics.get(topic)?.live);
  }

  receive(raw) {
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return;
    }
    const p = frame.ref !== undefined && frame.ref !== null ? this.pending.get(String(frame.ref)) : undefined;
    if (p && (frame.op === 'ack' || frame.op === 'error' || frame.op === 'pong')) {
      this.pending.delete(String(frame.ref));
      clearTimeout(p.timer);
      if (frame.op === 'error') {
        const err = new SocketError(frame.code || 'error', frame.message || 'refused');
        err.details = frame.details;
        p.reject(err);
      } else p.resolve(frame);
      return;
    }
    if ((frame.op !== 'event' && frame.op !== 'error') || typeof frame.topic !== 'string') return;
    const t = this.topics.get(frame.topic);
    if (typeof frame.seq === 'number' && t) {
      if (t.lastSeq !== null && frame.seq <= t.lastSeq) return; // already seen (replay overlap)
      t.lastSeq = frame.seq;
    }
    if (frame.op === 'event' && frame.type === 'unsubscribed' && t) t.subscribed = false;
    if (t) for (const handler of [...t.handlers]) handler(frame);
    this.dispatchEvent(new CustomEvent('event', { detail: frame }));
  }

  startPing() {
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => {
      this.request({ op: 'ping' }, { timeout: PONG_TIMEOUT_MS }).catch(() => {
        // No answer: the connection is dead even if the browser has not noticed.
        this.ws?.close(4000, 'ping timeout');
        this.reconnectNow();
      });
    }, PING_EVERY_MS);
  }

  teardown() {
    clearInterval(this.pingTimer);
    for (const t of this.topics.values()) t.live = false;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new SocketError('disconnected', 'connection lost'));
    }
    this.pending.clear();
    if (this.ws) {
      this.ws.onopen = this.ws.onmessage = this.ws.onclose = null;
      this.ws = null;
    }
  }

  scheduleRetry() {
    clearTimeout(this.retryTimer);
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    this.attempt += 1;
    const delay = base / 2 + Math.random() * (base / 2);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  /** Drops the current connection (if any) and connects again now. */
  reconnectNow() {
    if (!this.wanted) return;
    if (this.ws) {
      const ws = this.ws;
      this.teardown();
      try {
        ws.close();
      } catch {
        // already closed
      }
      this.setState('closed');
    }
    this.attempt = 0;
    this.connect();
  }
}
