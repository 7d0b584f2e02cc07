//! Moments, feeds, likes, comments, shares, follows and blocks: the social
//! use cases. Each checks who may do what, validates, spends the caller's
//! rate budget, calls the store, and publishes a domain event once the
//! store's transaction has committed.
//!
//! Events: likes, comments and replies, and follows publish events even when
//! the actor is the author (a self-like is a fact too); the notifications
//! service drops notifications to oneself. No event can arise between users
//! in a block, because every such interaction is refused first.

use std::sync::Arc;

use palaver_core::social::{self, Comment, Moment, Visibility};
use palaver_core::time::now;
use palaver_core::{Error, FieldErrors, Id, Result, UserId};
use palaver_store::{
    FeedKind, LikeOp, LikeOutcome, MomentAccess, NewComment, NewMoment, PageRequest, Store, StoreError, UserSummary,
};

use palaver_crypto::MediaUrls;

use crate::auth::Principal;
use crate::events::{DomainEvent, EventBus};
use crate::media_links;
use crate::pagination::Page;
use crate::ratelimit::{RateLimiter, RateSpec};

/// Per-user budgets for social actions.
#[derive(Debug, Clone, Copy)]
pub struct SocialRates {
    /// New moments and reposts.
    pub moments: RateSpec,
    /// Comments and replies.
    pub comments: RateSpec,
    /// Likes and unlikes, of moments and comments.
    pub likes: RateSpec,
    /// Follows, unfollows, blocks and unblocks.
    pub follows: RateSpec,
    /// Reports.
    pub reports: RateSpec,
}

impl Default for SocialRates {
    fn default() -> Self {
        let spec = |count, secs| RateSpec { count, per: std::time::Duration::from_secs(secs) };
        Self {
            moments: spec(10, 600),
            comments: spec(60, 600),
            likes: spec(300, 60),
            follows: spec(100, 3600),
            reports: spec(20, 3600),
        }
    }
}

/// The social use cases.
pub struct SocialService {
    store: Arc<dyn Store>,
    urls: MediaUrls,
    events: EventBus,
    limiter: Arc<dyn RateLimiter>,
    rates: SocialRates,
}

impl std::fmt::Debug for SocialService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocialService").field("rates", &self.rates).finish_non_exhaustive()
    }
}

/// What a moment edit changes.
#[derive(Debug, Clone, Default)]
pub struct MomentPatch {
    /// New text.
    pub content: Option<String>,
    /// New visibility.
    pub visibility: Option<Visibility>,
}

/// What a like request answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LikeState {
    /// The caller likes it now.
    pub liked: bool,
    /// The counter now.
    pub likes_count: i64,
}

impl From<LikeOutcome> for LikeState {
    fn from(o: LikeOutcome) -> Self {
        Self { liked: o.liked, likes_count: o.likes_count }
    }
}

fn moment_not_found(id: Id) -> Error {
    Error::not_found("moment", id)
}

fn comment_not_found(id: Id) -> Error {
    Error::not_found("comment", id)
}

fn user_not_found(id: Id) -> Error {
    Error::not_found("user", id)
}

impl SocialService {
    /// Builds the service.
    pub fn new(
        store: Arc<dyn Store>,
        events: EventBus,
        limiter: Arc<dyn RateLimiter>,
        rates: SocialRates,
        urls: MediaUrls,
    ) -> Self {
        Self { store, urls, events, limiter, rates }
    }

    async fn spend(&self, action: &str, who: &Principal, spec: RateSpec) -> Result<()> {
        self.limiter.check(&format!("{action}:user:{}", who.id()), spec).await
    }

    /// The moment if `who` may see it; 404 otherwise (whether it does not
    /// exist, was deleted or hidden, or is not for `who`'s eyes).
    async fn visible_moment(&self, who: &Principal, id: Id) -> Result<MomentAccess> {
        match self.store.moment_access(who.id(), id).await? {
            Some(access) if access.visible => Ok(access),
            _ => Err(moment_not_found(id)),
        }
    }

    /// A moment as `who` sees it.
    pub async fn moment(&self, who: &Principal, id: Id) -> Result<Moment> {
        let mut found = self.store.moments_for(who.id(), &[id]).await?;
        let mut moment = found.pop().ok_or_else(|| moment_not_found(id))?;
        media_links::sign_moment(&self.urls, who.id(), &mut moment);
        Ok(moment)
    }

    /// Posts a moment. Media must be the author's own uploads.
    pub async fn create_moment(
        &self,
        who: &Principal,
        content: &str,
        media_ids: Vec<Id>,
        visibility: Visibility,
    ) -> Result<Moment> {
        let mut errors = FieldErrors::new();
        let content = social::moment_content(content, "content", &mut errors);
        social::media_ids(&media_ids, &mut errors);
        errors.into_result()?;
        let owned = self.store.owned_media(who.id(), &media_ids).await?;
        let mut errors = FieldErrors::new();
        for (i, id) in media_ids.iter().enumerate() {
            if !owned.contains(id) {
                errors.add(format!("media_ids[{i}]"), "is not a media item you uploaded");
            }
        }
        errors.into_result()?;
        self.spend("moments", who, self.rates.moments).await?;
        let id = self
            .store
            .create_moment(&NewMoment { user_id: who.id(), content, media_ids, visibility, now: now() })
            .await
            .map_err(|e| match e {
                StoreError::Check(_) | StoreError::ForeignKey(_) => {
                    Error::invalid("media_ids", "lists a media item you did not upload")
                }
                other => other.into(),
            })?;
        self.moment(who, id).await
    }

    /// Edits one's own moment (text and/or visibility).
    pub async fn edit_moment(&self, who: &Principal, id: Id, patch: MomentPatch) -> Result<Moment> {
        let access = self.visible_moment(who, id).await?;
        if access.author_id != who.id() {
            return Err(Error::Forbidden("only the author can edit a moment".into()));
        }
        let mut errors = FieldErrors::new();
        let content = patch.content.as_deref().map(|c| social::moment_content(c, "content", &mut errors));
        errors.into_result()?;
        if content.is_some() || patch.visibility.is_some() {
            self.store.update_moment(id, content.as_deref(), patch.visibility, now()).await?;
        }
        self.moment(who, id).await
    }

    /// Deletes a moment (soft): its author, or a moderator.
    pub async fn delete_moment(&self, who: &Principal, id: Id) -> Result<()> {
        let access = self.visible_moment(who, id).await?;
        let moderator = who.user.role.is_moderator();
        if access.author_id != who.id() && !moderator {
            return Err(Error::Forbidden("only the author or a moderator can delete a moment".into()));
        }
        let at = now();
        if self.store.delete_moment(id, at).await? && access.author_id != who.id() {
            self.store.log_moderation(who.id(), "delete_moment", "moment", id, "", at).await?;
        }
        Ok(())
    }

    /// A page of a feed.
    pub async fn feed(&self, who: &Principal, kind: FeedKind, page: PageRequest) -> Result<Page<Moment>> {
        if let FeedKind::User(user) = kind {
            self.viewable_user(who, user).await?;
        }
        let mut items = self.store.feed(who.id(), kind, page).await?;
        for moment in &mut items {
            media_links::sign_moment(&self.urls, who.id(), moment);
        }
        Ok(Page::new(items, page, |m| m.id))
    }

    /// Likes or unlikes a moment `who` may see.
    pub async fn like_moment(&self, who: &Principal, id: Id, op: LikeOp) -> Result<LikeState> {
        let access = self.visible_moment(who, id).await?;
        self.spend("likes", who, self.rates.likes).await?;
        let outcome = self.store.like_moment(who.id(), id, op, now()).await?;
        if outcome.changed {
            let (moment_id, author_id, actor_id) = (id, access.author_id, who.id());
            self.events.publish(if outcome.liked {
                DomainEvent::MomentLiked { moment_id, author_id, actor_id }
            } else {
                DomainEvent::MomentUnliked { moment_id, author_id, actor_id }
            });
        }
        Ok(outcome.into())
    }

    /// Reposts a public moment into `who`'s feed, with optional words of
    /// their own. Reposting a repost reposts its original.
    pub async fn share_to_feed(
        &self,
        who: &Principal,
        id: Id,
        content: Option<&str>,
        visibility: Visibility,
    ) -> Result<Moment> {
        let mut access = self.visible_moment(who, id).await?;
        if let Some(original) = access.shared_moment_id {
            access = self.visible_moment(who, original).await.map_err(|_| {
                Error::Unprocessable(format!("moment {id} is a repost of a moment that is no longer available"))
            })?;
        }
        if access.visibility != Visibility::Public {
            return Err(Error::Unprocessable("only public moments can be reposted".into()));
        }
        let content = match content {
            Some(text) => {
                let text = text.trim();
                palaver_core::validate::text(text, 0, social::limits::MOMENT_MAX_CHARS)
                    .map_err(|msg| Error::invalid("content", msg))?;
                text.to_owned()
            }
            None => String::new(),
        };
        self.spend("moments", who, self.rates.moments).await?;
        let repost =
            self.store.share_to_feed(who.id(), access.id, &content, visibility, now()).await.map_err(|e| match e {
                StoreError::NotFound => moment_not_found(id),
                other => other.into(),
            })?;
        self.moment(who, repost).await
    }

    /// Comments on a moment `who` may see, or replies to a comment on it.
    pub async fn comment(&self, who: &Principal, moment: Id, content: &str, parent: Option<Id>) -> Result<Comment> {
        let content = social::comment_content(content)?;
        let access = self.visible_moment(who, moment).await?;
        // Replies hang under the top-level comment; the event names the
        // comment actually replied to, whose author is notified.
        let mut replied_to = None;
        let mut top_level = None;
        if let Some(parent_id) = parent {
            let visible = self.store.comments_by_ids(who.id(), &[parent_id]).await?;
            let parent = self.store.comment_access(parent_id).await?;
            let parent = match parent {
                Some(p) if p.active && !visible.is_empty() => p,
                _ => return Err(comment_not_found(parent_id)),
            };
            if parent.moment_id != moment {
                return Err(Error::Unprocessable(format!(
                    "comment {parent_id} belongs to another moment; reply on that moment"
                )));
            }
            replied_to = Some((parent.id, parent.author_id));
            top_level = Some(parent.parent_comment_id.unwrap_or(parent.id));
        }
        self.spend("comments", who, self.rates.comments).await?;
        let id = self
            .store
            .create_comment(&NewComment {
                moment_id: moment,
                user_id: who.id(),
                parent_comment_id: top_level,
                content,
                now: now(),
            })
            .await
            .map_err(|e| match e {
                StoreError::NotFound => match parent {
                    Some(p) => comment_not_found(p),
                    None => moment_not_found(moment),
                },
                other => other.into(),
            })?;
        self.events.publish(DomainEvent::Commented {
            comment_id: id,
            moment_id: moment,
            moment_author_id: access.author_id,
            parent: replied_to,
            actor_id: who.id(),
        });
        let mut created = self.store.comments_by_ids(who.id(), &[id]).await?;
        created.pop().ok_or_else(|| comment_not_found(id))
    }

    /// Top-level comments of a moment, each with its first replies.
    pub async fn comments(&self, who: &Principal, moment: Id, page: PageRequest) -> Result<Page<Comment>> {
        self.visible_moment(who, moment).await?;
        let items = self.store.comments(who.id(), moment, page).await?;
        Ok(Page::new(items, page, |c| c.id))
    }

    /// A comment `who` may see, with its moment's access.
    async fn visible_comment(&self, who: &Principal, id: Id) -> Result<(palaver_store::CommentAccess, MomentAccess)> {
        let access = self.store.comment_access(id).await?.filter(|c| c.active).ok_or_else(|| comment_not_found(id))?;
        let moment = self.visible_moment(who, access.moment_id).await.map_err(|_| comment_not_found(id))?;
        if self.store.comments_by_ids(who.id(), &[id]).await?.is_empty() {
            return Err(comment_not_found(id));
        }
        Ok((access, moment))
    }

    /// Replies under a top-level comment, oldest first.
    pub async fn replies(&self, who: &Principal, comment: Id, page: PageRequest) -> Result<Page<Comment>> {
        self.visible_comment(who, comment).await?;
        let items = self.store.replies(who.id(), comment, page).await?;
        Ok(Page::new(items, page, |c| c.id))
    }

    /// Deletes a comment (and its replies): its author, the moment's
    /// author, or a moderator.
    pub async fn delete_comment(&self, who: &Principal, id: Id) -> Result<()> {
        let (comment, moment) = self.visible_comment(who, id).await?;
        let moderator = who.user.role.is_moderator();
        if comment.author_id != who.id() && moment.author_id != who.id() && !moderator {
            return Err(Error::Forbidden(
                "only the comment's author, the moment's author or a moderator can delete a comment".into(),
            ));
        }
        let at = now();
        let deleted = self.store.delete_comment(id, at).await?;
        if deleted > 0 && comment.author_id != who.id() && moment.author_id != who.id() {
            self.store.log_moderation(who.id(), "delete_comment", "comment", id, "", at).await?;
        }
        Ok(())
    }

    /// Likes or unlikes a comment `who` may see.
    pub async fn like_comment(&self, who: &Principal, id: Id, op: LikeOp) -> Result<LikeState> {
        let (comment, _) = self.visible_comment(who, id).await?;
        self.spend("likes", who, self.rates.likes).await?;
        let outcome = self.store.like_comment(who.id(), id, op, now()).await?;
        if outcome.changed {
            let (comment_id, moment_id, author_id, actor_id) = (id, comment.moment_id, comment.author_id, who.id());
            self.events.publish(if outcome.liked {
                DomainEvent::CommentLiked { comment_id, moment_id, author_id, actor_id }
            } else {
                DomainEvent::CommentUnliked { comment_id, moment_id, author_id, actor_id }
            });
        }
        Ok(outcome.into())
    }

    /// A user `who` may see (exists, not suspended, has not blocked `who`).
    async fn viewable_user(&self, who: &Principal, id: UserId) -> Result<palaver_store::Profile> {
        let profile = self.store.profile(who.id(), id).await?.ok_or_else(|| user_not_found(id))?;
        if !who.user.role.is_moderator() && (profile.blocked_you || profile.user.is_suspended) {
            return Err(user_not_found(id));
        }
        Ok(profile)
    }

    /// Follows or unfollows a user. Returns whether `who` follows them now.
    pub async fn follow(&self, who: &Principal, id: UserId, op: LikeOp) -> Result<bool> {
        if id == who.id() {
            return Err(Error::BadRequest("you cannot follow yourself".into()));
        }
        let profile = self.viewable_user(who, id).await?;
        if profile.blocked_you {
            return Err(user_not_found(id));
        }
        if profile.is_blocked && op != LikeOp::Clear {
            return Err(Error::Unprocessable("you blocked this user; unblock them to follow them".into()));
        }
        self.spend("follows", who, self.rates.follows).await?;
        let (following, changed) = self.store.set_follow(who.id(), id, op, now()).await?;
        if changed && following {
            self.events.publish(DomainEvent::Followed { follower_id: who.id(), followee_id: id });
        }
        Ok(following)
    }

    /// Blocks or unblocks a user. Returns whether `who` blocks them now.
    pub async fn block(&self, who: &Principal, id: UserId, op: LikeOp) -> Result<bool> {
        if id == who.id() {
            return Err(Error::BadRequest("you cannot block yourself".into()));
        }
        if self.store.user_by_id(id).await?.is_none() {
            return Err(user_not_found(id));
        }
        self.spend("follows", who, self.rates.follows).await?;
        let (blocked, _) = self.store.set_block(who.id(), id, op, now()).await?;
        Ok(blocked)
    }

    /// Who follows a user.
    pub async fn followers(&self, who: &Principal, id: UserId, page: PageRequest) -> Result<Page<UserSummary>> {
        self.viewable_user(who, id).await?;
        let items = self.store.followers(who.id(), id, page).await?;
        Ok(Page::new(items, page, |u| u.id))
    }

    /// Whom a user follows.
    pub async fn following(&self, who: &Principal, id: UserId, page: PageRequest) -> Result<Page<UserSummary>> {
        self.viewable_user(who, id).await?;
        let items = self.store.following(who.id(), id, page).await?;
        Ok(Page::new(items, page, |u| u.id))
    }

    /// Whom the caller blocks.
    pub async fn blocks(&self, who: &Principal, page: PageRequest) -> Result<Page<UserSummary>> {
        let items = self.store.blocks(who.id(), page).await?;
        Ok(Page::new(items, page, |u| u.id))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use palaver_core::user::{Role, User};
    use palaver_store::NewUserRecord;
    use tokio::sync::broadcast::error::TryRecvError;

    use super::*;
    use crate::ratelimit::MemoryRateLimiter;

    async fn principal(store: &Arc<dyn Store>, email: &str) -> Principal {
        let user: User = store
            .create_user(&NewUserRecord {
                email: email.into(),
                password_hash: "x".into(),
                display_name: email.into(),
                native_languages: vec![],
                learning_languages: vec![],
                role: Role::User,
                now: now(),
            })
            .await
            .unwrap();
        Principal { user, session_id: "s".into() }
    }

    /// Likes, comments, replies and follows publish their events after the
    /// write; refused and no-op requests publish nothing.
    #[tokio::test]
    async fn domain_events_follow_the_writes() {
        let db = palaver_store::testing::sqlite().await.unwrap();
        let store = db.store.clone();
        let events = EventBus::new(64);
        let social = SocialService::new(
            store.clone(),
            events.clone(),
            Arc::new(MemoryRateLimiter::new()),
            SocialRates::default(),
            MediaUrls::new(b"test-secret", std::time::Duration::from_secs(3600)),
        );
        let ana = principal(&store, "ana@example.org").await;
        let bob = principal(&store, "bob@example.org").await;
        let cat = principal(&store, "cat@example.org").await;
        let mut rx = events.subscribe();
        let moment = social.create_moment(&ana, "hola", vec![], Visibility::Public).await.unwrap();

        social.like_moment(&bob, moment.id, LikeOp::Set).await.unwrap();
        social.like_moment(&bob, moment.id, LikeOp::Set).await.unwrap();
        assert_eq!(
            rx.try_recv().unwrap(),
            DomainEvent::MomentLiked { moment_id: moment.id, author_id: ana.id(), actor_id: bob.id() }
        );
        social.like_moment(&bob, moment.id, LikeOp::Toggle).await.unwrap();
        assert_eq!(
            rx.try_recv().unwrap(),
            DomainEvent::MomentUnliked { moment_id: moment.id, author_id: ana.id(), actor_id: bob.id() }
        );

        let top = social.comment(&bob, moment.id, "nice", None).await.unwrap();
        assert_eq!(
            rx.try_recv().unwrap(),
            DomainEvent::Commented {
                comment_id: top.id,
                moment_id: moment.id,
                moment_author_id: ana.id(),
                parent: None,
                actor_id: bob.id()
            }
        );
        let reply = social.comment(&cat, moment.id, "agreed", Some(top.id)).await.unwrap();
        assert_eq!(
            rx.try_recv().unwrap(),
            DomainEvent::Commented {
                comment_id: reply.id,
                moment_id: moment.id,
                moment_author_id: ana.id(),
                parent: Some((top.id, bob.id())),
                actor_id: cat.id()
            }
        );
        social.like_comment(&ana, top.id, LikeOp::Toggle).await.unwrap();
        assert_eq!(
            rx.try_recv().unwrap(),
            DomainEvent::CommentLiked {
                comment_id: top.id,
                moment_id: moment.id,
                author_id: bob.id(),
                actor_id: ana.id()
            }
        );

        assert!(social.follow(&cat, ana.id(), LikeOp::Set).await.unwrap());
        assert_eq!(rx.try_recv().unwrap(), DomainEvent::Followed { follower_id: cat.id(), followee_id: ana.id() });
        social.follow(&cat, ana.id(), LikeOp::Set).await.unwrap();
        social.follow(&cat, ana.id(), LikeOp::Clear).await.unwrap();

        // After a block, the blocked user's attempts are refused: no events.
        social.block(&ana, bob.id(), LikeOp::Set).await.unwrap();
        assert!(social.like_moment(&bob, moment.id, LikeOp::Set).await.is_err());
        assert!(social.comment(&bob, moment.id, "hey", None).await.is_err());
        assert!(social.follow(&bob, ana.id(), LikeOp::Set).await.is_err());
        // A self-like is a fact too; notifications drop self-notifications.
        social.like_moment(&ana, moment.id, LikeOp::Set).await.unwrap();
        assert_eq!(
            rx.try_recv().unwrap(),
            DomainEvent::MomentLiked { moment_id: moment.id, author_id: ana.id(), actor_id: ana.id() }
        );
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        db.cleanup().await;
    }
}
