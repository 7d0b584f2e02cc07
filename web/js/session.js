// The signed-in account and its tokens, kept in localStorage so a reload or
// a second tab stays signed in. Other tabs' changes arrive through the
// `storage` event.
//
// A copy also goes to IndexedDB. Chromium hands localStorage writes to
// other tab processes asynchronously, so a tab that takes the refresh lock
// right after another tab rotated the tokens can still read the old ones
// there; a committed IndexedDB transaction is visible to every tab at once.
// The refresh (api.js) reads the newer of the two, by `saved_at`.

const KEY = 'palaver.session';
const listeners = new Set();

function read() {
  try {
    const value = JSON.parse(localStorage.getItem(KEY) || 'null');
    return value && value.access_token && value.refresh_token ? value : null;
  } catch {
    return null;
  }
}

let current = read();

/** The session: {user, access_token, refresh_token} or null. */
export function session() {
  return current;
}

/** The signed-in user, or null. */
export function me() {
  return current?.user ?? null;
}

/**
 * Stores an auth response (or a new token pair) and tells listeners. The
 * promise settles once the shared copy is committed.
 */
export function save({ user, access_token, refresh_token, saved_at }) {
  current = { user: user ?? current?.user, access_token, refresh_token, saved_at: saved_at ?? stamp() };
  localStorage.setItem(KEY, JSON.stringify(current));
  emit();
  return shared('readwrite', (store) => store.put(current, KEY)).catch(() => {});
}

/** The shared copy (IndexedDB), or null. */
export function sharedSession() {
  return shared('readonly', (store) => store.get(KEY)).then((v) => v ?? null, () => null);
}

/** The newer of two sessions by `saved_at` (either may be null). */
export function newer(a, b) {
  if (!a) return b ?? null;
  if (!b) return a;
  return (b.saved_at ?? 0) > (a.saved_at ?? 0) ? b : a;
}

let lastStamp = 0;
function stamp() {
  lastStamp = Math.max(Date.now(), lastStamp + 1);
  return lastStamp;
}

let dbPromise = null;
function shared(mode, op) {
  if (!('indexedDB' in window)) return Promise.reject(new Error('no IndexedDB'));
  dbPromise ??= new Promise((resolve, reject) => {
    const open = indexedDB.open('palaver', 1);
    open.onupgradeneeded = () => open.result.createObjectStore('session');
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => reject(open.error);
  });
  return dbPromise.then((db) => new Promise((resolve, reject) => {
    const tx = db.transaction('session', mode);
    const req = op(tx.objectStore('session'));
    tx.oncomplete = () => resolve(req.result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  }));
}

/** Updates the cached user (after a profile edit). */
export function setUser(user) {
  if (!current) return;
  current = { ...current, user };
  localStorage.setItem(KEY, JSON.stringify(current));
  emit();
}

/** Forgets the session (logout, or a refresh the server refused). */
export function clear() {
  const had = current !== null;
  current = null;
  localStorage.removeItem(KEY);
  shared('readwrite', (store) => store.delete(KEY)).catch(() => {});
  if (had) emit();
}

/** Re-reads storage: another tab may have refreshed the tokens. */
export function reload() {
  current = read();
  return current;
}

/** Calls fn(session) on every change, from this tab or another. */
export function onChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function emit() {
  for (const fn of listeners) fn(current);
}

window.addEventListener('storage', (event) => {
  if (event.key !== KEY) return;
  const before = current?.user?.id;
  current = read();
  // A token rotation in another tab is silent; a sign-in or sign-out is not.
  if (current?.user?.id !== before) emit();
});

/** Seconds until the access token expires (from its `exp` claim). */
export function accessTokenTtl() {
  const token = current?.access_token;
  if (!token) return 0;
  try {
    const payload = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    return payload.exp - Date.now() / 1000;
  } catch {
    return 0;
  }
}
