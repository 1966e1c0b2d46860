//! The OpenID Connect relying party: one organization's issuer, discovered once, and the
//! authorization-code flow with PKCE (S256), `state` and `nonce`.
//!
//! Built on the `openidconnect` crate, whose ID-token verifier checks the signature (RS256 by
//! default), `aud` = our client id (any other audience is refused), the exact `iss`, `exp` and
//! the nonce. We add a small clock leeway, the `groups` claim, one re-discovery of the key set
//! when a token names a key we have not seen (the provider rotated its keys), and an HTTP
//! client that never follows a redirect: an issuer URL is typed by an admin, and a redirect
//! would let it point the server at anything its network can reach.
//!
//! Errors never carry the client secret, an authorization code or a token: they end up in
//! logs and problem details.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata,
    CoreResponseType, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthenticationFlow, AuthorizationCode, Client, ClientId, ClientSecret,
    CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, HttpRequest,
    HttpResponse, IdToken, IdTokenFields, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RequestTokenError, Scope, StandardErrorResponse, StandardTokenResponse,
    TokenResponse,
};
use serde::{Deserialize, Serialize};

/// How far the provider's clock may be ahead of ours when we check `exp`.
pub const CLOCK_LEEWAY: Duration = Duration::from_secs(60);
/// A discovery document, key set or token response larger than this is refused.
const MAX_RESPONSE: usize = 1 << 20;
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// What the ID token says about the person, after verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    /// Absent means unverified: an email address is trusted for matching only when the
    /// provider vouches for it (Microsoft Entra omits the claim; its users match by invitation
    /// code or by a linked identity instead).
    pub email_verified: bool,
    pub name: Option<String>,
    pub preferred_username: Option<String>,
    /// The `groups` claim; `None` when the token has none (the provider may not send it, which
    /// says nothing about memberships).
    pub groups: Option<Vec<String>>,
}

/// The relying party's side of one organization's configuration.
#[derive(Clone)]
pub struct RelyingParty {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// `<public-url>/sso/callback`.
    pub redirect_uri: String,
}

impl std::fmt::Debug for RelyingParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelyingParty")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("redirect_uri", &self.redirect_uri)
            .finish()
    }
}

/// Where to send the browser, and what to keep (server-side) until it comes back.
#[derive(Debug)]
pub struct Authorization {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("invalid {what}: {reason}")]
    InvalidUrl { what: &'static str, reason: String },
    #[error("OpenID discovery failed: {0}")]
    Discovery(String),
    #[error("the provider advertises no token endpoint")]
    NoTokenEndpoint,
    #[error("the provider refused the authorization code: {0}")]
    Refused(String),
    #[error("the token endpoint could not be used: {0}")]
    TokenRequest(String),
    #[error("the token response has no ID token")]
    NoIdToken,
    #[error("the ID token is not valid: {0}")]
    InvalidIdToken(String),
}

/// The claims beyond the standard ones that we read from the ID token.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ExtraClaims {
    #[serde(default)]
    groups: Option<Vec<String>>,
}
impl AdditionalClaims for ExtraClaims {}

type IdFields = IdTokenFields<
    ExtraClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type Tokens = StandardTokenResponse<IdFields, CoreTokenType>;
type RpIdToken = IdToken<
    ExtraClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type RpClient = Client<
    ExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    Tokens,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// An HTTP client for talking to providers: no redirects, bounded time.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(HTTP_TIMEOUT)
        .build()
        .expect("a client without custom TLS roots always builds")
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

/// Whether the server may send a provider request to `url`. A provider's discovery document
/// names its other endpoints (keys, token), and an organization's administrator chooses the
/// provider, so every request is checked, not just the issuer: `https` only (plain `http`
/// only to this host's loopback, where a test or sidecar provider runs), and never to an
/// address literal in a private, link-local (cloud metadata), unique-local, shared (CGNAT) or
/// unspecified range. Names are not resolved here: DNS that points a public name at a private
/// address is for the network's egress rules.
pub fn reachable(url: &str) -> Result<(), String> {
    let url = url::Url::parse(url).map_err(|_| "the provider named an invalid URL".to_owned())?;
    let host = url
        .host()
        .ok_or("the provider named a URL without a host")?;
    let loopback = match &host {
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
    };
    let internal = match host {
        url::Host::Ipv4(ip) => {
            let o = ip.octets();
            ip.is_private()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast()
                || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        url::Host::Ipv6(ip) => {
            let s = ip.segments();
            ip.is_unspecified()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || ip.to_ipv4_mapped().is_some_and(|v4| !v4.is_loopback())
        }
        url::Host::Domain(_) => false,
    };
    match url.scheme() {
        _ if internal => {
            Err("the provider named an address in a private or link-local range".into())
        }
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err("the provider named a URL that is not https".into()),
    }
}

/// `openidconnect` 4 speaks `http` requests through any async function; ours sends them with the
/// reqwest the rest of the server uses (the crate's own reqwest integration is another major
/// version).
async fn send(client: reqwest::Client, request: HttpRequest) -> Result<HttpResponse, HttpError> {
    let (parts, body) = request.into_parts();
    let url = parts.uri.to_string();
    reachable(&url).map_err(HttpError)?;
    let mut builder = client.request(parts.method, &url).body(body);
    for (name, value) in &parts.headers {
        builder = builder.header(name, value);
    }
    // The error names the host at most, never the query or the body (which carry the code).
    let mut response = builder
        .send()
        .await
        .map_err(|e| HttpError(format!("request failed: {}", e.without_url())))?;
    let mut out = http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        out = out.header(name, value);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| HttpError(format!("reading the response failed: {}", e.without_url())))?
    {
        if body.len() + chunk.len() > MAX_RESPONSE {
            return Err(HttpError("response too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    out.body(body)
        .map_err(|e| HttpError(format!("bad response: {e}")))
}

/// One organization's discovered provider.
pub struct Provider {
    http: reqwest::Client,
    party: RelyingParty,
    /// Rebuilt when the key set is fetched again.
    client: RwLock<Arc<RpClient>>,
    /// Whether the provider lists a `groups` scope (Okta, oidc-provider); Microsoft Entra has
    /// none (groups come from the app's manifest) and refuses scopes it does not know.
    groups_scope: bool,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("party", &self.party)
            .finish()
    }
}

impl Provider {
    /// Fetches `<issuer>/.well-known/openid-configuration` and the key set. The document's
    /// `issuer` must equal `party.issuer` exactly (Microsoft's `/common` never does).
    pub async fn discover(
        http: reqwest::Client,
        party: RelyingParty,
    ) -> Result<Provider, OidcError> {
        RedirectUrl::new(party.redirect_uri.clone()).map_err(|e| OidcError::InvalidUrl {
            what: "redirect URI",
            reason: e.to_string(),
        })?;
        let metadata = Self::metadata(&http, &party).await?;
        let groups_scope = metadata
            .scopes_supported()
            .is_some_and(|scopes| scopes.iter().any(|s| s.as_str() == "groups"));
        let client = Self::build(metadata, &party)?;
        Ok(Provider {
            http,
            party,
            client: RwLock::new(Arc::new(client)),
            groups_scope,
        })
    }

    async fn metadata(
        http: &reqwest::Client,
        party: &RelyingParty,
    ) -> Result<CoreProviderMetadata, OidcError> {
        let issuer = IssuerUrl::new(party.issuer.clone()).map_err(|e| OidcError::InvalidUrl {
            what: "issuer",
            reason: e.to_string(),
        })?;
        let fetch = |request| send(http.clone(), request);
        CoreProviderMetadata::discover_async(issuer, &fetch)
            .await
            .map_err(|e| OidcError::Discovery(crate::error_text::chain(&e)))
    }

    fn build(metadata: CoreProviderMetadata, party: &RelyingParty) -> Result<RpClient, OidcError> {
        let redirect =
            RedirectUrl::new(party.redirect_uri.clone()).map_err(|e| OidcError::InvalidUrl {
                what: "redirect URI",
                reason: e.to_string(),
            })?;
        Ok(RpClient::from_provider_metadata(
            metadata,
            ClientId::new(party.client_id.clone()),
            Some(ClientSecret::new(party.client_secret.clone())),
        )
        .set_redirect_uri(redirect))
    }

    fn current(&self) -> Arc<RpClient> {
        self.client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn party(&self) -> &RelyingParty {
        &self.party
    }

    /// A fresh authorization request: random state, nonce and PKCE verifier (S256).
    pub fn authorize(&self) -> Authorization {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let client = self.current();
        let mut request = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge);
        if self.groups_scope {
            request = request.add_scope(Scope::new("groups".into()));
        }
        let (url, state, nonce) = request.url();
        Authorization {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        }
    }

    /// Exchanges the code (with the PKCE verifier) and verifies the ID token it returns.
    pub async fn finish(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<Identity, OidcError> {
        let client = self.current();
        let fetch = |request| send(self.http.clone(), request);
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|_| OidcError::NoTokenEndpoint)?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&fetch)
            .await
            .map_err(token_error)?;
        let id_token = tokens.id_token().ok_or(OidcError::NoIdToken)?;
        self.verify(id_token, nonce).await
    }

    /// Verifies a compact-serialized ID token (public for the tests that present a token
    /// minted for another client).
    pub async fn verify_id_token(&self, raw: &str, nonce: &str) -> Result<Identity, OidcError> {
        let token: RpIdToken = raw
            .parse()
            .map_err(|e: serde_json::Error| OidcError::InvalidIdToken(e.to_string()))?;
        self.verify(&token, nonce).await
    }

    async fn verify(&self, token: &RpIdToken, nonce: &str) -> Result<Identity, OidcError> {
        match Self::claims(&self.current(), token, nonce) {
            Err(openidconnect::ClaimsVerificationError::SignatureVerification(
                openidconnect::SignatureVerificationError::NoMatchingKey,
            )) => {
                // The provider may have rotated its keys since discovery: fetch them once more.
                let metadata = Self::metadata(&self.http, &self.party).await?;
                let fresh = Arc::new(Self::build(metadata, &self.party)?);
                *self.client.write().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
                Self::claims(&fresh, token, nonce)
            }
            other => other,
        }
        .map_err(|e| OidcError::InvalidIdToken(crate::error_text::chain(&e)))
    }

    fn claims(
        client: &RpClient,
        token: &RpIdToken,
        nonce: &str,
    ) -> Result<Identity, openidconnect::ClaimsVerificationError> {
        let verifier = client.id_token_verifier().set_time_fn(|| {
            chrono::Utc::now() - chrono::Duration::from_std(CLOCK_LEEWAY).unwrap_or_default()
        });
        let claims = token.claims(&verifier, &Nonce::new(nonce.to_owned()))?;
        Ok(Identity {
            issuer: claims.issuer().as_str().to_owned(),
            subject: claims.subject().as_str().to_owned(),
            email: claims.email().map(|e| e.as_str().to_owned()),
            email_verified: claims.email_verified().unwrap_or(false),
            name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.as_str().to_owned()),
            preferred_username: claims.preferred_username().map(|u| u.as_str().to_owned()),
            groups: claims.additional_claims().groups.clone(),
        })
    }
}

fn token_error<RE: std::error::Error + 'static>(
    e: RequestTokenError<RE, StandardErrorResponse<CoreErrorResponseType>>,
) -> OidcError {
    match e {
        // The provider's own words (`invalid_grant`: a used or foreign code), safe to show: it
        // never echoes the code.
        RequestTokenError::ServerResponse(response) => {
            OidcError::Refused(response.error().as_ref().to_owned())
        }
        RequestTokenError::Request(e) => OidcError::TokenRequest(crate::error_text::chain(&e)),
        // Not the body: a malformed response may still hold tokens.
        RequestTokenError::Parse(e, _body) => {
            OidcError::TokenRequest(format!("unreadable token response at {}", e.path()))
        }
        RequestTokenError::Other(message) => OidcError::TokenRequest(message),
    }
}

#[cfg(test)]
mod tests {
    use super::reachable;

    #[test]
    fn provider_requests_go_to_https_or_the_loopback_and_never_to_internal_literals() {
        for ok in [
            "https://login.microsoftonline.com/tid/v2.0/.well-known/openid-configuration",
            "https://acme.okta.com/oauth2/v1/keys",
            "http://127.0.0.1:4455/token",
            "http://localhost:4455/jwks",
            "http://[::1]:4455/jwks",
        ] {
            assert_eq!(reachable(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://idp.example.com/token",
            "http://169.254.169.254/latest/meta-data/",
            "https://169.254.169.254/token",
            "https://10.0.0.5:8500/v1/kv",
            "https://192.168.1.1/",
            "https://172.16.0.1/",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://[::ffff:10.0.0.1]/",
            "ftp://idp.example.com/",
            "not a url",
        ] {
            assert!(reachable(bad).is_err(), "{bad}");
        }
    }
}
