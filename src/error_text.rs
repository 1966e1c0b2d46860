//! Errors as people read them: an error and its causes on one line. Library errors often hide
//! the cause that matters ("error sending request" over "connection refused", or the egress
//! guard's refusal), so what reaches a problem's `detail`, a delivery attempt or a log line is
//! the whole chain.

/// `e: cause: cause…`, skipping a cause whose text the line already holds.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn causes_follow_the_error_once_each() {
        let inner = std::io::Error::other("connection refused");
        let outer = std::io::Error::other(inner);
        // io::Error::other(inner) displays as its inner error: said once, not twice.
        assert_eq!(super::chain(&outer), "connection refused");
        let wrapped = std::fmt::Error;
        assert_eq!(
            super::chain(&wrapped),
            "an error occurred when formatting an argument"
        );
    }
}
