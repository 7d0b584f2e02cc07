//! Notification text, rendered on the server so every client (and every push
//! service) shows the same words.

use palaver_core::notification::NotificationType;
use palaver_store::{RenderInput, Rendered};

/// "Ana", "Ana and Ben", "Ana and 3 others": newest actor first.
pub fn actors(names: &[String], count: i64) -> String {
    let first = names.first().map_or("Someone", String::as_str);
    match count {
        ..=1 => first.to_owned(),
        2 => match names.get(1) {
            Some(second) => format!("{first} and {second}"),
            None => format!("{first} and 1 other"),
        },
        n => format!("{first} and {} others", n - 1),
    }
}

fn plural(n: i64, one: &str, many: &str) -> String {
    if n <= 1 { one.to_owned() } else { format!("{n} {many}") }
}

/// The text of an event-made notification. Admin notifications bring their
/// own text and do not come here.
pub fn render(input: &RenderInput<'_>) -> Rendered {
    let who = actors(input.actor_names, input.actor_count);
    let kind = input.data.get("kind").and_then(|k| k.as_str()).unwrap_or_default();
    let call_type = input.data.get("call_type").and_then(|k| k.as_str()).unwrap_or("voice");
    let (title, message) = match (input.notification_type, kind) {
        (NotificationType::Like, "like_comment") => {
            (plural(input.actor_count, "New like", "new likes"), format!("{who} liked your comment"))
        }
        (NotificationType::Like, _) => {
            (plural(input.actor_count, "New like", "new likes"), format!("{who} liked your moment"))
        }
        (NotificationType::Comment, "reply") => {
            (plural(input.event_count, "New reply", "new replies"), format!("{who} replied to your comment"))
        }
        (NotificationType::Comment, _) => {
            (plural(input.event_count, "New comment", "new comments"), format!("{who} commented on your moment"))
        }
        (NotificationType::Follow, _) => {
            (plural(input.actor_count, "New follower", "new followers"), format!("{who} started following you"))
        }
        (NotificationType::Message, _) => {
            let preview = input.data.get("preview").and_then(|p| p.as_str()).unwrap_or_default();
            let message = if input.event_count <= 1 {
                preview.to_owned()
            } else {
                format!("{} new messages: {preview}", input.event_count)
            };
            (who, message)
        }
        (NotificationType::Call, "call_missed") => (format!("Missed {call_type} call"), format!("{who} called you")),
        (NotificationType::Call, _) => (format!("Incoming {call_type} call"), format!("{who} is calling you")),
        (other, _) => (other.as_str().replace('_', " "), String::new()),
    };
    Rendered { title, message }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn actor_phrases() {
        assert_eq!(actors(&names(&["Ana"]), 1), "Ana");
        assert_eq!(actors(&names(&["Ana", "Ben"]), 2), "Ana and Ben");
        assert_eq!(actors(&names(&["Ana", "Ben"]), 4), "Ana and 3 others");
        assert_eq!(actors(&[], 0), "Someone");
    }

    #[test]
    fn likes_and_messages() {
        let data = json!({"kind": "like_moment", "moment_id": 1});
        let n = names(&["Ana", "Ben"]);
        let r = render(&RenderInput {
            notification_type: NotificationType::Like,
            actor_names: &n,
            actor_count: 4,
            event_count: 5,
            data: &data,
        });
        assert_eq!(r.title, "4 new likes");
        assert_eq!(r.message, "Ana and 3 others liked your moment");

        let data = json!({"kind": "message", "preview": "¿Hablamos mañana?"});
        let r = render(&RenderInput {
            notification_type: NotificationType::Message,
            actor_names: &n[..1],
            actor_count: 1,
            event_count: 3,
            data: &data,
        });
        assert_eq!(r.title, "Ana");
        assert_eq!(r.message, "3 new messages: ¿Hablamos mañana?");
    }
}
