// The notification bell's state: the unread count and the live stream.
// The count is fetched at sign-in and whenever the window regains focus or
// the route changes, and kept current by `notification` events on the
// user's own topic (`user:{id}`, subscribed automatically by the server),
// and re-read after every reconnect.

import * as api from './api.js';
import { app } from './app.js';

const listeners = new Set();
let unread = 0;
let off = null;

/** The unread count now. */
export function unreadCount() {
  return unread;
}

/** Calls fn({unread, event}) on every change; returns an unsubscribe. */
export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function emit(event = null) {
  for (const fn of listeners) fn({ unread, event });
}

/** Sets the count (after a read, or from an answer that carries it). */
export function setUnread(n) {
  if (typeof n !== 'number' || n === unread) return;
  unread = n;
  emit();
}

/** Re-reads the count from the server. */
export async function refreshCount() {
  try {
    const { unread_count } = await api.get('/notifications/unread_count');
    setUnread(unread_count);
  } catch {
    // The bell keeps its last count.
  }
}

/** Starts following the user's notifications. */
export function start(userId) {
  stop();
  refreshCount();
  const offTopic = app.socket.on(`user:${userId}`, (frame) => {
    if (frame.type !== 'notification') return;
    const data = frame.data || {};
    if (typeof data.unread_count === 'number') unread = data.unread_count;
    emit(data);
  });
  // Events on the user's topic are not replayed after a reconnect: catch
  // up on the count instead, and tell open lists to reload.
  const onOpen = () => {
    refreshCount();
    emit({ action: 'resync' });
  };
  app.socket.addEventListener('open', onOpen);
  off = () => {
    offTopic();
    app.socket?.removeEventListener('open', onOpen);
  };
}

/** Stops (sign-out). */
export function stop() {
  off?.();
  off = null;
  unread = 0;
  emit();
}
