//! SCIM 2.0 (RFC 7643/7644) at `/scim/v2`: identity providers (Microsoft Entra, Okta) provision
//! users and groups here. SCIM speaks its own error format, so this module answers with
//! [`error::ScimError`], never an RFC 7807 problem.

pub mod error;
pub mod eval;
pub mod filter;
pub mod model;
pub mod patch;
pub mod schema;
