//! How the CLI and the agent reach the server: an HTTP client that also trusts `--ca-cert`, and
//! the refusal to send a secret over plain `http://` to another machine.
//!
//! Over plain HTTP anyone on the path reads the bearer token (or the agent's pre-auth key and
//! node credential). Loopback (`127.0.0.0/8`, `::1`, `localhost`) never leaves the machine, so
//! it stays allowed; any other host needs `https://`, or `--insecure` for a network the operator
//! trusts. `--insecure` never turns off certificate checks on `https://`.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::tls::Certificate;
use url::{Host, Url};

use super::CliError;

/// The transport options of every client command (`--ca-cert`, `--insecure`).
#[derive(Debug, Clone, Default)]
pub struct Connect {
    /// PEM certificates trusted besides the system's roots.
    pub ca_cert: Option<PathBuf>,
    /// Allow secrets over plain HTTP to another machine.
    pub insecure: bool,
}

impl Connect {
    /// Refuses, before anything is sent, to send `secret` (what it is, for the message) to
    /// `server` over plain HTTP to another machine, unless `--insecure`.
    pub fn check(&self, server: &str, secret: &str) -> Result<(), CliError> {
        if self.insecure || !is_plain_http_to_another_machine(server)? {
            return Ok(());
        }
        Err(CliError::new(format!(
            "refusing to send {secret} to {server} over plain http://, where anyone on the \
             network path can read it: use https:// (see --ca-cert for a private CA), or pass \
             --insecure if this network is trusted"
        )))
    }

    /// An HTTP client with this user agent and timeout that also trusts `--ca-cert`.
    pub fn http_client(
        &self,
        user_agent: &str,
        timeout: Duration,
    ) -> Result<reqwest::Client, CliError> {
        self.build(reqwest::Client::builder().timeout(timeout), user_agent)
    }

    /// A client for an endless response (an event stream): no total timeout, but a read that
    /// waits longer than `read_timeout` for the next bytes fails, so a dead connection is
    /// noticed and replaced.
    pub fn stream_client(
        &self,
        user_agent: &str,
        read_timeout: Duration,
    ) -> Result<reqwest::Client, CliError> {
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(read_timeout);
        self.build(builder, user_agent)
    }

    fn build(
        &self,
        builder: reqwest::ClientBuilder,
        user_agent: &str,
    ) -> Result<reqwest::Client, CliError> {
        let mut builder = builder.user_agent(user_agent);
        if let Some(path) = &self.ca_cert {
            let pem = std::fs::read(path)
                .map_err(|e| CliError::new(format!("--ca-cert {}: {e}", path.display())))?;
            let certs = Certificate::from_pem_bundle(&pem)
                .map_err(|e| CliError::new(format!("--ca-cert {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(CliError::new(format!(
                    "--ca-cert {}: no PEM certificate in the file",
                    path.display()
                )));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        builder
            .build()
            .map_err(|e| CliError::new(format!("cannot build the HTTP client: {e}")))
    }
}

/// Whether `server` is an `http://` URL whose host is not this machine's loopback.
fn is_plain_http_to_another_machine(server: &str) -> Result<bool, CliError> {
    let url = Url::parse(server)
        .map_err(|e| CliError::new(format!("invalid server URL {server}: {e}")))?;
    if url.scheme() != "http" {
        return Ok(false);
    }
    let loopback = match url.host() {
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        None => false,
    };
    Ok(!loopback)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_https_pass_and_plain_http_elsewhere_is_refused() {
        for allowed in [
            "http://127.0.0.1:8080",
            "http://127.9.8.7",
            "http://localhost:8080",
            "http://LOCALHOST:8080/",
            "http://[::1]:8080",
            "http://[::ffff:127.0.0.1]:8080",
            "https://10.1.2.3:8443",
            "https://ztna.example.com",
        ] {
            assert!(
                !is_plain_http_to_another_machine(allowed).unwrap(),
                "{allowed} is allowed"
            );
        }
        for refused in [
            "http://10.1.2.3:8080",
            "http://ztna.example.com",
            "http://0.0.0.0:8080",
            "http://[fd00::1]:8080",
            "http://localhost.example.com",
            "http://127.0.0.1.nip.io",
        ] {
            assert!(
                is_plain_http_to_another_machine(refused).unwrap(),
                "{refused} is refused"
            );
        }
        assert!(is_plain_http_to_another_machine("not a url").is_err());
    }

    #[test]
    fn insecure_lets_plain_http_through_and_the_refusal_says_how_to_fix_it() {
        let strict = Connect::default();
        let err = strict
            .check("http://10.1.2.3:8080", "the API token")
            .unwrap_err();
        assert!(
            err.message.contains("refusing to send the API token"),
            "{err}"
        );
        assert!(err.message.contains("https://"), "{err}");
        assert!(err.message.contains("--insecure"), "{err}");
        let insecure = Connect {
            insecure: true,
            ..Connect::default()
        };
        assert!(
            insecure
                .check("http://10.1.2.3:8080", "the API token")
                .is_ok()
        );
    }
}
