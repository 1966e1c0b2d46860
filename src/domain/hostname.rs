//! Device hostnames: what a device is called inside its organization.

/// A device's hostname: 1–63 of `a-z`, `0-9`, `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hostname(String);

impl Hostname {
    /// Parses a hostname exactly as given (the admin API: uppercase is an error there).
    pub fn parse(s: &str) -> Result<Hostname, String> {
        let ok = (1..=63).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Hostname(s.to_owned()))
        } else {
            Err(format!(
                "'{}' is not a valid hostname: it must match [a-z0-9-]{{1,63}}",
                super::text::echo(s)
            ))
        }
    }

    /// Lower-cases first, then parses (what a device reports: `Web-01` joins as `web-01`).
    pub fn normalize(s: &str) -> Result<Hostname, String> {
        Hostname::parse(&s.to_ascii_lowercase())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_are_1_to_63_lowercase_letters_digits_and_dashes() {
        assert!(Hostname::parse("web-01").is_ok());
        assert!(Hostname::parse(&"a".repeat(63)).is_ok());
        for bad in ["", "Web", "web_01", "web.01", &"a".repeat(64)] {
            assert!(Hostname::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn what_a_device_reports_is_lower_cased_first() {
        assert_eq!(Hostname::normalize("WEB-01").unwrap().as_str(), "web-01");
    }
}
