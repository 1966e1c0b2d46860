//! Free-text fields (descriptions, owners, OS names): bounded, without control characters.

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
    Ok(())
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
}
