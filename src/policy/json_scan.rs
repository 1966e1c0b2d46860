//! Positions for JSON: serde_json has none, so a text it has already accepted is walked again
//! here, recording the line and column of every value and key. Because the text is known to
//! be valid (and at most serde_json's 128 levels deep), the scanner stays small; it still
//! answers `None` rather than panicking if it meets something unexpected.

use super::model::Pos;
use super::parse::{Kind, Node};

pub struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    line: u32,
    line_start: usize,
}

impl<'a> Scanner<'a> {
    pub fn new(text: &'a str) -> Scanner<'a> {
        Scanner {
            text,
            bytes: text.as_bytes(),
            at: 0,
            line: 1,
            line_start: 0,
        }
    }

    fn pos(&self) -> Pos {
        let column = self
            .text
            .get(self.line_start..self.at)
            .map_or(0, |s| s.chars().count());
        Pos {
            line: self.line,
            column: column as u32 + 1,
        }
    }

    fn skip_ws(&mut self) {
        while let Some(&b) = self.bytes.get(self.at) {
            match b {
                b'\n' => {
                    self.at += 1;
                    self.line += 1;
                    self.line_start = self.at;
                }
                b' ' | b'\t' | b'\r' => self.at += 1,
                _ => break,
            }
        }
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        self.skip_ws();
        (self.bytes.get(self.at) == Some(&b)).then(|| self.at += 1)
    }

    pub fn value(&mut self) -> Option<Node> {
        self.skip_ws();
        let pos = self.pos();
        let kind = match *self.bytes.get(self.at)? {
            b'{' => {
                self.at += 1;
                let mut entries = Vec::new();
                if self.eat(b'}').is_none() {
                    loop {
                        self.skip_ws();
                        let key_pos = self.pos();
                        let key = self.string()?;
                        self.eat(b':')?;
                        let value = self.value()?;
                        entries.push((key, key_pos, value));
                        if self.eat(b',').is_none() {
                            self.eat(b'}')?;
                            break;
                        }
                    }
                }
                Kind::Map(entries)
            }
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                if self.eat(b']').is_none() {
                    loop {
                        items.push(self.value()?);
                        if self.eat(b',').is_none() {
                            self.eat(b']')?;
                            break;
                        }
                    }
                }
                Kind::Seq(items)
            }
            b'"' => Kind::Str(self.string()?),
            b't' => self.word("true", Kind::Bool(true))?,
            b'f' => self.word("false", Kind::Bool(false))?,
            b'n' => self.word("null", Kind::Null)?,
            _ => self.number()?,
        };
        Some(Node { pos, kind })
    }

    fn word(&mut self, word: &str, kind: Kind) -> Option<Kind> {
        self.text.get(self.at..)?.starts_with(word).then(|| {
            self.at += word.len();
            kind
        })
    }

    fn string(&mut self) -> Option<String> {
        let start = self.at;
        if self.bytes.get(self.at) != Some(&b'"') {
            return None;
        }
        self.at += 1;
        loop {
            match *self.bytes.get(self.at)? {
                b'\\' => self.at += 2,
                b'"' => {
                    self.at += 1;
                    break;
                }
                _ => self.at += 1,
            }
        }
        serde_json::from_str(self.text.get(start..self.at)?).ok()
    }

    fn number(&mut self) -> Option<Kind> {
        let start = self.at;
        while let Some(&b) = self.bytes.get(self.at) {
            if b.is_ascii_digit() || b"+-.eE".contains(&b) {
                self.at += 1;
            } else {
                break;
            }
        }
        let s = self.text.get(start..self.at)?;
        match s.parse::<i64>() {
            Ok(i) => Some(Kind::Int(i)),
            Err(_) => s.parse::<f64>().ok().map(Kind::Float),
        }
    }
}
