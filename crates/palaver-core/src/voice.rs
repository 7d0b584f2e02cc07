//! Public voice rooms: the room, its participants and their roles, the rules
//! on the fields of a new room, and who may do what inside one.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::user::Level;
use crate::{FieldErrors, Id, UserId, validate};

/// Limits on voice rooms.
pub mod limits {
    /// Longest room name, in characters.
    pub const NAME_MAX_CHARS: usize = 100;
    /// Longest description, in characters.
    pub const DESCRIPTION_MAX_CHARS: usize = 1000;
    /// Longest topic, in characters.
    pub const TOPIC_MAX_CHARS: usize = 60;
    /// Default number of speaker seats (the host's included).
    pub const DEFAULT_MAX_SPEAKERS: i64 = 10;
}

/// A participant's role in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VoiceRole {
    /// The room's creator: speaks, and invites, demotes, mutes and removes.
    Host,
    /// Speaks (publishes audio).
    Speaker,
    /// Listens; may raise a hand to ask to speak.
    Listener,
}

impl VoiceRole {
    /// The name stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            VoiceRole::Host => "host",
            VoiceRole::Speaker => "speaker",
            VoiceRole::Listener => "listener",
        }
    }

    /// Hosts and speakers hold a speaker seat and publish audio.
    pub fn speaks(self) -> bool {
        matches!(self, VoiceRole::Host | VoiceRole::Speaker)
    }
}

impl std::str::FromStr for VoiceRole {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "host" => Ok(VoiceRole::Host),
            "speaker" => Ok(VoiceRole::Speaker),
            "listener" => Ok(VoiceRole::Listener),
            _ => Err(format!("unknown voice role `{s}`")),
        }
    }
}

/// A voice room as listed and fetched. Counts are live: they change in the
/// same transaction as the participant rows they count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VoiceRoom {
    /// Its id.
    pub id: Id,
    /// Its name.
    pub name: String,
    /// What it is about, at length.
    pub description: String,
    /// What the conversation is about (`travel`, `business english`).
    pub topic: String,
    /// For learners of this level.
    pub difficulty_level: Level,
    /// Most participants at once.
    pub max_participants: i64,
    /// Most speakers at once (the host's seat included).
    pub max_speakers: i64,
    /// Participants now.
    pub current_participants: i64,
    /// Speakers now (host included).
    pub current_speakers: i64,
    /// Open; closed rooms are no longer listed or joinable.
    pub is_active: bool,
    /// Who created it (its host).
    pub created_by: UserId,
    /// The node whose SFU carries the room's media, while anyone is in it.
    pub media_node: Option<String>,
    /// Where that node's SFU takes UDP (`host:port`).
    pub media_addr: Option<String>,
    /// When it was created.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it was closed.
    pub closed_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Someone in a voice room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VoiceParticipant {
    /// The room.
    pub room_id: Id,
    /// The user.
    pub user_id: UserId,
    /// Their name.
    pub display_name: String,
    /// Their avatar URL.
    pub avatar: Option<String>,
    /// Their role here.
    pub role: VoiceRole,
    /// Muted (by themselves or a host): their audio is not forwarded.
    pub is_muted: bool,
    /// Speaking now (from the SFU's active-speaker detection).
    pub is_speaking: bool,
    /// A listener asking to speak.
    pub hand_raised: bool,
    /// When they joined.
    pub joined_at: chrono::DateTime<chrono::Utc>,
}

/// A validated new room.
#[derive(Debug, Clone)]
pub struct NewVoiceRoom {
    /// Name, trimmed.
    pub name: String,
    /// Description, trimmed.
    pub description: String,
    /// Topic, trimmed and lowercased (so filters match).
    pub topic: String,
    /// Level.
    pub difficulty_level: Level,
    /// Most participants.
    pub max_participants: i64,
    /// Most speakers.
    pub max_speakers: i64,
}

impl NewVoiceRoom {
    /// Checks a room request against the limits and the node's ceiling on
    /// participants per room.
    pub fn validate(
        name: &str,
        description: &str,
        topic: &str,
        difficulty_level: Level,
        max_participants: Option<i64>,
        max_speakers: Option<i64>,
        ceiling: i64,
    ) -> crate::Result<Self> {
        let mut errors = FieldErrors::new();
        let name = name.trim();
        if let Err(e) = validate::text(name, 1, limits::NAME_MAX_CHARS) {
            errors.add("name", e);
        }
        let description = description.trim();
        if let Err(e) = validate::text(description, 0, limits::DESCRIPTION_MAX_CHARS) {
            errors.add("description", e);
        }
        let topic = topic.trim().to_lowercase();
        if let Err(e) = validate::text(&topic, 1, limits::TOPIC_MAX_CHARS) {
            errors.add("topic", e);
        }
        let max_participants = max_participants.unwrap_or(ceiling.min(50));
        if !(2..=ceiling).contains(&max_participants) {
            errors.add("max_participants", format!("must be between 2 and {ceiling}"));
        }
        let max_speakers = max_speakers.unwrap_or(limits::DEFAULT_MAX_SPEAKERS.min(max_participants));
        if max_speakers < 1 || max_speakers > max_participants.max(1) {
            errors.add("max_speakers", "must be between 1 and max_participants");
        }
        errors.into_result()?;
        Ok(Self {
            name: name.to_owned(),
            description: description.to_owned(),
            topic,
            difficulty_level,
            max_participants,
            max_speakers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_rules() {
        let ok = NewVoiceRoom::validate(" Travel talk ", "", " Travel ", Level::Beginner, Some(20), None, 100).unwrap();
        assert_eq!((ok.name.as_str(), ok.topic.as_str(), ok.max_speakers), ("Travel talk", "travel", 10));
        let err = NewVoiceRoom::validate("", "", "", Level::Beginner, Some(500), Some(0), 100).unwrap_err();
        let crate::Error::Validation(fields) = err else { panic!("validation") };
        for f in ["name", "topic", "max_participants", "max_speakers"] {
            assert!(fields.fields().contains_key(f), "{f}: {fields:?}");
        }
        assert!(NewVoiceRoom::validate("a", "", "b", Level::Advanced, Some(5), Some(6), 100).is_err());
    }
}
