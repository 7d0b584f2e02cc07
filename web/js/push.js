// Browser push: a service worker (/sw.js) and a Web Push subscription
// registered with the server (`POST /push-tokens`), encrypted to the
// server's VAPID key (`GET /notifications/push-config`).

import * as api from './api.js';

/** Whether this browser can do Web Push at all. */
export function supported() {
  return 'serviceWorker' in navigator && 'PushManager' in window && 'Notification' in window;
}

/** Registers the service worker (also used for notification clicks). */
export function registerWorker() {
  if (!('serviceWorker' in navigator)) return Promise.resolve(null);
  return navigator.serviceWorker.register('/sw.js', { scope: '/' });
}

/** 'unsupported' | 'unavailable' (server has no VAPID key) | 'denied' | 'on' | 'off'. */
export async function status() {
  if (!supported()) return 'unsupported';
  if (Notification.permission === 'denied') return 'denied';
  const reg = await navigator.serviceWorker.getRegistration('/');
  const sub = await reg?.pushManager.getSubscription();
  if (sub) return 'on';
  const config = await api.get('/notifications/push-config');
  return config.vapid_public_key ? 'off' : 'unavailable';
}

/** Asks for permission, subscribes and registers the device. */
export async function enable() {
  if (!supported()) throw new Error('This browser does not support push notifications.');
  const config = await api.get('/notifications/push-config');
  if (!config.vapid_public_key) throw new Error('Push notifications are not set up on this server.');
  const permission = await Notification.requestPermission();
  if (permission !== 'granted') throw new Error('Notifications are blocked for this site.');
  const reg = await registerWorker();
  await navigator.serviceWorker.ready;
  let sub = await reg.pushManager.getSubscription();
  if (!sub) {
    sub = await reg.pushManager.subscribe({
      userVisibleOnly: true,
      applicationServerKey: base64UrlToBytes(config.vapid_public_key),
    });
  }
  await api.post('/push-tokens', { device_type: 'web', web_push: sub.toJSON() });
  return sub;
}

/** Unsubscribes and forgets the device on the server. */
export async function disable() {
  const reg = await navigator.serviceWorker.getRegistration('/');
  const sub = await reg?.pushManager.getSubscription();
  if (!sub) return;
  try {
    await api.del(`/push-tokens/${encodeURIComponent(sub.endpoint)}`);
  } catch (err) {
    if (err.status !== 404) throw err;
  }
  await sub.unsubscribe();
}

function base64UrlToBytes(text) {
  const padded = text.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (text.length % 4)) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}
