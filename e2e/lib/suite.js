// The frame of a test file: one server and one browser for its tests,
// started before the first and stopped after the last.

import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './server.js';
import { launch } from './browser.js';

/**
 * Starts a server (with extra environment `env`, or what `env()` returns)
 * and Chromium for this file's tests; returns {server, browser}, filled in
 * once they run.
 */
export function suite(env = {}) {
  const ctx = { server: null, browser: null };
  before(async () => {
    ctx.server = await startServer(typeof env === 'function' ? env() : env);
    ctx.browser = await launch();
  });
  after(async () => {
    await ctx.browser?.close();
    await ctx.server?.stop();
  });
  return ctx;
}

/** Ends a test's people: no script errors on their pages, contexts closed. */
export async function done(...people) {
  for (const p of people) assert.deepEqual(p.errors, [], 'no errors in the page');
  for (const p of people) await p.context.close();
}
