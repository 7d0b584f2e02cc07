//! The `palaver` server: configuration, the axum application (REST API,
//! WebSocket gateway, web client), the command line.
//!
//! This crate is the HTTP edge. It parses and authenticates requests, calls
//! `palaver-service`, and shapes responses; domain rules live in the
//! services. `main` only parses the config, binds the port and calls
//! [`app::serve`], so tests can serve on a listener of their own.

pub mod app;
pub mod bench;
pub mod bench_chat;
pub mod bench_feed;
pub mod bench_match;
pub mod bench_media;
pub mod bench_push;
pub mod bench_sfu;
pub mod bench_signal;
pub mod bench_ws;
pub mod cli;
pub mod config;
pub mod error;
pub mod extract;
pub mod http;
pub mod keys;
pub mod observability;
pub mod push;
pub mod rotate;
pub mod rtc;
pub mod secrets;
pub mod web;
pub mod ws;

pub use app::{App, AppState, router, serve};
pub use config::{Cli, Config};
