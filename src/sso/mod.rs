//! Single sign-on: people sign in through their organization's OpenID provider.
//!
//! - [`oidc`]: the relying party (discovery, the authorization-code flow, ID-token checks).

pub mod oidc;
