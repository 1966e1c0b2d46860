//! Pure decisions and the value types they take: no I/O, no clock (time is passed in).
//!
//! Handlers build a command, a decision turns it and the read models into a [`Decision`] (the
//! streams it relies on and the events) or a [`Rejection`], the executor ([`crate::execute`])
//! appends the events and the projections fold them.

pub mod decision;
pub mod devices;
pub mod directory;
pub mod duration;
pub mod expiry;
pub mod hostname;
pub mod ids;
pub mod ipam;
pub mod keys;
pub mod owned_registration;
pub mod policy;
pub mod posture;
pub mod public_key;
pub mod registration;
pub mod retention;
pub mod scope;
pub mod secret;
pub mod tag;
pub mod text;
pub mod tokens;
pub mod webhooks;

#[cfg(test)]
mod testing;

pub use decision::Decision;

/// Why a command was refused; the HTTP edge maps each variant to one status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The request is malformed or a field is invalid (400).
    Invalid(String),
    /// The caller may not do this (403).
    Forbidden(String),
    /// No such resource in the caller's organization (404).
    NotFound(String),
    /// The resource's state forbids it (409).
    Conflict(String),
    /// Valid, but semantically refused (422).
    Unprocessable(String),
}
