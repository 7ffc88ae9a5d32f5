//! Reading an account import file (CSV). Every bad row is reported with its line; a file
//! with any bad row imports nothing.
//!
//! Columns (header row required, order free): `reference`, `email` (required), `name`,
//! `language` (default `en`), `status` (`active`|`suspended`|`closed`), `details_valid`
//! (`true`/`false`), `resources` (space-separated domains, IPs and CIDR ranges).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

use chrono::Utc;

use crate::diag::{Diagnostic, Diagnostics};
use crate::mail::normalize_address;
use crate::store::accounts::{
    AccountRecord, ImportError, ImportSummary, Resource, conflicts_with_registry,
};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ImportFileError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// Bad rows, or rows that clash with registered accounts; nothing was imported.
    #[error("{0}\nnothing was imported")]
    Invalid(Diagnostics),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reads and imports an account CSV file: every row, or none.
pub fn import_file(store: &mut Store, file: &Path) -> Result<ImportSummary, ImportFileError> {
    let records = read_records(file)?;
    match store.import_accounts(&records, &file.display().to_string(), Utc::now()) {
        Ok(summary) => Ok(summary),
        Err(ImportError::Conflicts(conflicts)) => Err(refused(file, conflicts)),
        Err(ImportError::Store(e)) => Err(e.into()),
    }
}

/// What importing `file` into the registry at `database` would refuse, found without
/// importing (for `maildesk check`); the number of accounts it holds otherwise.
pub fn check_file(database: &Path, file: &Path) -> Result<usize, ImportFileError> {
    let records = read_records(file)?;
    match conflicts_with_registry(database, &records)? {
        conflicts if conflicts.is_empty() => Ok(records.len()),
        conflicts => Err(refused(file, conflicts)),
    }
}

fn read_records(file: &Path) -> Result<Vec<AccountRecord>, ImportFileError> {
    let text = std::fs::read_to_string(file).map_err(|source| ImportFileError::Read {
        path: file.to_path_buf(),
        source,
    })?;
    parse_accounts(file, &text).map_err(|d| ImportFileError::Invalid(Diagnostics(d)))
}

fn refused(file: &Path, conflicts: Vec<(usize, String)>) -> ImportFileError {
    ImportFileError::Invalid(Diagnostics(
        conflicts
            .into_iter()
            .map(|(line, message)| {
                Diagnostic::error(file, message).at_line(line).with_hint(
                    "each address and resource belongs to one account: correct one of the two",
                )
            })
            .collect(),
    ))
}

const COLUMNS: [&str; 7] = [
    "reference",
    "email",
    "name",
    "language",
    "status",
    "details_valid",
    "resources",
];

/// Parses the CSV text of `file`; all problems or all records.
pub fn parse_accounts(file: &Path, text: &str) -> Result<Vec<AccountRecord>, Vec<Diagnostic>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            return Err(vec![
                Diagnostic::error(file, format!("cannot read the header row: {e}")).at_line(1),
            ]);
        }
    };
    let mut problems = Vec::new();
    let mut index = HashMap::new();
    for (i, name) in headers.iter().enumerate() {
        let name = name.to_ascii_lowercase();
        if !COLUMNS.contains(&name.as_str()) {
            let hint = match crate::diag::closest(&name, COLUMNS) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!("known columns: {}", COLUMNS.join(", ")),
            };
            problems.push(
                Diagnostic::error(file, format!("unknown column `{name}`"))
                    .at_line(1)
                    .with_hint(hint),
            );
        }
        index.insert(name, i);
    }
    for required in ["reference", "email"] {
        if !index.contains_key(required) {
            problems.push(
                Diagnostic::error(file, format!("missing column `{required}`"))
                    .at_line(1)
                    .with_hint(format!("the header row must name: {}", COLUMNS.join(","))),
            );
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut records = Vec::new();
    let mut seen_refs: HashMap<String, usize> = HashMap::new();
    let mut seen_emails: HashMap<String, usize> = HashMap::new();
    for row in reader.records() {
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                problems
                    .push(Diagnostic::error(file, format!("unreadable row: {e}")).at_line(line));
                continue;
            }
        };
        let line = row.position().map_or(0, |p| p.line() as usize);
        let field = |name: &str| index.get(name).and_then(|i| row.get(*i)).unwrap_or("");
        let mut bad = |message: String, hint: &str| {
            problems.push(
                Diagnostic::error(file, message)
                    .at_line(line)
                    .with_hint(hint),
            );
        };
        let reference = field("reference").to_string();
        if reference.is_empty() {
            bad(
                "empty reference".into(),
                "every account needs the provider's customer reference",
            );
        } else if let Some(first) = seen_refs.insert(reference.clone(), line) {
            bad(
                format!("reference {reference} already appears on line {first}"),
                "one row per account",
            );
        }
        let email = normalize_address(field("email"));
        if email.parse::<lettre::Address>().is_err() {
            bad(
                format!("{:?} is not an email address", field("email")),
                "the registered address, as local@domain",
            );
        } else if let Some(first) = seen_emails.insert(email.clone(), line) {
            bad(
                format!("email {email} already appears on line {first}"),
                "each address belongs to one account",
            );
        }
        let language = match field("language") {
            "" => "en".to_string(),
            l => l.to_ascii_lowercase(),
        };
        if language.len() != 2 || !language.chars().all(|c| c.is_ascii_lowercase()) {
            bad(
                format!("language {language:?} is not a two-letter code"),
                "e.g. en, it, fr",
            );
        }
        let status = match field("status") {
            "" => "active".to_string(),
            s => s.to_ascii_lowercase(),
        };
        if !matches!(status.as_str(), "active" | "suspended" | "closed") {
            bad(
                format!("status {status:?} is not one of active, suspended, closed"),
                "leave it empty for active",
            );
        }
        let details_valid = match field("details_valid").to_ascii_lowercase().as_str() {
            "" | "true" | "yes" | "1" => true,
            "false" | "no" | "0" => false,
            other => {
                bad(
                    format!("details_valid {other:?} is not true or false"),
                    "true, false, yes, no, 1 or 0",
                );
                true
            }
        };
        let mut resources = BTreeSet::new();
        for token in field("resources").split_whitespace() {
            match parse_resource(token) {
                Some(r) => {
                    resources.insert(r);
                }
                None => bad(
                    format!("resource {token:?} is not a domain, IP address or CIDR range"),
                    "e.g. example.com 192.0.2.10 2001:db8::/48",
                ),
            }
        }
        records.push(AccountRecord {
            line,
            reference,
            email,
            name: field("name").to_string(),
            language,
            status,
            details_valid,
            resources,
        });
    }
    if problems.is_empty() {
        Ok(records)
    } else {
        Err(problems)
    }
}

fn parse_resource(token: &str) -> Option<Resource> {
    if let Ok(ip) = token.parse::<IpAddr>() {
        return Some(Resource {
            kind: "ip",
            value: ip.to_string(),
        });
    }
    if let Ok(net) = token.parse::<IpNet>() {
        return Some(Resource {
            kind: "cidr",
            value: net.trunc().to_string(),
        });
    }
    let domain = token.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    (domain.contains('.') && domain.split('.').all(label_ok)).then_some(Resource {
        kind: "domain",
        value: domain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_rows_become_records() {
        let csv = "reference,email,name,language,resources\nC1,Ann@Example.com,Ann,IT,example.com 192.0.2.1 2001:db8::1/48\n";
        let records = parse_accounts(Path::new("a.csv"), csv).unwrap();
        assert_eq!(records[0].email, "ann@example.com");
        assert_eq!(records[0].language, "it");
        assert_eq!(records[0].line, 2);
        let values: Vec<_> = records[0]
            .resources
            .iter()
            .map(|r| (r.kind, r.value.as_str()))
            .collect();
        assert_eq!(
            values,
            vec![
                ("cidr", "2001:db8::/48"),
                ("domain", "example.com"),
                ("ip", "192.0.2.1")
            ]
        );
    }

    #[test]
    fn every_bad_row_is_reported_by_line() {
        let csv = "reference,email,status\nC1,not-an-address,active\nC2,b@example.com,gone\nC1,c@example.com,\n";
        let problems = parse_accounts(Path::new("a.csv"), csv).unwrap_err();
        let lines: Vec<_> = problems.iter().map(|p| p.line.unwrap()).collect();
        assert_eq!(lines, vec![2, 3, 4], "{problems:#?}");
        assert!(problems[2].message.contains("already appears on line 2"));
    }

    #[test]
    fn unknown_column_is_named() {
        let problems = parse_accounts(Path::new("a.csv"), "reference,emial\n").unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.message == "unknown column `emial`"
                    && p.hint.as_deref() == Some("did you mean `email`?"))
        );
    }
}
