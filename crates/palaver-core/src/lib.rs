//! Palaver's domain: the types every other crate speaks (users, roles,
//! languages, ids), the validation and permission rules that apply to them,
//! and the one domain [`Error`] enum that services return.
//!
//! This crate does no I/O and depends on nothing of Palaver's. Storage, the
//! real-time hub and the HTTP layer all depend on it; it must never depend on
//! them, so the rules here can be tested and reused without a database.

pub mod call;
pub mod chat;
pub mod error;
pub mod media;
pub mod notification;
pub mod social;
pub mod time;
pub mod user;
pub mod validate;
pub mod voice;

pub use error::{Error, FieldErrors, Result};

/// Database ids are 64-bit integers on both SQLite and PostgreSQL.
pub type Id = i64;
/// A user's id.
pub type UserId = Id;
