// Small shared pieces of interface: toasts, dialogs, buttons that show
// they are busy, error messages people can read.

import { h, field } from './dom.js';

/** A short message in the corner, read out by screen readers. */
export function toast(message, { kind = 'info', timeout = 5000 } = {}) {
  const host = document.getElementById('toasts');
  const el = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, message);
  host.append(el);
  setTimeout(() => el.remove(), timeout);
  return el;
}

/** What to tell a person about a failed request. */
export function errorText(err) {
  if (!err) return 'Something went wrong.';
  if (err.code === 'rate_limited') {
    const after = err.details?.retry_after;
    return after ? `Slow down: try again in ${after} s.` : 'Slow down a little and try again.';
  }
  if (err.code === 'validation_failed' && err.fields) {
    const first = Object.entries(err.fields)[0];
    if (first) return `${first[0].replace(/_/g, ' ')} ${first[1]}`;
  }
  if (err instanceof TypeError) return 'Cannot reach the server. Check your connection.';
  return err.message || 'Something went wrong.';
}

/** Runs `work` while the button is disabled and marked busy. */
export async function busy(button, work) {
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}

/**
 * A modal dialog (native <dialog>: focus is trapped, Escape closes it, and
 * focus returns to where it was). `build(close)` returns the body; the
 * promise resolves with what close() is given (undefined on Escape).
 */
export function modal(title, build, { className = '' } = {}) {
  return new Promise((resolve) => {
    const titleId = `dlg-${Math.random().toString(36).slice(2)}`;
    const dialog = h('dialog', { class: `modal ${className}`, 'aria-labelledby': titleId });
    let result;
    const close = (value) => {
      result = value;
      dialog.close();
    };
    dialog.append(h('h2', { id: titleId }, title), build(close));
    dialog.addEventListener('close', () => {
      dialog.remove();
      resolve(result);
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** Asks a yes/no question; resolves true on yes. */
export function confirmDialog(title, text, yes = 'OK') {
  return modal(title, (close) => h('div', {},
    h('p', {}, text),
    h('div', { class: 'row end' },
      h('button', { type: 'button', class: 'btn', onclick: () => close(false) }, 'Cancel'),
      h('button', { type: 'button', class: 'btn btn-danger', onclick: () => close(true) }, yes)),
  )).then(Boolean);
}

const REPORT_TYPES = [
  ['spam', 'Spam'],
  ['harassment', 'Harassment'],
  ['inappropriate', 'Inappropriate content'],
  ['fake', 'Fake account'],
  ['other', 'Something else'],
];

/** The report form; resolves {report_type, description} or undefined. */
export function reportDialog(what) {
  return modal(`Report ${what}`, (close) => {
    const select = h('select', { name: 'report_type', required: true },
      REPORT_TYPES.map(([v, label]) => h('option', { value: v }, label)));
    const text = h('textarea', { name: 'description', rows: 3, maxlength: 2000 });
    const form = h('form', {
      class: 'stack',
      onsubmit: (e) => {
        e.preventDefault();
        close({ report_type: select.value, description: text.value.trim() });
      },
    },
    field('Reason', select).field,
    field('What happened (optional)', text).field,
    h('div', { class: 'row end' },
      h('button', { type: 'button', class: 'btn', onclick: () => close(undefined) }, 'Cancel'),
      h('button', { type: 'submit', class: 'btn btn-primary' }, 'Send report')));
    return form;
  });
}

/**
 * Infinite scroll: calls `load()` when `sentinel` comes into view, until
 * load resolves false. A "Load more" button does the same for keyboards
 * and screen readers.
 */
export function infinite(sentinel, load) {
  let loading = false;
  let done = false;
  const button = h('button', { type: 'button', class: 'btn btn-quiet load-more' }, 'Load more');
  const run = async () => {
    if (loading || done) return;
    loading = true;
    button.disabled = true;
    try {
      const more = await load();
      if (!more) {
        done = true;
        button.remove();
        observer.disconnect();
      }
    } catch (err) {
      toast(errorText(err), { kind: 'error' });
    } finally {
      loading = false;
      button.disabled = false;
    }
    // Still in view (a short page)? Keep going.
    if (!done && isVisible(sentinel)) run();
  };
  button.addEventListener('click', run);
  sentinel.append(button);
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) run();
  }, { rootMargin: '400px' });
  observer.observe(sentinel);
  run();
  return {
    reset() {
      done = false;
      if (!button.isConnected) sentinel.append(button);
      observer.observe(sentinel);
      run();
    },
    stop() {
      observer.disconnect();
    },
  };
}

function isVisible(el) {
  if (!el.isConnected) return false;
  const r = el.getBoundingClientRect();
  return r.top < window.innerHeight + 400 && r.bottom > -400;
}
