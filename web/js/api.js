// The REST client: JSON in and out, the API's error shape as ApiError, and
// transparent token refresh. A 401 on a request made with a token spends
// the refresh token once and retries. Refresh tokens are single-use and a
// reused one ends the session, so refreshes are serialised across tabs
// with the Web Locks API: whoever gets the lock second finds the tokens
// already rotated and just uses them.

import * as session from './session.js';

const BASE = '/api/v1';

/** An error answer from the API ({error: {code, message, details}}). */
export class ApiError extends Error {
  constructor(status, code, message, details = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }

  /** Field errors of a validation failure: {field: problem}. */
  get fields() {
    return this.details?.fields ?? {};
  }
}

let refreshing = null;

/** Spends the refresh token for a new pair (once at a time, in every tab). */
export function refresh(staleAccessToken) {
  if (!refreshing) {
    refreshing = withLock(async () => {
      const local = session.reload();
      const now = session.newer(local, await session.sharedSession());
      if (!now || !local) throw new ApiError(401, 'unauthorized', 'signed out');
      // Another tab (or an earlier call) already rotated the tokens.
      if (staleAccessToken && now.access_token !== staleAccessToken) {
        if (now !== local) await session.save(now);
        return session.session();
      }
      const res = await fetch(`${BASE}/auth/refresh`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ refresh_token: now.refresh_token }),
      });
      const body = await parse(res);
      if (!res.ok) {
        const err = toError(res, body);
        // Only a refusal ends the session; a network or server hiccup does not.
        if (res.status === 401 || res.status === 403) session.clear();
        throw err;
      }
      // Committed before the lock is released, for the next tab in line.
      await session.save(body);
      return session.session();
    }).finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

function withLock(fn) {
  if (navigator.locks?.request) return navigator.locks.request('palaver-token-refresh', fn);
  return fn();
}

/** A fresh enough access token (refreshing when it expires within 30 s). */
export async function accessToken() {
  if (!session.session()) return null;
  if (session.accessTokenTtl() < 30) await refresh(session.session().access_token);
  return session.session()?.access_token ?? null;
}

async function parse(res) {
  if (res.status === 204) return null;
  const type = res.headers.get('content-type') || '';
  if (type.includes('application/json')) {
    try {
      return await res.json();
    } catch {
      return null;
    }
  }
  return null;
}

function toError(res, body) {
  const e = body?.error;
  if (e) return new ApiError(res.status, e.code, e.message, e.details);
  return new ApiError(res.status, 'http_error', `${res.status} ${res.statusText}`);
}

/**
 * One request. `body`: an object (sent as JSON) or FormData. `query`: an
 * object of query parameters (null/undefined left out).
 */
export async function request(method, path, { body, query, auth = true, signal } = {}) {
  let url = BASE + path;
  if (query) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== null && v !== undefined && v !== '') params.set(k, v);
    const qs = params.toString();
    if (qs) url += `?${qs}`;
  }
  const send = async () => {
    const headers = {};
    let payload;
    if (body instanceof FormData) payload = body;
    else if (body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    const token = auth ? session.session()?.access_token : null;
    if (token) headers.authorization = `Bearer ${token}`;
    const res = await fetch(url, { method, headers, body: payload, signal });
    return { res, token };
  };
  let { res, token } = await send();
  if (res.status === 401 && token) {
    await refresh(token);
    ({ res } = await send());
  }
  const data = await parse(res);
  if (!res.ok) throw toError(res, data);
  return data;
}

export const get = (path, query, opts) => request('GET', path, { ...opts, query });
export const post = (path, body, opts) => request('POST', path, { ...opts, body });
export const put = (path, body, opts) => request('PUT', path, { ...opts, body });
export const patch = (path, body, opts) => request('PATCH', path, { ...opts, body });
export const del = (path, opts) => request('DELETE', path, opts);

/** Uploads one file (`POST /media`), answering {id, url, content_type, …}. */
export function upload(file) {
  const form = new FormData();
  form.append('file', file, file.name);
  return request('POST', '/media', { body: form });
}

/** Signs in or registers; stores the session. */
export async function authenticate(kind, body) {
  const data = await request('POST', `/auth/${kind}`, { body, auth: false });
  session.save(data);
  return data.user;
}

/** Ends the session on the server (best effort) and here. */
export async function logout() {
  try {
    await request('POST', '/auth/logout');
  } catch {
    // Signed out here either way.
  }
  session.clear();
}
