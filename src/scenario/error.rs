//! Scenario errors that point at the file, line and column of the bad key, with what was
//! expected.

use std::fmt;
use std::path::{Path, PathBuf};

/// A problem with a scenario file.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(Located),
}

/// An error at a place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    /// Dotted key path, e.g. `workload.classes[0].weight`; empty for the whole file.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.path.display(), self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "`{}`: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// A validation failure before it is located: the key path and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub key: String,
    pub message: String,
}

pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid { key: key.into(), message: message.into() }
}

/// Finds where a dotted key path (`a.b[2].c`) sits in the TOML text: the start of the deepest
/// part of the path that exists (a missing key points at its parent). Returns a byte offset.
pub fn locate_key(text: &str, key: &str) -> usize {
    use toml_edit::{Item, Value};
    enum Node<'a> {
        Table(&'a dyn toml_edit::TableLike),
        Array(&'a toml_edit::Array),
        Tables(&'a toml_edit::ArrayOfTables),
        Leaf,
    }
    fn of_value(v: &Value) -> Node<'_> {
        match v {
            Value::InlineTable(t) => Node::Table(t),
            Value::Array(a) => Node::Array(a),
            _ => Node::Leaf,
        }
    }
    fn of_item(it: &Item) -> Node<'_> {
        match it {
            Item::Table(t) => Node::Table(t),
            Item::ArrayOfTables(a) => Node::Tables(a),
            Item::Value(v) => of_value(v),
            Item::None => Node::Leaf,
        }
    }
    let Ok(doc) = text.parse::<toml_edit::ImDocument<String>>() else {
        return 0;
    };
    let mut best = 0usize;
    let mut node = Node::Table(doc.as_table());
    for seg in split_key(key) {
        let span;
        (node, span) = match (node, seg) {
            (Node::Table(t), Seg::Key(k)) => match t.get_key_value(k) {
                Some((key, it)) => (of_item(it), key.span()),
                None => break,
            },
            (Node::Tables(a), Seg::Index(i)) => match a.get(i) {
                Some(t) => (Node::Table(t), t.span()),
                None => break,
            },
            (Node::Array(a), Seg::Index(i)) => match a.get(i) {
                Some(v) => (of_value(v), v.span()),
                None => break,
            },
            _ => break,
        };
        if let Some(span) = span {
            best = span.start;
        }
    }
    best
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

pub(super) fn split_key(key: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in key.split('.').filter(|p| !p.is_empty()) {
        let (name, rest) = part.split_once('[').unwrap_or((part, ""));
        if !name.is_empty() {
            out.push(Seg::Key(name));
        }
        for idx in rest.split('[') {
            if let Ok(i) = idx.trim_end_matches(']').parse() {
                out.push(Seg::Index(i));
            }
        }
    }
    out
}

/// The dotted key written on the line of byte `offset`, under the table header above it
/// (`topology[1].workers`), or nothing: for errors toml reports without a key, such as a number
/// too large for any integer.
pub fn key_on_line(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let mut table = String::new();
    let mut seen: Vec<(String, usize)> = Vec::new();
    for line in text[..start].lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            let name = name.trim().to_owned();
            let n = match seen.iter_mut().find(|(s, _)| *s == name) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    seen.push((name.clone(), 0));
                    0
                }
            };
            table = format!("{name}[{n}]");
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            table = name.trim().to_owned();
        }
    }
    let line = text[start..].lines().next().unwrap_or("");
    // Only an error in the value: one in a comment after it is not about the key.
    let before = line.get(..offset - start).unwrap_or(line);
    let Some((key, value)) = before.split_once('=') else {
        return String::new();
    };
    if value.contains('#') {
        return String::new();
    }
    // Bare dotted keys only: on a line toml could not read, what is left of `=` is no key.
    let key = key.trim();
    let bare = |c: char| c.is_ascii_alphanumeric() || "_-.".contains(c);
    if key.is_empty() || !key.chars().all(bare) {
        return String::new();
    }
    if table.is_empty() {
        key.to_owned()
    } else {
        format!("{table}.{key}")
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Turns a validation failure into a located error.
pub fn locate(path: &Path, text: &str, e: Invalid) -> ScenarioError {
    let (line, column) = line_col(text, locate_key(text, &e.key));
    ScenarioError::Invalid(Located { path: path.to_owned(), line, column, key: e.key, message: e.message })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "seed = 1\n[workload]\n[[workload.classes]]\nname = \"a\"\n[[workload.classes]]\nname = \"b\"\n  weight = -1\n[workload.arrival]\nkind = \"poisson\"\n";

    #[test]
    fn finds_nested_keys_in_arrays_of_tables() {
        assert_eq!(line_col(TEXT, locate_key(TEXT, "workload.classes[1].weight")), (7, 3));
        assert_eq!(line_col(TEXT, locate_key(TEXT, "workload.classes[0].name")), (4, 1));
        assert_eq!(line_col(TEXT, locate_key(TEXT, "seed")), (1, 1));
        // Missing key: its parent.
        assert_eq!(line_col(TEXT, locate_key(TEXT, "workload.arrival.rate_per_s")).0, 8);
    }

    #[test]
    fn names_the_key_on_a_line() {
        let at = |needle: &str| key_on_line(TEXT, TEXT.find(needle).unwrap() + needle.len() - 1);
        assert_eq!(at("weight = -1"), "workload.classes[1].weight");
        assert_eq!(at("seed = 1"), "seed");
        assert_eq!(at("kind = \"poisson\""), "workload.arrival.kind");
        assert_eq!(at("[workload.arrival]"), "", "a header is no key");
        assert_eq!(key_on_line("this is = broken", 6), "", "nor is what a broken line holds");
        assert_eq!(key_on_line("n = 1 # \u{7}", 8), "", "an error in the comment is not the key's");
    }

    #[test]
    fn splits_paths() {
        assert_eq!(split_key("a.b[2].c"), vec![Seg::Key("a"), Seg::Key("b"), Seg::Index(2), Seg::Key("c")]);
    }
}
