//! QuickZTNA: a self-hosted control plane for a zero-trust network — server, admin CLI and
//! device agent in one binary.
//!
//! # Layout
//! - [`config`]: the command line's top level (clap) and the server's settings; each
//!   subcommand's flags are defined next to the code that runs it.
//! - [`server`]: `run(listener, state, shutdown)`, the `serve` command, and the connections:
//!   their timeouts and cap.
//! - [`state`]: [`state::AppState`], what every handler shares: the log, read models, settings.
//! - [`bootstrap`]: creating organizations and owner tokens (`init`, first `serve`).
//! - [`policy`]: the policy language: parse with positions, lint, compile and evaluate
//!   reachability, run the policy's tests; pure, no I/O.
//! - [`peers`]: every device's peer map under the policy, kept current from the log.
//! - [`domain`]: pure decisions — command and read models in, a decision or a rejection out.
//! - [`mint`]: new ids and secrets, drawn at the edge and passed into commands.
//! - [`execute`]: the command executor, the only caller of `Log::append`: decide, append,
//!   retry on a conflict, wait for the read models.
//! - [`directory`]: the executor for people and groups, one write at a time per organization.
//! - [`mail`]: invitations by email through an SMTP relay.
//! - [`heartbeats`]: last-seen times and reported device state, kept outside the log.
//! - [`workers`]: background work from a checkpoint on the log or a timer; [`sweeper`], the
//!   removal of offline ephemeral and idle devices, is one.
//! - [`webhooks`]: signed deliveries of each organization's events to its webhooks: secrets
//!   encrypted at rest, the egress guard, the retry schedule, one delivery loop per webhook.
//! - [`http`]: the REST API, one module per resource, inside the request frame.
//! - [`scim`]: SCIM 2.0 at `/scim/v2`, for identity providers; SCIM errors, not problems.
//! - [`cli`]: the admin CLI, a client of the REST API.
//! - [`agent`]: `quickztna up`, the device agent; [`agent::host`] reads its machine.
//! - [`sessions`]: sign-in sessions, the API tokens people get from single sign-on.
//! - [`sso`]: single sign-on with OpenID Connect: the relying party, the browser sign-in and
//!   devices that join by their owner's sign-in.
//! - [`offline`]: commands that open the data dir directly (`init`, `org`, `audit-log verify`).
//! - [`error_text`]: an error and its causes on one line, for details and logs.
//! - [`private_files`]: owner-only files on the host (the umask, the data directory's mode).
//!
//! The event log lives in the `events` crate and the read models in `projections`.

pub mod agent;
pub mod audit;
pub mod bootstrap;
pub mod cli;
pub mod config;
pub mod directory;
pub mod domain;
pub mod error_text;
pub mod execute;
pub mod heartbeats;
pub mod http;
pub mod last_seen;
pub mod mail;
pub mod mint;
pub mod offline;
pub mod peers;
pub mod policy;
pub mod private_files;
pub mod scim;
pub mod server;
pub mod sessions;
pub mod sso;
pub mod state;
pub mod webhooks;
pub mod workers;

pub use workers::sweeper;
