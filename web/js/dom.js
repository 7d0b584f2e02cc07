// Building DOM without innerHTML: every piece of user text goes in as a
// text node, so nothing a user writes can become markup.

/**
 * h('button', {class: 'x', onclick: fn, 'aria-label': 'Like'}, 'text', child)
 * Attributes: `class`, `dataset` (object), `on<event>` (listener), boolean
 * attributes (true sets, false/null/undefined omits), the rest as attributes.
 * Children: nodes, strings, numbers, arrays, and null/false (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'value' && 'value' in el) {
      el.value = value;
    } else if (value === true) {
      el.setAttribute(key, '');
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

/** Appends children (see h) to a node. */
export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces a node's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** "3 min ago", "yesterday", or a date, with the exact time in a tooltip. */
export function timeAgo(iso) {
  const date = new Date(iso);
  const seconds = Math.round((Date.now() - date.getTime()) / 1000);
  let text;
  if (seconds < 45) text = 'just now';
  else if (seconds < 3600) text = `${Math.round(seconds / 60)} min ago`;
  else if (seconds < 86400) text = `${Math.round(seconds / 3600)} h ago`;
  else if (seconds < 2 * 86400) text = 'yesterday';
  else text = date.toLocaleDateString();
  return h('time', { datetime: date.toISOString(), title: date.toLocaleString() }, text);
}

/** Clock time for chat messages. */
export function clock(iso) {
  const date = new Date(iso);
  return h('time', { datetime: date.toISOString(), title: date.toLocaleString() },
    date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }));
}

/** A round avatar: the image when there is one, else the initials. */
export function avatar(user, size = 'md') {
  const name = user?.display_name || '?';
  if (user?.avatar) {
    return h('img', { class: `avatar avatar-${size}`, src: user.avatar, alt: '', loading: 'lazy' });
  }
  const initials = name.split(/\s+/).map((w) => w[0]).join('').slice(0, 2).toUpperCase();
  return h('span', { class: `avatar avatar-${size}`, 'aria-hidden': 'true', dataset: { hue: String(hue(name)) } }, initials);
}

function hue(text) {
  let n = 0;
  for (const c of text) n = (n * 31 + c.codePointAt(0)) % 360;
  return Math.floor(n / 30);
}

/** A unique id for label/aria wiring. */
let nextId = 0;
export function uid(prefix = 'id') {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

/** A labelled form field: returns {field, input}. */
export function field(label, input, hint) {
  const id = input.id || uid('f');
  input.id = id;
  const hintEl = hint ? h('small', { class: 'hint', id: `${id}-hint` }, hint) : null;
  if (hintEl) input.setAttribute('aria-describedby', hintEl.id);
  return { field: h('div', { class: 'field' }, h('label', { for: id }, label), input, hintEl), input };
}
