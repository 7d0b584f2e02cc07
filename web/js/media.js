// Showing uploaded media. Moments and messages carry media references
// ({id, kind, content_type, width, height}); the media API turns an id
// into a signed, expiring URL. URLs are cached for a few minutes.

import * as api from './api.js';
import { h } from './dom.js';
import { icon } from './icons.js';

const cache = new Map(); // id -> {at, promise}
const FRESH_MS = 4 * 60 * 1000;

/** The media item with its URLs ({url, thumbnail_url, ...}). */
export function resolve(id) {
  const hit = cache.get(id);
  if (hit && Date.now() - hit.at < FRESH_MS) return hit.promise;
  const promise = api.get(`/media/${id}`);
  cache.set(id, { at: Date.now(), promise });
  promise.catch(() => cache.delete(id));
  return promise;
}

/** Remembers an upload's answer, which already has the URLs. */
export function remember(item) {
  cache.set(item.id, { at: Date.now(), promise: Promise.resolve(item) });
}

/** The thumbnail's width: the server makes it at most 320 px on the longer side. */
function thumbnailWidth(width, height) {
  return Math.max(1, Math.round(width * Math.min(1, 320 / Math.max(width, height))));
}

/**
 * An element showing one media item; fills in once its URL is known.
 * With `sizes` (the CSS width it is shown at, as in the `sizes`
 * attribute), images offer the browser the thumbnail and the full picture
 * and it loads the one that is sharp enough; without, the thumbnail.
 */
export function mediaElement(ref, { alt = '', sizes = null } = {}) {
  const kind = ref.kind || kindOf(ref.content_type);
  const box = h('div', { class: `media media-${kind}` });
  if (ref.width && ref.height) box.style.aspectRatio = `${ref.width} / ${ref.height}`;
  const fill = (item) => {
    const url = item.url;
    let el;
    if (kind === 'image') {
      const img = h('img', { src: item.thumbnail_url || url, alt, loading: 'lazy' });
      if (sizes && item.thumbnail_url && item.width && item.height) {
        img.srcset = `${item.thumbnail_url} ${thumbnailWidth(item.width, item.height)}w, ${url} ${item.width}w`;
        img.sizes = sizes;
      }
      el = h('a', { href: url, target: '_blank', rel: 'noopener' }, img);
    } else if (kind === 'video') el = h('video', { src: url, controls: true, preload: 'metadata' });
    else if (kind === 'audio') el = h('audio', { src: url, controls: true, preload: 'none' });
    else el = h('a', { href: url, target: '_blank', rel: 'noopener', class: 'file-link' }, icon('clip'), ` ${item.filename || 'Download file'}`);
    box.replaceChildren(el);
  };
  if (ref.url) fill(ref);
  else {
    box.append(h('span', { class: 'media-placeholder' }, kind === 'image' ? 'Loading image…' : 'Loading…'));
    resolve(ref.id).then(fill, () => box.replaceChildren(h('span', { class: 'media-placeholder' }, 'Media unavailable')));
  }
  return box;
}

export function kindOf(contentType = '') {
  if (contentType.startsWith('image/')) return 'image';
  if (contentType.startsWith('video/')) return 'video';
  if (contentType.startsWith('audio/')) return 'audio';
  return 'file';
}
