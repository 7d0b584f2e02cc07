//! Signed media URLs in what services return: every media item a viewer
//! gets (on a moment, in a message) carries URLs signed for that viewer, so
//! the bytes are served only to them and only while the links last.

use palaver_core::UserId;
use palaver_core::social::{MediaRef, Moment};
use palaver_crypto::{MediaUrls, Variant};

/// Fills `url` and `thumbnail_url` of media items for `viewer`.
pub fn sign_refs(urls: &MediaUrls, viewer: UserId, refs: &mut [MediaRef]) {
    let now = chrono::Utc::now().timestamp();
    for r in refs {
        r.url = urls.url(r.id, Variant::File, viewer, now);
        r.thumbnail_url = r.has_thumbnail.then(|| urls.url(r.id, Variant::Thumbnail, viewer, now));
    }
}

/// Signs the media of a moment and of the original it reposts.
pub fn sign_moment(urls: &MediaUrls, viewer: UserId, moment: &mut Moment) {
    sign_refs(urls, viewer, &mut moment.media);
    if let Some(original) = moment.shared_moment.as_deref_mut() {
        sign_refs(urls, viewer, &mut original.media);
    }
}
