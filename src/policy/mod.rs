//! The policy language (DESIGN §3.4): who may reach which device on which ports.
//!
//! A pure core, no I/O: text in, a typed [`Policy`] with positions, diagnostics, and the
//! compiled reachability relation out.
//!
//! # Layout
//! - [`model`]: the typed policy; every name keeps its JSON pointer, line and column.
//! - [`syntax`]: principals, ports, protocols and the `tag:x:22,443` shorthand.
//! - [`parse`]: YAML (serde-saphyr) and JSON (serde_json) into one positioned tree, a
//!   [`parse::Source`] mapping pointers to positions; `build` turns the tree into the model.
//! - [`lint`]: every problem at once, each with severity, pointer, line, column and rule.
//! - [`fleet`]: the devices and people a policy is evaluated against.
//! - [`eval`]: compile a policy over a fleet it owns: slots, port classes, rules as sets.
//! - `rows`: one row per class of sources that match the same rules (a "signature"), with
//!   `autogroup:self` applied per device when read; grants, inbound, allows.
//! - `incremental`: upsert and remove devices and people on a compiled policy, returning
//!   exactly whose peer maps changed, without an all-pairs rescan.
//! - [`checks`]: the policy's own tests, run over a compiled policy.
//! - [`impact`]: the access a policy change grants and takes away, pair by pair.

mod bits;
mod build;
mod build_rules;
pub mod checks;
pub mod eval;
pub mod fleet;
pub mod impact;
mod incremental;
#[cfg(test)]
mod incremental_tests;
mod json_scan;
pub mod lint;
pub mod model;
pub mod parse;
#[cfg(test)]
mod reference;
#[cfg(test)]
mod reference_tests;
#[cfg(test)]
mod roundtrip_tests;
mod rows;
pub mod syntax;
#[cfg(test)]
mod tests;

pub use bits::DeviceSet;
pub use checks::{Failure, TestOutcome, run_tests};
pub use eval::{Compiled, Grant};
pub use fleet::{Device, Fleet, Signals, User};
pub use impact::{Change, Impact, impact, impact_within};
pub use lint::{Diagnostic, Severity, lint};
pub use model::{Action, At, Policy, PortRange, Pos, Principal, Proto, Rule, Version};
pub use parse::{Format, Parsed, Source, parse};
pub use rows::Stats;
