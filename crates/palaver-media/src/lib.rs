//! Palaver's media: uploads, and how their bytes are kept and served.
//!
//! - [`MediaService`]: the use cases. An upload's type is decided from its
//!   bytes ([`sniff`]), its size checked per kind as it streams in; images
//!   are decoded under limits, turned upright and re-encoded without
//!   metadata, with a thumbnail ([`image`]); audio and video are stored as
//!   uploaded, with their duration when the headers tell it ([`duration`]).
//!   Bytes are served through signed, expiring URLs, checked against who
//!   may see the moment or conversation the media belongs to, with Range
//!   support ([`range`]). Uploads nobody used are collected after a day;
//!   key rotation re-encrypts stored media in resumable batches.
//! - [`storage`]: an `object_store` (local folder by default; S3, GCS or
//!   Azure by configuration) written and read as streams, each object
//!   sealed in 64 KiB chunks (`palaver_crypto::file`) so memory stays flat
//!   and a range decrypts only the chunks that hold it.
//!
//! Depends on `palaver-core`, `palaver-store`, `palaver-service` (the
//! caller's identity and rate limits) and `palaver-crypto`. It must not
//! depend on the server or HTTP: handlers turn multipart bodies into byte
//! streams and [`Served`] into responses.

pub mod duration;
pub mod image;
pub mod range;
pub mod service;
pub mod settings;
pub mod sniff;
pub mod storage;

pub use service::{MediaInfo, MediaService, ResealProgress, ServeRequest, ServeStatus, Served};
pub use settings::{MediaSettings, SizeLimits};
pub use sniff::Kind;
pub use storage::{Storage, StorageError};
