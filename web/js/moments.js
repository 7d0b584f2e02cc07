// Moments: the composer, a moment's card (like, comments, share, delete,
// report) and its comment thread with nested replies.

import * as api from './api.js';
import * as session from './session.js';
import * as media from './media.js';
import { h, append, avatar, timeAgo, field, uid } from './dom.js';
import { icon } from './icons.js';
import { busy, toast, errorText, confirmDialog, reportDialog, infinite } from './ui.js';

const VISIBILITY = {
  public: ['Public', 'globe'],
  followers: ['Followers', 'users'],
  private: ['Only me', 'lock'],
};

/** The composer; calls onPosted(moment) after a successful post. */
export function composer(onPosted) {
  const text = h('textarea', { name: 'content', rows: 3, maxlength: 5000, required: true, placeholder: 'What did you practise today?' });
  const visibility = h('select', { name: 'visibility' },
    Object.entries(VISIBILITY).map(([v, [label]]) => h('option', { value: v }, label)));
  const files = h('input', { type: 'file', accept: 'image/*,video/*,audio/*', multiple: true, class: 'visually-hidden' });
  const attach = h('label', { class: 'btn btn-quiet', for: files.id || (files.id = uid('file')) }, icon('clip'), 'Add media');
  const previews = h('div', { class: 'previews' });
  let chosen = [];
  files.addEventListener('change', () => {
    chosen = [...files.files].slice(0, 9);
    previews.replaceChildren(...chosen.map((f) => (f.type.startsWith('image/')
      ? h('img', { src: URL.createObjectURL(f), alt: `Attached: ${f.name}` })
      : h('span', { class: 'chip' }, f.name))));
  });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Post');
  const form = h('form', {
    class: 'card composer',
    'aria-label': 'New moment',
    onsubmit: async (e) => {
      e.preventDefault();
      const content = text.value.trim();
      if (!content) {
        text.focus();
        return;
      }
      try {
        const moment = await busy(submit, async () => {
          const media_ids = [];
          for (const file of chosen) {
            const item = await api.upload(file);
            media.remember(item);
            media_ids.push(item.id);
          }
          return api.post('/moments', { content, media_ids, visibility: visibility.value });
        });
        text.value = '';
        files.value = '';
        chosen = [];
        previews.replaceChildren();
        onPosted(moment);
        toast('Posted.');
      } catch (err) {
        toast(errorText(err), { kind: 'error' });
      }
    },
  },
  field('Share a moment', text).field,
  previews,
  h('div', { class: 'row between wrap' },
    h('div', { class: 'row gap' }, files, attach, field('Who can see it', visibility).field),
    submit));
  return form;
}

/** A moment's card. `onRemoved` is called after it is deleted. */
export function momentCard(moment, { onRemoved, expanded = false } = {}) {
  const me = session.me();
  const mine = me && moment.user.id === me.id;
  const titleId = uid('m');
  const card = h('article', { class: 'card moment', 'aria-labelledby': titleId, dataset: { momentId: String(moment.id) } });
  const [visLabel, visIcon] = VISIBILITY[moment.visibility] || [moment.visibility, ''];

  const likeCount = h('span', { class: 'count' }, String(moment.likes_count));
  const likeBtn = h('button', {
    type: 'button', class: 'btn btn-quiet like', 'aria-pressed': String(moment.is_liked),
    'aria-label': 'Like',
  }, icon('heart'), likeCount);
  likeBtn.addEventListener('click', () => busy(likeBtn, async () => {
    try {
      const r = await api.post(`/moments/${moment.id}/like`);
      moment.is_liked = r.liked;
      moment.likes_count = r.likes_count;
      likeBtn.setAttribute('aria-pressed', String(r.liked));
      likeCount.textContent = String(r.likes_count);
    } catch (err) {
      toast(errorText(err), { kind: 'error' });
    }
  }));

  const commentCount = h('span', { class: 'count' }, String(moment.comments_count));
  const commentsId = uid('comments');
  const commentsBtn = h('button', {
    type: 'button', class: 'btn btn-quiet', 'aria-expanded': 'false', 'aria-controls': commentsId,
    'aria-label': 'Comments',
  }, icon('comment'), commentCount);
  let thread = null;
  const commentsBox = h('div', { id: commentsId, class: 'comments', hidden: true });
  const toggleComments = () => {
    const open = commentsBox.hidden;
    commentsBox.hidden = !open;
    commentsBtn.setAttribute('aria-expanded', String(open));
    if (open && !thread) {
      thread = commentThread(moment, {
        onCount: (delta) => {
          moment.comments_count += delta;
          commentCount.textContent = String(moment.comments_count);
        },
      });
      commentsBox.append(thread);
    }
    if (open) commentsBox.querySelector('textarea')?.focus();
  };
  commentsBtn.addEventListener('click', toggleComments);

  const shareBtn = moment.visibility === 'public' && !moment.shared_moment_id
    ? h('button', { type: 'button', class: 'btn btn-quiet', onclick: () => repost(moment, shareBtn) },
      icon('share'), `Share${moment.shares_count ? ` · ${moment.shares_count}` : ''}`)
    : null;

  const menu = h('details', { class: 'menu menu-right' },
    h('summary', { 'aria-label': 'More actions' }, icon('more')),
    h('div', { class: 'menu-items' },
      mine
        ? h('button', { type: 'button', onclick: () => remove(moment, card, onRemoved) }, 'Delete')
        : h('button', { type: 'button', onclick: () => report({ reported_moment: moment.id }, 'moment') }, 'Report')));
  menu.addEventListener('click', (e) => {
    if (e.target.closest('button')) menu.open = false;
  });

  append(card, [
    h('header', { class: 'moment-head' },
      h('a', { href: `/u/${moment.user.id}`, tabindex: '-1', 'aria-hidden': 'true' }, avatar(moment.user)),
      h('div', { class: 'who' },
        h('a', { id: titleId, class: 'name', href: `/u/${moment.user.id}` }, moment.user.display_name),
        h('div', { class: 'meta' },
          h('a', { href: `/moments/${moment.id}`, class: 'quiet' }, timeAgo(moment.created_at)),
          ' · ', h('span', { class: 'vis', title: `Visible to: ${visLabel}` }, icon(visIcon, { size: 14, label: `Visible to: ${visLabel}` })),
          moment.is_edited ? ' · edited' : null)),
      menu),
    moment.content ? h('p', { class: 'content' }, moment.content) : null,
    moment.media?.length ? h('div', { class: `media-grid n${Math.min(moment.media.length, 4)}` },
      // One picture fills the card (up to 640 px wide); more share it.
      moment.media.map((m) => media.mediaElement(m, {
        alt: `Media by ${moment.user.display_name}`,
        sizes: moment.media.length === 1 ? '(max-width: 700px) 100vw, 640px' : '(max-width: 700px) 50vw, 320px',
      }))) : null,
    moment.shared_moment_id ? sharedBox(moment) : null,
    h('footer', { class: 'moment-actions' }, likeBtn, commentsBtn, shareBtn),
    commentsBox,
  ]);
  if (expanded) toggleComments();
  return card;
}

function sharedBox(moment) {
  const original = moment.shared_moment;
  if (!original) return h('div', { class: 'shared muted' }, 'The original moment is no longer available.');
  return h('blockquote', { class: 'shared' },
    h('a', { href: `/u/${original.user.id}`, class: 'name' }, original.user.display_name),
    h('p', { class: 'content' }, original.content),
    h('a', { href: `/moments/${original.id}`, class: 'quiet small' }, 'View original'));
}

async function repost(moment, button) {
  try {
    await busy(button, () => api.post(`/moments/${moment.id}/share`, { to: 'feed' }));
    toast('Shared to your feed.');
  } catch (err) {
    toast(errorText(err), { kind: 'error' });
  }
}

async function remove(moment, card, onRemoved) {
  if (!(await confirmDialog('Delete this moment?', 'It disappears for everyone. This cannot be undone.', 'Delete'))) return;
  try {
    await api.del(`/moments/${moment.id}`);
    card.remove();
    onRemoved?.(moment);
    toast('Moment deleted.');
  } catch (err) {
    toast(errorText(err), { kind: 'error' });
  }
}

/** Opens the report form and files the report. */
export async function report(target, what) {
  const answer = await reportDialog(what);
  if (!answer) return;
  try {
    await api.post('/reports', { ...answer, ...target, description: answer.description || undefined });
    toast('Thanks, a moderator will look at it.');
  } catch (err) {
    toast(errorText(err), { kind: 'error' });
  }
}

/** The comments of a moment: top-level oldest first, replies nested. */
function commentThread(moment, { onCount }) {
  const me = session.me();
  const list = h('ul', { class: 'comment-list', 'aria-label': 'Comments' });
  const more = h('button', { type: 'button', class: 'btn btn-quiet', hidden: true }, 'More comments');
  let cursor = null;

  const load = async () => {
    const page = await api.get(`/moments/${moment.id}/comments`, { cursor, limit: 20 });
    for (const c of page.items) list.append(commentItem(c));
    cursor = page.next_cursor;
    more.hidden = !cursor;
  };
  more.addEventListener('click', () => busy(more, load).catch((err) => toast(errorText(err), { kind: 'error' })));

  function commentItem(c) {
    const li = h('li', { class: 'comment', dataset: { commentId: String(c.id) } });
    const likeCount = h('span', { class: 'count' }, String(c.likes_count));
    const like = h('button', { type: 'button', class: 'btn btn-quiet btn-small', 'aria-pressed': String(c.is_liked), 'aria-label': 'Like comment' },
      icon('heart', { size: 16 }), likeCount);
    like.addEventListener('click', () => busy(like, async () => {
      try {
        const r = await api.post(`/comments/${c.id}/like`);
        like.setAttribute('aria-pressed', String(r.liked));
        likeCount.textContent = String(r.likes_count);
      } catch (err) {
        toast(errorText(err), { kind: 'error' });
      }
    }));
    const top = c.parent_comment ? c.parent_comment : c.id;
    const replyBtn = h('button', { type: 'button', class: 'btn btn-quiet btn-small' }, 'Reply');
    const canDelete = me && (c.user.id === me.id || moment.user.id === me.id);
    const actions = h('div', { class: 'comment-actions' }, like, replyBtn,
      canDelete ? h('button', {
        type: 'button', class: 'btn btn-quiet btn-small',
        onclick: async () => {
          if (!(await confirmDialog('Delete this comment?', c.parent_comment ? 'The reply is removed.' : 'The comment and its replies are removed.', 'Delete'))) return;
          try {
            await api.del(`/comments/${c.id}`);
            const removed = 1 + (li.querySelectorAll('.replies > .comment').length);
            li.remove();
            onCount(-removed);
          } catch (err) {
            toast(errorText(err), { kind: 'error' });
          }
        },
      }, 'Delete') : null,
      me && c.user.id !== me.id
        ? h('button', { type: 'button', class: 'btn btn-quiet btn-small', onclick: () => report({ reported_comment: c.id }, 'comment') }, 'Report')
        : null);
    const replies = h('ul', { class: 'replies', 'aria-label': `Replies to ${c.user.display_name}` });
    const replyArea = h('div', { class: 'reply-area' });
    replyBtn.addEventListener('click', () => {
      if (replyArea.firstChild) {
        replyArea.querySelector('textarea').focus();
        return;
      }
      replyArea.append(commentForm(`Reply to ${c.user.display_name}`, 'Reply', async (content) => {
        const reply = await api.post(`/moments/${moment.id}/comments`, { content, parent_comment: c.id });
        const host = li.closest(`[data-comment-id="${top}"]`)?.querySelector(':scope > .replies') || replies;
        host.append(commentItem(reply));
        onCount(1);
        replyArea.replaceChildren();
      }, () => replyArea.replaceChildren()));
      replyArea.querySelector('textarea').focus();
    });
    append(li, [
      h('div', { class: 'comment-body' },
        h('a', { href: `/u/${c.user.id}`, tabindex: '-1', 'aria-hidden': 'true' }, avatar(c.user, 'sm')),
        h('div', {},
          h('div', { class: 'meta' }, h('a', { class: 'name', href: `/u/${c.user.id}` }, c.user.display_name), ' · ', timeAgo(c.created_at)),
          h('p', { class: 'content' }, c.content),
          actions,
          replyArea)),
      c.parent_comment ? null : replies,
    ]);
    for (const r of c.replies || []) replies.append(commentItem(r));
    if (c.has_more_replies) {
      const moreReplies = h('button', { type: 'button', class: 'btn btn-quiet btn-small' }, 'Show more replies');
      let rcursor = null;
      let first = true;
      moreReplies.addEventListener('click', () => busy(moreReplies, async () => {
        const page = await api.get(`/comments/${c.id}/replies`, { cursor: rcursor, limit: 50 });
        if (first) replies.replaceChildren();
        first = false;
        for (const r of page.items) replies.append(commentItem(r));
        rcursor = page.next_cursor;
        if (!rcursor) moreReplies.remove();
      }).catch((err) => toast(errorText(err), { kind: 'error' })));
      li.append(moreReplies);
    }
    return li;
  }

  const form = commentForm('Write a comment', 'Comment', async (content) => {
    const c = await api.post(`/moments/${moment.id}/comments`, { content });
    list.append(commentItem(c));
    onCount(1);
  });
  const root = h('div', { class: 'thread' }, list, more, form);
  load().catch((err) => root.prepend(h('p', { class: 'form-error' }, errorText(err))));
  return root;
}

function commentForm(label, action, send, cancel) {
  const text = h('textarea', { rows: 2, maxlength: 2000, required: true });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-small' }, action);
  return h('form', {
    class: 'comment-form',
    onsubmit: async (e) => {
      e.preventDefault();
      const content = text.value.trim();
      if (!content) return;
      try {
        await busy(submit, () => send(content));
        text.value = '';
      } catch (err) {
        toast(errorText(err), { kind: 'error' });
      }
    },
  }, field(label, text).field, h('div', { class: 'row end gap' },
    cancel ? h('button', { type: 'button', class: 'btn btn-quiet btn-small', onclick: cancel }, 'Cancel') : null,
    submit));
}

/**
 * A paged list of moments from `GET /moments` with `query`, loading more
 * as it scrolls. Returns {el, prepend(moment), destroy()}.
 */
export function momentList(query, { empty = 'Nothing here yet.' } = {}) {
  const list = h('div', { class: 'moment-list', role: 'feed', 'aria-busy': 'false' });
  const sentinel = h('div', { class: 'sentinel' });
  const emptyEl = h('p', { class: 'empty muted', hidden: true }, empty);
  let cursor = null;
  let count = 0;
  const onRemoved = () => {
    count -= 1;
    emptyEl.hidden = count > 0;
  };
  const load = async () => {
    list.setAttribute('aria-busy', 'true');
    try {
      const page = await api.get('/moments', { ...query, cursor, limit: 10 });
      for (const m of page.items) list.append(momentCard(m, { onRemoved }));
      count += page.items.length;
      emptyEl.hidden = count > 0;
      cursor = page.next_cursor;
      return Boolean(cursor);
    } finally {
      list.setAttribute('aria-busy', 'false');
    }
  };
  let scroller = null;
  const el = h('div', {}, list, emptyEl, sentinel);
  // Start once attached, so the observer sees real geometry.
  queueMicrotask(() => {
    scroller = infinite(sentinel, load);
  });
  return {
    el,
    prepend(moment) {
      list.prepend(momentCard(moment, { onRemoved }));
      count += 1;
      emptyEl.hidden = true;
    },
    destroy() {
      scroller?.stop();
    },
  };
}
