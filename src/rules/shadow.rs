//! Warnings for rules that can never match: an earlier rule with `stop = true` matches
//! every message the later one would, so evaluation never reaches it.

use std::path::PathBuf;

use super::model::{OneOrMany, RuleDef, When};
use crate::diag::{Diagnostic, line_column};

pub fn warnings(defs: &[(PathBuf, String, RuleDef)]) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    for (i, (file, source, later)) in defs.iter().enumerate() {
        let shadowing = defs[..i]
            .iter()
            .find(|(_, _, earlier)| earlier.stop && covers(&earlier.when, &later.when));
        if let Some((first_file, first_source, earlier)) = shadowing {
            let (line, _) = line_column(first_source, earlier.name.span().start);
            found.push(
                Diagnostic::warning(
                    file,
                    format!(
                        "rule `{}` can never match: the earlier rule `{}` ({}:{line}) matches every message this one does, and stops",
                        later.name.get_ref(),
                        earlier.name.get_ref(),
                        first_file.display()
                    ),
                )
                .at_span(source, Some(later.name.span()))
                .with_hint("move this rule before it, or narrow the earlier rule's conditions"),
            );
        }
    }
    found
}

/// Whether every message matching `narrow` also matches `broad`: each condition of
/// `broad` is also in `narrow`, at least as strict. Patterns count only when identical,
/// so this finds the clear cases and never warns wrongly.
fn covers(broad: &When, narrow: &When) -> bool {
    fn list<T: PartialEq>(b: &Option<OneOrMany<T>>, n: &Option<OneOrMany<T>>) -> bool {
        match (b, n) {
            (None, _) => true,
            (Some(b), Some(n)) => n.0.iter().all(|v| b.0.contains(v)),
            (Some(_), None) => false,
        }
    }
    fn same<T: PartialEq>(b: &Option<T>, n: &Option<T>) -> bool {
        b.is_none() || b == n
    }
    let patterns =
        |b: &Option<toml::Spanned<String>>, n: &Option<toml::Spanned<String>>| match (b, n) {
            (None, _) => true,
            (Some(b), Some(n)) => b.get_ref() == n.get_ref(),
            (Some(_), None) => false,
        };
    let headers = match (&broad.header, &narrow.header) {
        (None, _) => true,
        (Some(b), Some(n)) => b
            .iter()
            .all(|(k, v)| n.get(k).is_some_and(|nv| nv.get_ref() == v.get_ref())),
        (Some(_), None) => false,
    };
    list(&broad.mailbox, &narrow.mailbox)
        && list(&broad.role, &narrow.role)
        && list(&broad.sender, &narrow.sender)
        && list(&broad.account_status, &narrow.account_status)
        && list(&broad.language, &narrow.language)
        && list(&broad.category, &narrow.category)
        && patterns(&broad.from, &narrow.from)
        && patterns(&broad.to, &narrow.to)
        && patterns(&broad.subject, &narrow.subject)
        && patterns(&broad.body, &narrow.body)
        && headers
        && same(&broad.has_attachment, &narrow.has_attachment)
        && same(&broad.business_hours, &narrow.business_hours)
        && same(&broad.new_ticket, &narrow.new_ticket)
}
