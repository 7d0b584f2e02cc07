//! Notification preferences: per type and channel (in-app, push), and quiet
//! hours in the user's own time zone.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveTime, TimeDelta, TimeZone as _, Utc};
use palaver_core::notification::NotificationType;
use palaver_core::{Error, FieldErrors};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What happens to a push that falls in a user's quiet hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuietHoursMode {
    /// Not pushed; the in-app notification waits in the list.
    Drop,
    /// Pushed when the quiet hours end (if still within the push max age).
    Defer,
}

impl std::str::FromStr for QuietHoursMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "drop" => Ok(Self::Drop),
            "defer" => Ok(Self::Defer),
            other => Err(format!("unknown quiet hours mode `{other}` (expected drop or defer)")),
        }
    }
}

/// Whether a type is wanted in each channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelPrefs {
    /// Kept in the notification list and sent live.
    #[serde(default = "yes")]
    pub in_app: bool,
    /// Pushed to the user's devices.
    #[serde(default = "yes")]
    pub push: bool,
}

fn yes() -> bool {
    true
}

impl Default for ChannelPrefs {
    fn default() -> Self {
        Self { in_app: true, push: true }
    }
}

/// A daily period without pushes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// Start, local time `HH:MM`.
    #[schema(example = "22:00")]
    pub start: String,
    /// End, local time `HH:MM`; before `start` means the next day.
    #[schema(example = "07:00")]
    pub end: String,
    /// IANA time zone of the user, such as `Europe/Madrid`.
    #[schema(example = "Europe/Madrid")]
    pub timezone: String,
    /// Incoming calls still ring through.
    #[serde(default = "yes")]
    pub allow_calls: bool,
}

/// A user's notification preferences. Types not listed are wanted
/// everywhere; no quiet hours unless set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    /// Per notification type.
    #[serde(default)]
    #[schema(value_type = Object, example = json!({"like": {"in_app": true, "push": false}}))]
    pub types: BTreeMap<NotificationType, ChannelPrefs>,
    /// Optional quiet hours.
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
}

impl Preferences {
    /// Every type listed (defaults filled in), as the API returns them.
    pub fn complete(mut self) -> Self {
        for t in NotificationType::ALL {
            self.types.entry(t).or_default();
        }
        self
    }

    /// The channels for a type.
    pub fn channels(&self, t: NotificationType) -> ChannelPrefs {
        self.types.get(&t).copied().unwrap_or_default()
    }

    /// Checks the quiet hours; the error names the fields.
    pub fn validate(&self) -> Result<(), Error> {
        let mut errors = FieldErrors::new();
        if let Some(q) = &self.quiet_hours {
            let start = parse_time(&q.start);
            let end = parse_time(&q.end);
            if start.is_none() {
                errors.add("quiet_hours.start", "must be a time HH:MM");
            }
            if end.is_none() {
                errors.add("quiet_hours.end", "must be a time HH:MM");
            }
            if start.is_some() && start == end {
                errors.add("quiet_hours.end", "must differ from start");
            }
            if q.timezone.parse::<chrono_tz::Tz>().is_err() {
                errors.add("quiet_hours.timezone", "must be an IANA time zone such as Europe/Madrid");
            }
        }
        errors.into_result()
    }

    /// When `at` falls in the quiet hours, the instant they end.
    pub fn quiet_until(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let q = self.quiet_hours.as_ref()?;
        let (start, end) = (parse_time(&q.start)?, parse_time(&q.end)?);
        let tz: chrono_tz::Tz = q.timezone.parse().ok()?;
        let local = at.with_timezone(&tz);
        let now = local.time();
        let quiet = if start < end { start <= now && now < end } else { now >= start || now < end };
        if !quiet {
            return None;
        }
        let mut day = local.date_naive();
        if now >= end {
            day = day.succ_opt()?;
        }
        let naive = day.and_time(end);
        // In a DST gap the end time does not exist locally: an hour later does.
        let resolved = tz
            .from_local_datetime(&naive)
            .earliest()
            .or_else(|| tz.from_local_datetime(&(naive + TimeDelta::hours(1))).earliest())?;
        Some(resolved.with_timezone(&Utc))
    }
}

fn parse_time(s: &str) -> Option<NaiveTime> {
    if s.len() != 5 {
        return None;
    }
    NaiveTime::parse_from_str(s, "%H:%M").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet(start: &str, end: &str, tz: &str) -> Preferences {
        Preferences {
            types: BTreeMap::new(),
            quiet_hours: Some(QuietHours {
                start: start.into(),
                end: end.into(),
                timezone: tz.into(),
                allow_calls: true,
            }),
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn overnight_quiet_hours_in_the_users_zone() {
        // Madrid is UTC+1 in January.
        let p = quiet("22:00", "07:00", "Europe/Madrid");
        assert_eq!(p.quiet_until(utc("2026-01-10T21:30:00Z")), Some(utc("2026-01-11T06:00:00Z")));
        assert_eq!(p.quiet_until(utc("2026-01-11T05:59:00Z")), Some(utc("2026-01-11T06:00:00Z")));
        assert_eq!(p.quiet_until(utc("2026-01-11T06:00:00Z")), None);
        assert_eq!(p.quiet_until(utc("2026-01-10T20:59:00Z")), None);
    }

    #[test]
    fn daytime_quiet_hours() {
        let p = quiet("09:00", "17:00", "UTC");
        assert_eq!(p.quiet_until(utc("2026-03-02T12:00:00Z")), Some(utc("2026-03-02T17:00:00Z")));
        assert_eq!(p.quiet_until(utc("2026-03-02T18:00:00Z")), None);
        assert_eq!(Preferences::default().quiet_until(utc("2026-03-02T12:00:00Z")), None);
    }

    #[test]
    fn bad_quiet_hours_name_the_fields() {
        let Err(Error::Validation(fields)) = quiet("25:00", "7:00", "Mars/Olympus").validate() else {
            panic!("expected a validation error")
        };
        let fields = fields.fields();
        assert!(fields.contains_key("quiet_hours.start"));
        assert!(fields.contains_key("quiet_hours.end"));
        assert!(fields.contains_key("quiet_hours.timezone"));
        assert!(quiet("22:00", "22:00", "UTC").validate().is_err());
        assert!(quiet("22:00", "07:00", "America/New_York").validate().is_ok());
    }

    #[test]
    fn defaults_fill_every_type() {
        let p: Preferences = serde_json::from_value(serde_json::json!({"types": {"like": {"push": false}}})).unwrap();
        assert_eq!(p.channels(NotificationType::Like), ChannelPrefs { in_app: true, push: false });
        assert_eq!(p.channels(NotificationType::Follow), ChannelPrefs::default());
        assert_eq!(p.clone().complete().types.len(), NotificationType::ALL.len());
        assert!(serde_json::from_value::<Preferences>(serde_json::json!({"types": {"likes": {}}})).is_err());
    }
}
