//! Email: invitations, sent through the SMTP relay `serve --smtp-url` names.
//!
//! Sending happens after the invitation is durable, outside any decision; a relay that fails
//! does not undo the invitation: the API then returns the link for the inviter to pass on.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// How long one delivery to the relay may take before the link is returned instead.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The relay and the sender. Its `Debug` shows neither: the URL may hold a password.
#[derive(Clone)]
pub struct MailSettings {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for MailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MailSettings { .. }")
    }
}

/// An invitation to send.
#[derive(Debug, Clone)]
pub struct Invitation<'a> {
    pub to: &'a str,
    pub organization: &'a str,
    pub role: &'a str,
    pub url: &'a str,
    /// RFC 3339.
    pub expires_at: &'a str,
}

impl MailSettings {
    /// Checks the relay URL and the sender; an error names what is wrong, never the URL's
    /// credentials.
    pub fn new(smtp_url: &str, from: &str) -> Result<MailSettings, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .map_err(|e| format!("--smtp-url is not a usable SMTP URL: {}", redact(&e)))?
            .timeout(Some(SEND_TIMEOUT))
            .build();
        let from = from
            .parse::<Mailbox>()
            .map_err(|e| format!("--smtp-from is not a mailbox ('Name <a@b.c>'): {e}"))?;
        Ok(MailSettings { transport, from })
    }

    /// Sends an invitation; the error is safe to log (no credentials, no link).
    pub async fn send_invitation(&self, inv: &Invitation<'_>) -> Result<(), String> {
        let to = inv
            .to
            .parse::<Mailbox>()
            .map_err(|e| format!("the address cannot be mailed to: {e}"))?;
        let body = format!(
            "You have been invited to join {org} on QuickZTNA as {role}.\n\n\
             Sign in with your organization's single sign-on to accept:\n\n{url}\n\n\
             The invitation expires at {expires} (UTC).\n",
            org = inv.organization,
            role = inv.role,
            url = inv.url,
            expires = inv.expires_at,
        );
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(format!("Join {} on QuickZTNA", inv.organization))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| format!("the message could not be built: {e}"))?;
        self.transport.send(message).await.map(|_| ()).map_err(|e| {
            format!(
                "the SMTP relay refused or could not be reached: {}",
                redact(&e)
            )
        })
    }
}

/// Lettre's errors name the failing step and, for some, the server's reply; they do not echo
/// the URL, but keep the message to its first line in case a reply does.
fn redact(e: &impl std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_owned()
}
