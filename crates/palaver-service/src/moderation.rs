//! Reports and the moderation queue. Anyone may report a user, or a moment,
//! comment or message they can see; moderators and admins work the queue,
//! and every moderator action lands in the audit log (`moderation_actions`).
//! Content that enough distinct users report is hidden at once, pending
//! review (the threshold is configurable).

use std::sync::Arc;

use palaver_core::social::{self, ModerationAction, Report, ReportStatus, ReportTarget, ReportType};
use palaver_core::time::now;
use palaver_core::user::Role;
use palaver_core::{Error, Result};
use palaver_store::{ModerationLogEntry, NewReport, PageRequest, ReportReview, Store, StoreError};

use crate::auth::Principal;
use crate::pagination::Page;
use crate::ratelimit::{RateLimiter, RateSpec};

/// Reports and moderation.
pub struct ModerationService {
    store: Arc<dyn Store>,
    limiter: Arc<dyn RateLimiter>,
    report_rate: RateSpec,
    auto_hide_threshold: u32,
}

impl std::fmt::Debug for ModerationService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModerationService").field("auto_hide_threshold", &self.auto_hide_threshold).finish()
    }
}

/// A moderator's decision, as requested.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    /// New status (default: `resolved` with an action, else unchanged).
    pub status: Option<ReportStatus>,
    /// New notes.
    pub admin_notes: Option<String>,
    /// What to do to the target (default: nothing).
    pub action: Option<ModerationAction>,
}

fn require_moderator(who: &Principal) -> Result<()> {
    if who.user.role.is_moderator() {
        Ok(())
    } else {
        Err(Error::Forbidden("only moderators and admins can use the moderation queue".into()))
    }
}

impl ModerationService {
    /// Builds the service.
    pub fn new(
        store: Arc<dyn Store>,
        limiter: Arc<dyn RateLimiter>,
        report_rate: RateSpec,
        auto_hide_threshold: u32,
    ) -> Self {
        Self { store, limiter, report_rate, auto_hide_threshold: auto_hide_threshold.max(1) }
    }

    /// Files a report. The target must exist and be visible to the
    /// reporter; one pending report per reporter and target (409 after).
    pub async fn report(
        &self,
        who: &Principal,
        target: ReportTarget,
        report_type: ReportType,
        description: &str,
    ) -> Result<Report> {
        let description = description.trim();
        palaver_core::validate::text(description, 0, social::limits::REPORT_DESCRIPTION_MAX_CHARS)
            .map_err(|msg| Error::invalid("description", msg))?;
        let me = who.id();
        let own = || Error::Unprocessable(format!("you cannot report your own {}", target.kind()));
        let missing = || Error::not_found(target.kind(), target.id());
        match target {
            ReportTarget::User(id) => {
                if id == me {
                    return Err(Error::Unprocessable("you cannot report yourself".into()));
                }
                self.store.user_by_id(id).await?.ok_or_else(missing)?;
            }
            ReportTarget::Moment(id) => {
                let access = self.store.moment_access(me, id).await?.filter(|a| a.visible).ok_or_else(missing)?;
                if access.author_id == me {
                    return Err(own());
                }
            }
            ReportTarget::Comment(id) => {
                let comment = self.store.comment_access(id).await?.filter(|c| c.active).ok_or_else(missing)?;
                let moment_visible = self.store.moment_access(me, comment.moment_id).await?.is_some_and(|a| a.visible);
                if !moment_visible || self.store.comments_by_ids(me, &[id]).await?.is_empty() {
                    return Err(missing());
                }
                if comment.author_id == me {
                    return Err(own());
                }
            }
            ReportTarget::Message(id) => {
                let sender = self.store.message_reportable_by(me, id).await?.ok_or_else(missing)?;
                if sender == me {
                    return Err(own());
                }
            }
        }
        if target.id() <= 0 {
            return Err(missing());
        }
        self.limiter.check(&format!("reports:user:{me}"), self.report_rate).await?;
        let new = NewReport {
            reporter_id: me,
            target,
            report_type,
            description: description.to_owned(),
            auto_hide_threshold: i64::from(self.auto_hide_threshold),
            now: now(),
        };
        let (report, hidden) = self.store.create_report(&new).await.map_err(|e| match e {
            StoreError::Conflict(_) => {
                Error::Conflict(format!("you already have a pending report on this {}", target.kind()))
            }
            StoreError::ForeignKey(_) => missing(),
            other => other.into(),
        })?;
        if hidden {
            tracing::info!(kind = target.kind(), id = target.id(), "content auto-hidden pending review");
        }
        Ok(report)
    }

    /// The queue, oldest first, optionally by status.
    pub async fn reports(
        &self,
        who: &Principal,
        status: Option<ReportStatus>,
        page: PageRequest,
    ) -> Result<Page<Report>> {
        require_moderator(who)?;
        let items = self.store.reports(status, page).await?;
        Ok(Page::new(items, page, |r| r.id))
    }

    /// A moderator's decision on a report.
    pub async fn review(&self, who: &Principal, id: palaver_core::Id, decision: Decision) -> Result<Report> {
        require_moderator(who)?;
        let report = self.store.report_by_id(id).await?.ok_or_else(|| Error::not_found("report", id))?;
        if let Some(notes) = &decision.admin_notes {
            palaver_core::validate::text(notes, 0, social::limits::ADMIN_NOTES_MAX_CHARS)
                .map_err(|msg| Error::invalid("admin_notes", msg))?;
        }
        let action = decision.action.unwrap_or(ModerationAction::None);
        let mut suspend_user_id = None;
        match action {
            ModerationAction::None => {}
            ModerationAction::HideContent => {
                if !report.target.is_hideable_content() {
                    return Err(Error::Unprocessable(format!(
                        "hide_content applies to moments and comments, not to a {}",
                        report.target.kind()
                    )));
                }
            }
            ModerationAction::SuspendUser => {
                let user_id = report.target_user_id.ok_or_else(|| {
                    Error::Unprocessable("the reported content no longer has an author to suspend".into())
                })?;
                if user_id == who.id() {
                    return Err(Error::Unprocessable("you cannot suspend yourself".into()));
                }
                let user = self.store.user_by_id(user_id).await?.ok_or_else(|| Error::not_found("user", user_id))?;
                if user.role.is_moderator() && who.user.role != Role::Admin {
                    return Err(Error::Forbidden("only admins can suspend moderators and admins".into()));
                }
                suspend_user_id = Some(user_id);
            }
        }
        let status = decision.status.unwrap_or(if action == ModerationAction::None {
            report.status
        } else {
            ReportStatus::Resolved
        });
        let at = now();
        let review = ReportReview {
            report_id: id,
            moderator_id: who.id(),
            status,
            admin_notes: decision.admin_notes,
            action,
            suspend_user_id,
            now: at,
        };
        let updated = self.store.review_report(&review).await.map_err(|e| match e {
            StoreError::Conflict(_) => {
                Error::Conflict("the reporter already has another pending report on this target".into())
            }
            StoreError::NotFound => Error::not_found("report", id),
            other => other.into(),
        })?;
        if let Some(user_id) = suspend_user_id {
            self.store.revoke_user_sessions(user_id, "suspended", at).await?;
        }
        Ok(updated)
    }

    /// The audit log, newest first.
    pub async fn log(&self, who: &Principal, page: PageRequest) -> Result<Page<ModerationLogEntry>> {
        require_moderator(who)?;
        let items = self.store.moderation_log(page).await?;
        Ok(Page::new(items, page, |e| e.id))
    }
}
