//! Printing filters and paths: what a printed filter says parses back to the same tree.

use std::fmt;

use super::{AttrPath, CompValue, Filter, Path};

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        f.write_str(&self.name)?;
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.attr)?;
        if let Some(filter) = &self.filter {
            write!(f, "[{filter}]")?;
        }
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

impl fmt::Display for CompValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompValue::Str(s) => f.write_str(&serde_json::to_string(s).map_err(|_| fmt::Error)?),
            CompValue::Bool(b) => write!(f, "{b}"),
            CompValue::Null => f.write_str("null"),
            CompValue::Number(n) => write!(f, "{n}"),
        }
    }
}

impl fmt::Display for Filter {
    /// Prints a filter that parses back to the same tree: a logical operand that is itself an
    /// `and`/`or` gets parentheses, so grouping survives whatever the precedence.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let operand = |f: &mut fmt::Formatter<'_>, x: &Filter| match x {
            Filter::And(..) | Filter::Or(..) => write!(f, "({x})"),
            _ => write!(f, "{x}"),
        };
        match self {
            Filter::Compare { path, op, value } => write!(f, "{path} {} {value}", op.name()),
            Filter::Present(path) => write!(f, "{path} pr"),
            Filter::Has { attr, filter } => write!(f, "{attr}[{filter}]"),
            Filter::And(a, b) => {
                operand(f, a)?;
                f.write_str(" and ")?;
                operand(f, b)
            }
            Filter::Or(a, b) => {
                operand(f, a)?;
                f.write_str(" or ")?;
                operand(f, b)
            }
            Filter::Not(x) => write!(f, "not ({x})"),
        }
    }
}
