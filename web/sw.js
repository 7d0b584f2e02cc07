// Palaver's service worker: shows pushed notifications and opens the
// right screen when one is clicked. It caches nothing: the client is
// small and always served fresh (ETag revalidation).

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('push', (event) => {
  let msg = {};
  try {
    msg = event.data ? event.data.json() : {};
  } catch {
    msg = { title: 'Palaver', body: event.data?.text() ?? '' };
  }
  const title = msg.title || 'Palaver';
  event.waitUntil(self.registration.showNotification(title, {
    body: msg.body || '',
    tag: msg.notification_id ? `n${msg.notification_id}` : undefined,
    data: { url: targetUrl(msg), notification_id: msg.notification_id },
    icon: '/icon.svg',
    badge: '/icon.svg',
  }));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const url = event.notification.data?.url || '/notifications';
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    for (const client of windows) {
      if (new URL(client.url).origin === self.location.origin && 'focus' in client) {
        await client.focus();
        client.postMessage({ type: 'navigate', url });
        return;
      }
    }
    await self.clients.openWindow(url);
  })());
});

/** Where a notification leads (the same rules as the in-app list). */
function targetUrl(msg) {
  const d = msg.data || {};
  if (d.room_id) return `/chat/${d.room_id}`;
  if (d.moment_id) return `/moments/${d.moment_id}`;
  if (msg.type === 'follow' && d.actor_id) return `/u/${d.actor_id}`;
  return '/notifications';
}
