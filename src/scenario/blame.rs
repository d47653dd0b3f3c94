//! Which key inside a tagged table an error is about.
//!
//! serde reads a table with a `kind` tag (`[[topology]]`, `[cost_model]`, `[workload.arrival]`,
//! a length distribution) whole before it knows the variant, and an error inside it then names
//! only the table: `prefill_workers = "one"` in the second topology came out as
//! `topology[1]: invalid type: string "one", expected u32`, at the first line of the table. A
//! variant reads its keys in the file's order and stops at the first bad one, so the key whose
//! removal makes the error go away (or change) is the one it is about; inside it, the same
//! question finds a bad key of an inline table (`link = { bandwidth = 200 }`).

use toml_edit::{DocumentMut, Item, TableLike, Value};

use super::error::{split_key, Seg};

/// The deepest key under `key` (a table) that the error `(key, message)` of deserializing `text`
/// is about, e.g. `topology[1].prefill_workers`; `None` when `key` is not a table or no key in
/// it changes the error. `parse` deserializes a text and returns its error's key and message.
pub fn deeper_key(
    text: &str,
    key: &str,
    message: &str,
    parse: impl Fn(&str) -> Option<(String, String)>,
) -> Option<String> {
    // A missing field is about no key there is; which one serde names first depends on which are
    // present, so taking keys away would name the wrong one.
    if key.is_empty() || message.starts_with("missing field") {
        return None;
    }
    let doc: DocumentMut = text.parse().ok()?;
    let error = (key.to_owned(), message.to_owned());
    let mut path = key.to_owned();
    let mut found = None;
    loop {
        // A leaf ends the search, as does a table none of whose keys the error is about.
        let Some(keys) =
            table_at(&mut doc.clone(), &path).map(|t| t.iter().map(|(k, _)| k.to_owned()).collect::<Vec<_>>())
        else {
            return found;
        };
        // The tag last: without it every variant's error changes.
        let (tag, rest): (Vec<_>, Vec<_>) = keys.into_iter().partition(|k| k == "kind");
        let culprit = rest.into_iter().chain(tag).find(|k| {
            let mut probe = doc.clone();
            table_at(&mut probe, &path).and_then(|t| t.remove(k));
            parse(&probe.to_string()).as_ref() != Some(&error)
        });
        match culprit {
            Some(k) => {
                path = format!("{path}.{k}");
                found = Some(path.clone());
            }
            None => return found,
        }
    }
}

/// The table (a `[table]`, an element of `[[tables]]` or an inline table) at a dotted key path.
fn table_at<'a>(doc: &'a mut DocumentMut, path: &str) -> Option<&'a mut dyn TableLike> {
    within(doc.as_table_mut(), &split_key(path))
}

fn within<'a>(table: &'a mut dyn TableLike, path: &[Seg<'_>]) -> Option<&'a mut dyn TableLike> {
    let Some((first, rest)) = path.split_first() else {
        return Some(table);
    };
    let Seg::Key(k) = first else {
        return None;
    };
    match (table.get_mut(k)?, rest) {
        (Item::ArrayOfTables(a), [Seg::Index(i), rest @ ..]) => within(a.get_mut(*i)?, rest),
        (Item::Value(Value::Array(a)), [Seg::Index(i), rest @ ..]) => match a.get_mut(*i)? {
            Value::InlineTable(t) => within(t, rest),
            _ => None,
        },
        (Item::Table(t), rest) => within(t, rest),
        (Item::Value(Value::InlineTable(t)), rest) => within(t, rest),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for serde: the first key named `bad` anywhere, by its dotted path under `t`.
    fn first_bad(text: &str) -> Option<(String, String)> {
        let doc: DocumentMut = text.parse().ok()?;
        let t = doc.get("t")?.as_table_like()?;
        let inner_bad = t.get("inner").and_then(|i| i.as_table_like()).is_some_and(|i| i.contains_key("bad"));
        (t.contains_key("bad") || inner_bad).then(|| ("t".to_owned(), "invalid type".to_owned()))
    }

    #[test]
    fn the_key_whose_removal_ends_the_error_is_named() {
        let text = "[t]\nkind = \"a\"\nok = 1\nbad = \"x\"\n";
        assert_eq!(deeper_key(text, "t", "invalid type", first_bad).as_deref(), Some("t.bad"));
    }

    #[test]
    fn a_bad_key_of_an_inline_table_is_named_through_it() {
        let text = "[t]\nkind = \"a\"\ninner = { ok = 1, bad = 2 }\n";
        assert_eq!(deeper_key(text, "t", "invalid type", first_bad).as_deref(), Some("t.inner.bad"));
    }

    #[test]
    fn elements_of_arrays_of_tables_are_reached() {
        let text = "[[t]]\nbad = 1\n[[t]]\nok = 1\n";
        let parse = |s: &str| {
            let doc: DocumentMut = s.parse().ok()?;
            let first = doc.get("t")?.as_array_of_tables()?.get(0)?;
            first.contains_key("bad").then(|| ("t[0]".to_owned(), "invalid type".to_owned()))
        };
        assert_eq!(deeper_key(text, "t[0]", "invalid type", parse).as_deref(), Some("t[0].bad"));
    }

    #[test]
    fn missing_fields_and_leaves_are_left_as_they_are() {
        let text = "[t]\nkind = \"a\"\nbad = 1\n";
        assert_eq!(deeper_key(text, "t", "missing field `x`", first_bad), None);
        assert_eq!(deeper_key(text, "t.bad", "invalid type", first_bad), None, "a leaf is no table");
        assert_eq!(deeper_key(text, "", "invalid type", first_bad), None);
    }
}
