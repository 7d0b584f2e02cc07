//! `palaver admin rotate-keys`: re-encrypts data at rest under the newest
//! key, in batches, while nodes keep serving. Each item is switched to its
//! new ciphertext only if it did not change meanwhile, so the pass is safe
//! to interrupt and run again: the next run finds whatever is still sealed
//! with an older key (or unsealed) and continues.

use crate::app::AppState;

/// Re-encrypts every message body and media item not sealed with the
/// active key.
pub async fn rotate_all(state: &AppState, batch: i64) -> anyhow::Result<()> {
    let active = state.media.settings().keyring.active().clone();
    println!("re-encrypting under key `{active}`");
    let mut after = 0;
    let (mut resealed, mut skipped) = (0u64, 0u64);
    loop {
        let (done, changed, last) = state.services.chat.reseal_bodies(after, batch).await?;
        resealed += done;
        skipped += changed;
        match last {
            Some(last) => after = last,
            None => break,
        }
        println!("messages: {resealed} re-encrypted so far (up to id {after})");
    }
    println!("messages: {resealed} re-encrypted, {skipped} changed meanwhile (run again to include them)");
    let mut after = 0;
    let (mut resealed, mut skipped) = (0u64, 0u64);
    loop {
        let progress = state.media.reseal_batch(after, batch).await?;
        resealed += progress.resealed;
        skipped += progress.skipped;
        match progress.last_id {
            Some(last) => after = last,
            None => break,
        }
        println!("media: {resealed} re-encrypted so far (up to id {after})");
    }
    println!("media: {resealed} re-encrypted, {skipped} changed meanwhile (run again to include them)");
    Ok(())
}

/// Prints how many items each key seals, and which configured keys seal
/// nothing any more (those can be removed from the configuration).
pub async fn print_status(state: &AppState) -> anyhow::Result<()> {
    let keyring = &state.media.settings().keyring;
    let mut in_use = Vec::new();
    for (what, counts) in [
        ("message bodies", state.services.store.message_key_counts().await?),
        ("media", state.services.store.media_key_counts().await?),
    ] {
        for (key, count) in &counts {
            match key {
                Some(key) => {
                    println!("{what} sealed with `{key}`: {count}");
                    in_use.push(key.clone());
                }
                None => println!("{what} not encrypted: {count}"),
            }
        }
    }
    let active = keyring.active();
    let unused: Vec<String> = keyring
        .ids()
        .filter(|id| *id != active && !in_use.iter().any(|k| k == id.as_str()))
        .map(ToString::to_string)
        .collect();
    println!("newest key: `{active}`");
    if !unused.is_empty() {
        println!("older keys that seal nothing (can be removed): {}", unused.join(", "));
    }
    Ok(())
}
