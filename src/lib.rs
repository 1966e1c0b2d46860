//! QuickZTNA: a self-hosted control plane for a zero-trust network — server, admin CLI and
//! device agent in one binary.
//!
//! # Layout
//! - [`config`]: the command line (clap), every flag documented.
//! - [`server`]: `run(listener, state, shutdown)` and the `serve` command.
//! - [`state`]: [`state::AppState`], what every handler shares: the log, read models, settings.
//! - [`bootstrap`]: creating organizations and owner tokens (`init`, first `serve`).
//! - [`domain`]: pure decisions — command in, events or a rejection out.
//! - [`heartbeats`]: last-seen times and reported device state, kept outside the log.
//! - [`sweeper`]: the background removal of offline ephemeral and idle devices.
//! - [`http`]: the REST API, one module per resource, inside the request frame.
//! - [`cli`]: the admin CLI, a client of the REST API.
//! - [`offline`]: commands that open the data dir directly (`init`, `org`, `audit-log verify`).
//!
//! The event log lives in the `events` crate and the read models in `projections`.

pub mod bootstrap;
pub mod cli;
pub mod config;
pub mod domain;
pub mod heartbeats;
pub mod http;
pub mod offline;
pub mod server;
pub mod state;
pub mod sweeper;
