//! Deserialising a TOML file while collecting *every* problem, not just the first.
//!
//! serde stops at the first error. To report all of them in one run, we parse the file
//! into toml's spanned document tree, try to deserialise, and on an error record it, cut
//! the offending key out of the tree and try again. Each round removes one key, so the
//! loop ends; a "missing field" error cannot be cut out and ends it early.

use std::ops::Range;
use std::path::Path;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

use crate::diag::{Diagnostic, closest};

/// Deserialises `source` (the text of `file`) into `T`, collecting all problems found.
///
/// The value is returned even when problems were found if it could be built from what is
/// left after cutting out the bad keys, so that checks on it can report more problems.
pub fn deserialize_all<T: DeserializeOwned>(
    file: &Path,
    source: &str,
) -> (Option<T>, Vec<Diagnostic>) {
    let (document, syntax_errors) = DeTable::parse_recoverable(source);
    if !syntax_errors.is_empty() {
        return (
            None,
            syntax_errors
                .iter()
                .map(|e| to_diagnostic(file, source, e))
                .collect(),
        );
    }
    let mut document = document;
    let mut problems = Vec::new();
    loop {
        match T::deserialize(toml::de::Deserializer::from(document.clone())) {
            Ok(value) => return (Some(value), problems),
            Err(e) => {
                problems.push(to_diagnostic(file, source, &e));
                let removed = match e.span() {
                    Some(span) if !e.message().starts_with("missing field") => {
                        remove_key_at(document.get_mut(), &span)
                    }
                    _ => false,
                };
                if !removed {
                    return (None, problems);
                }
            }
        }
    }
}

fn to_diagnostic(file: &Path, source: &str, e: &toml::de::Error) -> Diagnostic {
    let message = e.message().trim().to_string();
    let hint = unknown_key_hint(&message).unwrap_or_else(|| value_hint(&message).to_string());
    Diagnostic::error(file, message)
        .at_span(source, e.span())
        .with_hint(hint)
}

/// Plain advice for a value of the wrong shape, from what serde expected.
fn value_hint(message: &str) -> &'static str {
    let expected = message.rsplit("expected ").next().unwrap_or_default();
    if ["u8", "u16", "u32", "u64", "i64", "usize"]
        .iter()
        .any(|t| expected.starts_with(t))
    {
        "write a whole number, without quotes"
    } else if expected.starts_with("a boolean") {
        "write true or false, without quotes"
    } else if expected.starts_with("a string") || expected.starts_with("a path") {
        "write text in double quotes"
    } else if expected.starts_with("a sequence") {
        "write a list in brackets, e.g. [\"a\", \"b\"]"
    } else if message.contains("socket address") {
        "write an IP address and a port in double quotes, e.g. \"127.0.0.1:9464\""
    } else if message.contains("unknown variant") {
        "write one of the values listed"
    } else if message.contains("missing field") {
        "add the key; README.md lists every key"
    } else {
        "README.md describes every key and its values"
    }
}

/// For "unknown field `x`, expected one of `a`, `b`": suggest the nearest allowed key.
fn unknown_key_hint(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, expected) = rest.split_once('`')?;
    let allowed: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    match closest(unknown, allowed.iter().copied()) {
        Some(near) => Some(format!("did you mean `{near}`?")),
        None if allowed.is_empty() => Some("this table takes no keys".into()),
        None => Some(format!("allowed keys here: {}", allowed.join(", "))),
    }
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// Removes the innermost key whose key or value covers `span`; false if none does.
/// Searches depth-first: the span of an array of tables does not cover its tables.
fn remove_key_at(table: &mut DeTable<'_>, span: &Range<usize>) -> bool {
    let mut target = None;
    for (key, value) in table.iter_mut() {
        if contains(&key.span(), span) {
            target = Some(key.get_ref().to_string());
            break;
        }
        if remove_in_value(value.get_mut(), span) {
            return true;
        }
        if contains(&value.span(), span) {
            target = Some(key.get_ref().to_string());
            break;
        }
    }
    match target {
        Some(name) => table.remove(name.as_str()).is_some(),
        None => false,
    }
}

fn remove_in_value(value: &mut DeValue<'_>, span: &Range<usize>) -> bool {
    match value {
        DeValue::Table(table) => remove_key_at(table, span),
        DeValue::Array(items) => items
            .iter_mut()
            .any(|item| remove_in_value(item.get_mut(), span)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        #[serde(default)]
        count: u32,
        #[serde(default)]
        inner: Vec<Inner>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        #[serde(default)]
        flag: bool,
    }

    #[test]
    fn reports_every_problem_with_its_line() {
        let src = "name = \"x\"\ncount = \"many\"\nnaem = 1\n[[inner]]\nflag = 3\nflga = true\n";
        let (value, errs) = deserialize_all::<Sample>(Path::new("t.toml"), src);
        assert!(value.is_some(), "recovered without the bad keys");
        let mut lines: Vec<_> = errs.iter().map(|d| d.line.unwrap()).collect();
        lines.sort();
        assert_eq!(lines, vec![2, 3, 5, 6], "{errs:#?}");
        let unknown = errs.iter().find(|d| d.line == Some(3)).unwrap();
        assert!(unknown.message.contains("unknown field `naem`"));
        assert_eq!(unknown.hint.as_deref(), Some("did you mean `name`?"));
        let wrong_type = errs.iter().find(|d| d.line == Some(2)).unwrap();
        assert_eq!(
            wrong_type.hint.as_deref(),
            Some("write a whole number, without quotes")
        );
        let not_bool = errs.iter().find(|d| d.line == Some(5)).unwrap();
        assert_eq!(
            not_bool.hint.as_deref(),
            Some("write true or false, without quotes")
        );
    }

    #[test]
    fn syntax_errors_are_located() {
        let (value, errs) =
            deserialize_all::<Sample>(Path::new("t.toml"), "name = \"x\"\ncount = \n");
        assert!(value.is_none());
        assert_eq!(errs[0].line, Some(2), "{errs:#?}");
    }

    #[test]
    fn missing_required_key_ends_the_search() {
        let (value, errs) = deserialize_all::<Sample>(Path::new("t.toml"), "count = 1\n");
        assert!(value.is_none());
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message.contains("missing field `name`"), "{errs:?}");
    }

    #[test]
    fn valid_file_deserialises() {
        let (s, errs) = deserialize_all::<Sample>(
            Path::new("t.toml"),
            "name = \"x\"\n[[inner]]\nflag = true\n",
        );
        assert!(errs.is_empty());
        let s = s.unwrap();
        assert_eq!(s.name, "x");
        assert!(s.inner[0].flag);
    }
}
