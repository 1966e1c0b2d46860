//! The SCIM filter language (RFC 7644 §3.4.2.2) and the attribute paths PATCH uses (§3.5.2).
//!
//! A hand-written recursive-descent parser: identity providers send filters and paths in many
//! spellings (`userName eq "x"`, `UserName EQ "x"`, URN-prefixed names, `emails[type eq
//! "work"].value eq "x"`), and a refused filter must say where it went wrong, because it becomes
//! a SCIM `invalidFilter` (or `invalidPath`) error that an administrator reads in the identity
//! provider's provisioning log. Operators and attribute names are case-insensitive; names keep
//! their spelling so that a printed filter reads like the one sent. [`Filter`]'s `Display`
//! prints a filter that parses back to the same tree. Evaluation is in [`super::eval`].

use serde_json::Number;

/// Longest filter or path accepted, in bytes: bounds the work one query may ask for.
pub const MAX_LEN: usize = 4096;

/// Deepest nesting of parentheses, brackets and `not` accepted: the parser recurses on them.
pub const MAX_DEPTH: usize = 32;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `path op value`, e.g. `userName eq "bjensen"`.
    Compare {
        path: Path,
        op: CompareOp,
        value: CompValue,
    },
    /// `path pr`: the attribute has a non-empty value.
    Present(Path),
    /// `attr[filter]`: some value of a multi-valued attribute matches the inner filter.
    Has {
        attr: AttrPath,
        filter: Box<Filter>,
    },
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
}

/// `[urn:]name[.sub]`: one attribute, optionally a sub-attribute of a complex one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// The schema URN the name was prefixed with, without the final colon.
    pub urn: Option<String>,
    /// The attribute's name as sent.
    pub name: String,
    /// The sub-attribute's name as sent (`givenName` in `name.givenName`).
    pub sub: Option<String>,
}

/// A full path: an attribute, optionally narrowed to the values matching a filter and then to a
/// sub-attribute of those (`emails[type eq "work"].value`).
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    pub attr: AttrPath,
    /// The value filter between brackets.
    pub filter: Option<Box<Filter>>,
    /// The sub-attribute after the brackets.
    pub sub: Option<String>,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A literal on the right of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum CompValue {
    Str(String),
    Bool(bool),
    Null,
    Number(Number),
}

/// Why a filter or path was refused, with the byte offset where parsing stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at position {position}")]
pub struct FilterError {
    pub position: usize,
    pub message: String,
}

impl AttrPath {
    /// A plain attribute name without URN or sub-attribute.
    pub fn simple(name: &str) -> AttrPath {
        AttrPath {
            urn: None,
            name: name.to_owned(),
            sub: None,
        }
    }

    /// Whether this names the attribute `name` (case-insensitively), without a sub-attribute.
    pub fn is(&self, name: &str) -> bool {
        self.sub.is_none() && self.name.eq_ignore_ascii_case(name)
    }
}

impl Path {
    /// A path of a plain attribute path, without filter.
    pub fn attr(attr: AttrPath) -> Path {
        Path {
            attr,
            filter: None,
            sub: None,
        }
    }
}

impl CompareOp {
    const ALL: [(&'static str, CompareOp); 9] = [
        ("eq", CompareOp::Eq),
        ("ne", CompareOp::Ne),
        ("co", CompareOp::Co),
        ("sw", CompareOp::Sw),
        ("ew", CompareOp::Ew),
        ("gt", CompareOp::Gt),
        ("ge", CompareOp::Ge),
        ("lt", CompareOp::Lt),
        ("le", CompareOp::Le),
    ];

    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, op)| *op == self)
            .map_or("eq", |(name, _)| name)
    }
}

/// Parses a filter (the `filter` query parameter, a search request's `filter`).
pub fn parse(input: &str) -> Result<Filter, FilterError> {
    let mut parser = Parser::new(input)?;
    let filter = parser.or(0)?;
    parser.skip_ws();
    parser.expect_end()?;
    Ok(filter)
}

/// Parses a PATCH operation's `path`: `attrPath`, or `attrPath[valFilter]` optionally followed by
/// `.subAttr`.
pub fn parse_path(input: &str) -> Result<Path, FilterError> {
    let mut parser = Parser::new(input)?;
    parser.skip_ws();
    let attr = parser.attr_path()?;
    let path = parser.path_rest(attr, 0)?;
    parser.skip_ws();
    parser.expect_end()?;
    Ok(path)
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Result<Self, FilterError> {
        if text.len() > MAX_LEN {
            return Err(FilterError {
                position: MAX_LEN,
                message: format!("longer than {MAX_LEN} bytes"),
            });
        }
        Ok(Parser { text, pos: 0 })
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, FilterError> {
        Err(FilterError {
            position: self.pos,
            message: message.into(),
        })
    }

    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
        self.pos > start
    }

    /// What the parser is looking at, quoted for an error message.
    fn found(&self) -> String {
        match self.rest().chars().next() {
            None => "the end".to_owned(),
            Some(_) => {
                let token: String = self.rest().chars().take(16).collect();
                format!("'{}'", token.escape_debug())
            }
        }
    }

    fn expect_end(&self) -> Result<(), FilterError> {
        if self.pos == self.text.len() {
            Ok(())
        } else {
            self.err(format!(
                "expected 'and', 'or' or the end, found {}",
                self.found()
            ))
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), FilterError> {
        self.skip_ws();
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            self.err(format!(
                "expected '{}', found {}",
                byte as char,
                self.found()
            ))
        }
    }

    /// The next run of ASCII letters, if it is `word` (case-insensitively) and is followed by
    /// whitespace or, when `paren_ok`, by `(`; consumed then.
    fn keyword(&mut self, word: &str, paren_ok: bool) -> bool {
        let rest = self.rest().as_bytes();
        if rest.len() < word.len() || !rest[..word.len()].eq_ignore_ascii_case(word.as_bytes()) {
            return false;
        }
        match rest.get(word.len()) {
            Some(b) if b.is_ascii_whitespace() => {}
            Some(b'(') if paren_ok => {}
            _ => return false,
        }
        self.pos += word.len();
        true
    }

    fn depth_check(&self, depth: usize) -> Result<(), FilterError> {
        if depth >= MAX_DEPTH {
            return self.err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        Ok(())
    }

    fn or(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let mut left = self.and(depth)?;
        loop {
            let save = self.pos;
            if self.skip_ws() && self.keyword("or", true) {
                let right = self.and(depth)?;
                left = Filter::Or(Box::new(left), Box::new(right));
            } else {
                self.pos = save;
                return Ok(left);
            }
        }
    }

    fn and(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let mut left = self.unary(depth)?;
        loop {
            let save = self.pos;
            if self.skip_ws() && self.keyword("and", true) {
                let right = self.unary(depth)?;
                left = Filter::And(Box::new(left), Box::new(right));
            } else {
                self.pos = save;
                return Ok(left);
            }
        }
    }

    fn unary(&mut self, depth: usize) -> Result<Filter, FilterError> {
        self.skip_ws();
        if self.peek() == Some(b'(') {
            self.depth_check(depth)?;
            self.pos += 1;
            let inner = self.or(depth + 1)?;
            self.expect(b')')?;
            return Ok(inner);
        }
        let save = self.pos;
        if self.keyword("not", true) {
            self.skip_ws();
            if self.peek() == Some(b'(') {
                self.depth_check(depth)?;
                self.pos += 1;
                let inner = self.or(depth + 1)?;
                self.expect(b')')?;
                return Ok(Filter::Not(Box::new(inner)));
            }
            // An attribute that happens to be called "not".
            self.pos = save;
        }
        self.attr_expr(depth)
    }

    fn attr_expr(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let attr = self.attr_path()?;
        let path = self.path_rest(attr, depth)?;
        if let (Some(filter), None) = (&path.filter, &path.sub) {
            // `emails[type eq "work"]` on its own: some value matches.
            return Ok(Filter::Has {
                attr: path.attr,
                filter: filter.clone(),
            });
        }
        if !self.skip_ws() {
            return self.err(format!(
                "expected a space and an operator after the attribute path, found {}",
                self.found()
            ));
        }
        let start = self.pos;
        let word_len = self
            .rest()
            .bytes()
            .take_while(u8::is_ascii_alphabetic)
            .count();
        let word = &self.text[start..start + word_len];
        if word.eq_ignore_ascii_case("pr") {
            self.pos += word_len;
            return Ok(Filter::Present(path));
        }
        let Some(op) = CompareOp::ALL
            .iter()
            .find(|(name, _)| word.eq_ignore_ascii_case(name))
            .map(|(_, op)| *op)
        else {
            return self.err(format!(
                "expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr), found {}",
                self.found()
            ));
        };
        self.pos += word_len;
        if !self.skip_ws() {
            return self.err(format!(
                "expected a space and a value after '{word}', found {}",
                self.found()
            ));
        }
        let value = self.value()?;
        Ok(Filter::Compare { path, op, value })
    }

    /// `[urn:]name[.sub]`. A URN runs to the last colon of the name's token.
    fn attr_path(&mut self) -> Result<AttrPath, FilterError> {
        let start = self.pos;
        let len = self
            .rest()
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || b"-_:.$".contains(b))
            .count();
        if len == 0 {
            return self.err(format!(
                "expected an attribute name, found {}",
                self.found()
            ));
        }
        let token = &self.text[start..start + len];
        let (urn, local, local_at) = match token.rfind(':') {
            Some(colon) => (
                Some(token[..colon].to_owned()),
                &token[colon + 1..],
                start + colon + 1,
            ),
            None => (None, token, start),
        };
        if let Some(urn) = &urn
            && !urn.to_ascii_lowercase().starts_with("urn:")
        {
            return self.err(format!(
                "'{}' is not a schema URN (it must start with 'urn:')",
                urn.escape_debug()
            ));
        }
        let mut parts = local.splitn(2, '.');
        let name = parts.next().unwrap_or_default();
        let sub = parts.next();
        check_name(name, local_at)?;
        if let Some(sub) = sub {
            check_name(sub, local_at + name.len() + 1)?;
        }
        self.pos += len;
        Ok(AttrPath {
            urn,
            name: name.to_owned(),
            sub: sub.map(str::to_owned),
        })
    }

    /// After an attribute path: an optional `[filter]` and, after it, an optional `.sub`.
    fn path_rest(&mut self, attr: AttrPath, depth: usize) -> Result<Path, FilterError> {
        if self.peek() != Some(b'[') {
            return Ok(Path::attr(attr));
        }
        if attr.sub.is_some() {
            return self.err("a value filter cannot follow a sub-attribute");
        }
        self.depth_check(depth)?;
        self.pos += 1;
        let inner = self.or(depth + 1)?;
        self.expect(b']')?;
        let sub = if self.peek() == Some(b'.') {
            self.pos += 1;
            let start = self.pos;
            let len = self
                .rest()
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || b"-_$".contains(b))
                .count();
            let name = &self.text[start..start + len];
            check_name(name, start)?;
            self.pos += len;
            Some(name.to_owned())
        } else {
            None
        };
        Ok(Path {
            attr,
            filter: Some(Box::new(inner)),
            sub,
        })
    }

    fn value(&mut self) -> Result<CompValue, FilterError> {
        match self.peek() {
            Some(b'"') => self.string().map(CompValue::Str),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => {
                let len = self
                    .rest()
                    .bytes()
                    .take_while(u8::is_ascii_alphabetic)
                    .count();
                let word = &self.rest()[..len];
                let value = if word.eq_ignore_ascii_case("true") {
                    CompValue::Bool(true)
                } else if word.eq_ignore_ascii_case("false") {
                    CompValue::Bool(false)
                } else if word.eq_ignore_ascii_case("null") {
                    CompValue::Null
                } else {
                    return self.err(format!(
                        "expected a value (a \"string\", a number, true, false or null), found {}",
                        self.found()
                    ));
                };
                self.pos += len;
                Ok(value)
            }
        }
    }

    /// A JSON string literal, escapes and all.
    fn string(&mut self) -> Result<String, FilterError> {
        let start = self.pos;
        let bytes = self.text.as_bytes();
        let mut i = start + 1;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'"' => {
                    let literal = &self.text[start..=i];
                    return match serde_json::from_str::<String>(literal) {
                        Ok(s) => {
                            self.pos = i + 1;
                            Ok(s)
                        }
                        Err(e) => self.err(format!("invalid string literal: {e}")),
                    };
                }
                _ => i += 1,
            }
        }
        self.err("unterminated string: a closing '\"' is missing")
    }

    fn number(&mut self) -> Result<CompValue, FilterError> {
        let len = self
            .rest()
            .bytes()
            .take_while(|b| b.is_ascii_digit() || b"+-.eE".contains(b))
            .count();
        let literal = &self.rest()[..len];
        match serde_json::from_str::<Number>(literal) {
            Ok(n) => {
                self.pos += len;
                Ok(CompValue::Number(n))
            }
            Err(_) => self.err(format!("invalid number '{}'", literal.escape_debug())),
        }
    }
}

/// An attribute name: a letter, then letters, digits, `-` and `_`; or `$ref`.
fn check_name(name: &str, position: usize) -> Result<(), FilterError> {
    let ok = name == "$ref"
        || name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(FilterError {
            position,
            message: format!(
                "'{}' is not an attribute name (a letter, then letters, digits, '-' or '_')",
                name.escape_debug()
            ),
        })
    }
}

#[path = "filter_display.rs"]
mod display;

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
