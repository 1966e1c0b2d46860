//! The audit log's readers: the per-organization hash chain that makes exports verifiable
//! offline ([`chain`]), and the `event_type` filter the audit log, the SSE stream and webhooks
//! share ([`types`]); what retention still lets it serve ([`retention`]).

pub mod chain;
pub mod digests;
pub mod page;
pub mod retention;
pub mod types;
