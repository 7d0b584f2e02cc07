//! Integration tests: the real server on a random port, real HTTP clients,
//! a fresh database per test. Tests written with [`api_test!`] run on SQLite
//! and, when `PALAVER_TEST_DATABASE_URL` (and `PALAVER_TEST_REDIS_URL`) are
//! set, on PostgreSQL + Redis.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod chat;
mod media;
mod moderation;
mod moments;
mod relations;

mod auth;
mod binary;
mod calls;
mod errors;
mod notifications;
mod ops;
mod users;
mod voice;
mod web;
mod webrtc;
mod ws;
mod ws_chat;
