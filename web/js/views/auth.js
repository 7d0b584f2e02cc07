// Sign in and create an account.

import * as api from '../api.js';
import { app } from '../app.js';
import { h, field } from '../dom.js';
import { busy, errorText } from '../ui.js';

const LEVELS = [['beginner', 'Beginner'], ['intermediate', 'Intermediate'], ['advanced', 'Advanced']];

export function render({ route, url }) {
  const registering = route === '/register';
  const next = safeNext(url.searchParams.get('next'));
  const error = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const email = h('input', { type: 'email', name: 'email', autocomplete: 'email', required: true });
  const password = h('input', {
    type: 'password', name: 'password', required: true, minlength: 8,
    autocomplete: registering ? 'new-password' : 'current-password',
  });
  const fields = [field('Email', email).field, field('Password', password, registering ? 'At least 8 characters.' : null).field];
  let extra = null;
  if (registering) {
    const name = h('input', { type: 'text', name: 'display_name', autocomplete: 'nickname', required: true, maxlength: 50 });
    const native = h('input', { type: 'text', name: 'native', placeholder: 'es', autocapitalize: 'none', maxlength: 35 });
    const learning = h('input', { type: 'text', name: 'learning', placeholder: 'en', autocapitalize: 'none', maxlength: 35 });
    const level = h('select', { name: 'level' }, LEVELS.map(([v, l]) => h('option', { value: v }, l)));
    fields.unshift(field('Display name', name).field);
    fields.push(
      field('I speak', native, 'A language code, such as es or pt-BR.').field,
      h('div', { class: 'row gap' }, field('I am learning', learning).field, field('Level', level).field),
    );
    extra = () => ({
      display_name: name.value.trim(),
      native_languages: native.value.trim() ? [native.value.trim()] : [],
      learning_languages: learning.value.trim() ? [{ code: learning.value.trim(), level: level.value }] : [],
    });
  }
  const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block' }, registering ? 'Create account' : 'Sign in');
  const form = h('form', {
    class: 'stack',
    novalidate: false,
    onsubmit: async (e) => {
      e.preventDefault();
      error.hidden = true;
      const body = { email: email.value.trim(), password: password.value, ...(extra ? extra() : {}) };
      try {
        await busy(submit, () => api.authenticate(registering ? 'register' : 'login', body));
        app.navigate(next, { replace: true });
      } catch (err) {
        error.textContent = errorText(err);
        error.hidden = false;
        (registering && err.fields?.email ? email : password).focus();
      }
    },
  }, fields, error, submit);

  const el = h('section', { class: 'page auth-page' },
    h('div', { class: 'card auth-card' },
      h('h1', {}, registering ? 'Join Palaver' : 'Welcome back'),
      h('p', { class: 'muted' }, registering
        ? 'Practise languages with native speakers: voice rooms, 1-on-1 calls, chat and Moments.'
        : 'Sign in to continue practising.'),
      form,
      h('p', { class: 'switch' }, registering
        ? ['Already have an account? ', h('a', { href: '/login' }, 'Sign in')]
        : ['New here? ', h('a', { href: '/register' }, 'Create an account')])));
  return { el, title: registering ? 'Create account' : 'Sign in' };
}

/** Only client paths of this site, never another origin. */
function safeNext(next) {
  return next && next.startsWith('/') && !next.startsWith('//') ? next : '/';
}
