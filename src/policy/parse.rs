//! From text to [`Policy`]: YAML through serde-saphyr, JSON through serde_json, both first
//! into one positioned tree ([`Node`]) so that the model is built, and every structural
//! problem reported, by one walk ([`super::build`]) whatever the format.
//!
//! Why a tree and not `#[derive(Deserialize)]` on the model: serde stops at the first error,
//! and lint must report every problem at once. serde-saphyr's `Spanned` gives each node its
//! line and column; serde_json has no positions, so a JSON text that serde_json accepts is
//! walked again by a small scanner that records them.

use std::collections::BTreeMap;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::lint::Diagnostic;
use super::model::{Policy, Pos};

/// The format of a policy text (chosen by `Content-Type` at the HTTP edge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    /// How a stored policy version names its format (`yaml` or `json`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Yaml => "yaml",
            Format::Json => "json",
        }
    }

    /// The format a stored version names; YAML unless it says `json`.
    pub fn named(name: &str) -> Format {
        if name == "json" {
            Format::Json
        } else {
            Format::Yaml
        }
    }
}

/// A parsed policy, where each of its nodes came from, and the structural problems found
/// on the way (unknown fields, malformed ports…). The policy holds everything that could be
/// understood; a problem never stops the walk.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub policy: Policy,
    pub source: Source,
    pub diagnostics: Vec<Diagnostic>,
}

/// Parse a policy text. `Err` only when the text is not YAML or JSON at all: one diagnostic
/// at the place the parser gave up.
pub fn parse(text: &str, format: Format) -> Result<Parsed, Diagnostic> {
    let root = match format {
        Format::Yaml => yaml(text)?,
        Format::Json => json(text)?,
    };
    let source = Source::of(&root);
    let (policy, diagnostics) = super::build::policy(&root);
    Ok(Parsed {
        policy,
        source,
        diagnostics,
    })
}

/// A node of the document with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in document order, each key with its own position.
    Map(Vec<(String, Pos, Node)>),
}

/// Maps a JSON pointer (`/rules/2/ports/1`, RFC 6901 escaping) to the position of its node.
#[derive(Debug, Clone, Default)]
pub struct Source {
    positions: BTreeMap<String, Pos>,
}

impl Source {
    fn of(root: &Node) -> Source {
        let mut positions = BTreeMap::new();
        let mut stack = vec![(String::new(), root)];
        while let Some((pointer, node)) = stack.pop() {
            positions.insert(pointer.clone(), node.pos);
            match &node.kind {
                Kind::Seq(items) => {
                    for (i, item) in items.iter().enumerate() {
                        stack.push((format!("{pointer}/{i}"), item));
                    }
                }
                Kind::Map(entries) => {
                    for (k, _, v) in entries {
                        stack.push((format!("{pointer}/{}", escape(k)), v));
                    }
                }
                _ => {}
            }
        }
        Source { positions }
    }

    /// The position of the node at `pointer`, if the document has one there.
    pub fn pos(&self, pointer: &str) -> Option<Pos> {
        self.positions.get(pointer).copied()
    }
}

/// One RFC 6901 reference token.
pub fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn yaml(text: &str) -> Result<Node, Diagnostic> {
    match serde_saphyr::from_str::<Option<Spanned<KindDe>>>(text) {
        Ok(Some(root)) => Ok(node(root)),
        // An empty document is an empty policy, which lint then reports as such.
        Ok(None) => Ok(Node {
            pos: Pos { line: 1, column: 1 },
            kind: Kind::Null,
        }),
        Err(e) => {
            let pos = e
                .location()
                .map(|l| Pos {
                    line: l.line() as u32,
                    column: l.column() as u32,
                })
                .unwrap_or_default();
            let message = e.render_with_formatter(&serde_saphyr::DefaultMessageFormatter);
            let first = yaml_message(&message);
            Err(Diagnostic::error(
                "",
                pos,
                None,
                format!("not valid YAML: {first}"),
            ))
        }
    }
}

/// serde-saphyr's message without what the diagnostic already says (severity, line and
/// column) or advice meant for programmers (its `Options`).
fn yaml_message(rendered: &str) -> String {
    let first = rendered.lines().next().unwrap_or("");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let first = match first.strip_prefix("line ") {
        Some(rest) => rest.split_once(": ").map_or(rest, |(_, m)| m),
        None => first,
    };
    first
        .split(", set DuplicateKeyPolicy")
        .next()
        .unwrap_or(first)
        .to_owned()
}

fn node(s: Spanned<KindDe>) -> Node {
    Node {
        pos: Pos {
            line: s.referenced.line() as u32,
            column: s.referenced.column() as u32,
        },
        kind: s.value.0,
    }
}

/// A node's kind, deserialized from any self-describing format.
struct KindDe(Kind);

impl<'de> Deserialize<'de> for KindDe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor).map(KindDe)
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Kind, E> {
        Ok(Kind::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Kind, E> {
        Ok(Kind::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Kind, E> {
        Ok(i64::try_from(v).map_or(Kind::Float(v as f64), Kind::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Kind, E> {
        Ok(Kind::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind::Str(v.to_owned()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        KindDe::deserialize(d).map(|k| k.0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<KindDe>>()? {
            items.push(node(item));
        }
        Ok(Kind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KindDe>>()? {
            let key = node(key);
            let value = node(map.next_value::<Spanned<KindDe>>()?);
            // The value's position stands in when a key's is unknown.
            let key_pos = if key.pos == Pos::default() {
                value.pos
            } else {
                key.pos
            };
            let name = match key.kind {
                Kind::Str(s) => s,
                Kind::Int(i) => i.to_string(),
                Kind::Float(f) => f.to_string(),
                Kind::Bool(b) => b.to_string(),
                Kind::Null => "null".to_owned(),
                Kind::Seq(_) | Kind::Map(_) => {
                    return Err(de::Error::custom("a mapping key must be a scalar"));
                }
            };
            entries.push((name, key_pos, value));
        }
        Ok(Kind::Map(entries))
    }
}

fn json(text: &str) -> Result<Node, Diagnostic> {
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        let pos = Pos {
            line: e.line() as u32,
            column: e.column() as u32,
        };
        let message = e.to_string();
        // serde_json appends " at line L column C"; the diagnostic carries those already.
        let message = message.split(" at line ").next().unwrap_or(&message);
        return Err(Diagnostic::error(
            "",
            pos,
            None,
            format!("not valid JSON: {message}"),
        ));
    }
    let mut scanner = super::json_scan::Scanner::new(text);
    scanner.value().ok_or_else(|| {
        Diagnostic::error(
            "",
            Pos { line: 1, column: 1 },
            None,
            "not valid JSON".into(),
        )
    })
}
