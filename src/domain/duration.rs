//! Durations as people write them: `30s`, `15m`, `12h`, `90d`, `2w`.

use std::time::Duration;

use super::text::echo;

/// Parses `<positive integer><unit>` with unit s, m, h, d or w; a bare integer is seconds.
pub fn parse(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!(
            "invalid duration '{}': expected e.g. 30s, 15m, 12h, 90d",
            echo(input)
        )
    })?;
    let secs_per = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(format!(
                "invalid duration '{}': unit must be s, m, h, d or w",
                echo(input)
            ));
        }
    };
    let secs = n
        .checked_mul(secs_per)
        .ok_or_else(|| format!("duration '{}' is too large", echo(input)))?;
    if secs == 0 {
        return Err(format!("duration '{}' must be positive", echo(input)));
    }
    Ok(Duration::from_secs(secs))
}

/// Formats a duration with the largest unit that divides it.
pub fn format(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, per) in [("w", 7 * 86_400), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if s >= per && s.is_multiple_of(per) {
            return format!("{}{unit}", s / per);
        }
    }
    format!("{s}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_rejects_garbage() {
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse("12h").unwrap(), Duration::from_secs(43_200));
        assert_eq!(parse("90d").unwrap(), Duration::from_secs(90 * 86_400));
        assert_eq!(parse("2w").unwrap(), Duration::from_secs(14 * 86_400));
        assert_eq!(parse("45").unwrap(), Duration::from_secs(45));
        for bad in ["", "d", "0s", "-5m", "5y", "1.5h", "99999999999999999999d"] {
            assert!(parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn formats_with_the_largest_exact_unit() {
        assert_eq!(format(Duration::from_secs(90 * 86_400)), "90d");
        assert_eq!(format(Duration::from_secs(3600)), "1h");
        assert_eq!(format(Duration::from_secs(61)), "61s");
    }
}
