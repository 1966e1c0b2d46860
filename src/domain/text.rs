//! Free-text fields (descriptions, owners, OS names): bounded, without control characters or
//! characters that make text display as something it is not.

use super::Rejection;

/// Checks a free-text field: `min..=max` characters, no control characters.
pub fn check_text(field: &str, value: &str, min: usize, max: usize) -> Result<(), Rejection> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(Rejection::Invalid(if min == 0 {
            format!("field '{field}' must be at most {max} characters")
        } else {
            format!("field '{field}' must be {min} to {max} characters")
        }));
    }
    if value.chars().any(char::is_control) {
        return Err(Rejection::Invalid(format!(
            "field '{field}' must not contain control characters"
        )));
    }
    if let Some(c) = value.chars().find(|c| is_invisible(*c)) {
        return Err(Rejection::Invalid(format!(
            "field '{field}' must not contain invisible or bidirectional formatting characters \
             (found U+{:04X})",
            c as u32
        )));
    }
    Ok(())
}

/// Characters that display as nothing, or reorder the text around them: bidirectional controls
/// (the "Trojan Source" attack, CVE-2021-42574) and zero-width characters, which make
/// `admin` and `adm\u{200B}in` look alike in a console or an audit log. Unicode's
/// Default_Ignorable_Code_Point set, except the variation selectors that emoji need.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E00FF}'
    )
}

/// Longest piece of a client's input a message repeats back.
pub const ECHO_MAX_CHARS: usize = 64;

/// `input` made safe to repeat in a message: escaped (no control or invisible characters reach
/// a terminal or a log viewer) and cut to [`ECHO_MAX_CHARS`].
pub fn echo(input: &str) -> String {
    let mut out = String::new();
    for (i, c) in input.chars().enumerate() {
        if i == ECHO_MAX_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() || is_invisible(c) || c == '\\' {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_bounded_in_characters_and_has_no_control_characters() {
        assert!(check_text("d", "", 0, 3).is_ok());
        assert!(
            check_text("d", "ééé", 0, 3).is_ok(),
            "characters, not bytes"
        );
        assert!(check_text("d", "abcd", 0, 3).is_err());
        assert!(check_text("d", "", 1, 3).is_err());
        assert!(check_text("d", "a\tb", 0, 3).is_err());
    }

    #[test]
    fn bidirectional_and_zero_width_characters_are_refused() {
        for spoof in [
            "adm\u{200B}in",
            "a\u{202E}txt.exe",
            "\u{2066}x",
            "x\u{FEFF}",
            "a\u{00AD}b",
        ] {
            let err = check_text("d", spoof, 0, 64).unwrap_err();
            assert!(
                matches!(&err, Rejection::Invalid(m) if m.contains("invisible")),
                "{spoof:?}: {err:?}"
            );
        }
        assert!(check_text("d", "caf\u{e9} \u{2764}\u{FE0F} \u{65e5}\u{672c}", 0, 64).is_ok());
    }

    #[test]
    fn echoed_input_is_escaped_and_cut() {
        assert_eq!(echo("ok"), "ok");
        assert_eq!(echo("a\u{202E}b\n"), "a\\u{202e}b\\u{a}");
        let long = "x".repeat(1000);
        assert_eq!(echo(&long).chars().count(), ECHO_MAX_CHARS + 1);
    }
}
