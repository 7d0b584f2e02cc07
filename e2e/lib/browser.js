// Headless Chromium (the system's /usr/bin/chromium) driven by
// playwright-core, with fake camera and microphone, and helpers that act
// like a person: find controls by role and label, never by CSS internals.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/** Where screenshots go (gitignored). */
export const ARTIFACTS = process.env.E2E_ARTIFACTS || resolve(here, '../artifacts');

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
];

/**
 * Launches Chromium. Playwright gives every launch a fresh temporary
 * user-data-dir (and removes it on close), so runs share no state.
 */
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 60_000,
  });
}

/** A new browser context (a person with their own storage) on the server. */
export async function person(browser, server, { phone = false } = {}) {
  const context = await browser.newContext({
    baseURL: server.url,
    viewport: phone ? { width: 390, height: 844 } : { width: 1200, height: 860 },
    deviceScaleFactor: 1,
    isMobile: phone,
    hasTouch: phone,
    permissions: ['microphone', 'camera', 'notifications'],
  });
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(err));
  // What the server sent over WebSockets (and what the page sent), parsed:
  // tests check that something arrived live, not through a reload or a poll.
  const frames = [];
  const sent = [];
  const parse = (payload, into) => {
    try {
      into.push(JSON.parse(typeof payload === 'string' ? payload : payload.toString()));
    } catch {
      // not JSON: not ours
    }
  };
  page.on('websocket', (ws) => {
    ws.on('framereceived', ({ payload }) => parse(payload, frames));
    ws.on('framesent', ({ payload }) => parse(payload, sent));
  });
  return { context, page, errors, frames, sent };
}

let counter = 0;
/** A unique email for this run. */
export function email(name) {
  counter += 1;
  return `${name.toLowerCase()}.${Date.now().toString(36)}${counter}@example.org`;
}

/** Registers through the form and waits for the feed. Returns {email, password, id}. */
export async function register(page, name, { native = 'es', learning = 'en' } = {}) {
  const address = email(name);
  const password = 'correct horse battery';
  await page.goto('/register');
  await page.getByLabel('Display name').fill(name);
  await page.getByLabel('Email').fill(address);
  await page.getByLabel('Password').fill(password);
  await page.getByLabel('I speak').fill(native);
  await page.getByLabel('I am learning').fill(learning);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.waitForURL((url) => url.pathname === '/');
  const id = await page.evaluate(() => JSON.parse(localStorage.getItem('palaver.session')).user.id);
  return { email: address, password, id, name };
}

/** Signs in through the form and waits for the feed. */
export async function login(page, { email: address, password }) {
  await page.goto('/login');
  await page.getByLabel('Email').fill(address);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((url) => url.pathname === '/');
  const id = await page.evaluate(() => JSON.parse(localStorage.getItem('palaver.session')).user.id);
  return { email: address, password, id };
}

/** Saves a screenshot under ARTIFACTS. */
export async function shot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: false });
}

/** The session the page keeps in localStorage. */
export function sessionOf(page) {
  return page.evaluate(() => JSON.parse(localStorage.getItem('palaver.session')));
}

/** Polls `fn` (async) until it returns a truthy value, up to `timeout` ms. */
/**
 * Takes a person's network away. The app's socket is closed first and kept
 * down (`wanted = false`): once offline, its closing handshake could not
 * finish, and when Chromium gives up on it varies. The test decides how the
 * socket comes back.
 */
export async function goOffline(p) {
  await p.page.evaluate(async () => {
    const { app } = await import('/js/app.js');
    app.socket.wanted = false;
    app.socket.ws.close();
  });
  await eventually(() => p.page.evaluate(async () => (await import('/js/app.js')).app.socket.state === 'closed'), { what: 'the socket to close' });
  await p.context.setOffline(true);
}

export async function eventually(fn, { timeout = 15_000, every = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/**
 * A PNG picture to upload, drawn in the page's canvas (a gradient with a
 * label): {name, mimeType, buffer}, as `setInputFiles` takes it.
 */
export async function picture(page, { width = 640, height = 400, name = 'picture.png', label = '' } = {}) {
  const base64 = await page.evaluate(async ({ width, height, label }) => {
    const canvas = new OffscreenCanvas(width, height);
    const g = canvas.getContext('2d');
    const gradient = g.createLinearGradient(0, 0, width, height);
    gradient.addColorStop(0, '#f59e0b');
    gradient.addColorStop(1, '#7c3aed');
    g.fillStyle = gradient;
    g.fillRect(0, 0, width, height);
    g.fillStyle = '#ffffff';
    g.font = `bold ${Math.round(height / 7)}px sans-serif`;
    g.fillText(label, width / 12, height / 2);
    const bytes = new Uint8Array(await (await canvas.convertToBlob({ type: 'image/png' })).arrayBuffer());
    let binary = '';
    for (const b of bytes) binary += String.fromCharCode(b);
    return btoa(binary);
  }, { width, height, label });
  return { name, mimeType: 'image/png', buffer: Buffer.from(base64, 'base64') };
}

/**
 * Waits until the <img> `locator` has loaded a real picture (decoded, not a
 * broken image); returns its natural size {width, height}. The element may
 * be drawn again meanwhile (a message confirmed, then seen): each try finds
 * it anew.
 */
export async function loadedImage(locator, { timeout = 15_000 } = {}) {
  let last = null;
  try {
    return await eventually(async () => {
      try {
        await locator.scrollIntoViewIfNeeded({ timeout: 2_000 });
        return await locator.evaluate(
          (img) => (img.complete && img.naturalWidth > 0 ? { width: img.naturalWidth, height: img.naturalHeight } : null),
          null,
          { timeout: 2_000 },
        );
      } catch (err) {
        last = err;
        return null;
      }
    }, { timeout, what: 'the image to load' });
  } catch (err) {
    throw last ? new Error(`${err.message}; last attempt: ${last.message}`) : err;
  }
}
