//! Real malformed and oddly encoded messages: each is stored with its bytes unchanged,
//! nothing panics, and what cannot be handled automatically is flagged for staff.

mod common;

use std::path::Path;

use common::Desk;

fn fixtures(folder: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(common::REPO).join("tests/fixtures").join(folder);
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

fn ingest_all(folder: &str) {
    let desk = Desk::empty();
    let files = fixtures(folder);
    assert!(files.len() >= 12, "fixtures of {folder} are missing");
    for (i, (name, raw)) in files.iter().enumerate() {
        desk.deliver(&format!("17640000{i:02}.M{i}P1.{name}"), raw);
    }
    let summary = desk.ok(&["run", "--once"]);
    assert!(
        summary.contains(&format!(
            "stored {} message(s), 0 already stored, 0 failed",
            files.len()
        )),
        "{summary}"
    );
    let db = desk.db();
    for (name, raw) in &files {
        let sha = maildesk::sha256_hex(raw);
        let (stored, ticket): (Vec<u8>, Option<i64>) = db
            .query_row(
                "SELECT raw, ticket FROM messages WHERE direction = 'in' AND sha256 = ?1",
                [&sha],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap_or_else(|e| panic!("{name} not stored: {e}"));
        assert!(stored == *raw, "{name}: raw bytes changed");
        assert!(ticket.is_some(), "{name}: not on a ticket");
    }
    // Nothing was sent to a robot or to an address-less message.
    let answered: Vec<String> = db
        .prepare("SELECT recipient FROM outbox")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for recipient in &answered {
        assert!(
            !recipient.contains("mailer-daemon") && !recipient.contains("postmaster"),
            "answered a robot: {recipient}"
        );
    }
}

#[test]
fn malformed_messages_are_kept_raw() {
    ingest_all("malformed");
    let desk = Desk::empty();
    let (name, raw) = fixtures("malformed")
        .into_iter()
        .find(|(n, _)| n.contains("019-garbled-headers"))
        .unwrap();
    desk.deliver(&format!("1764000000.M1P1.{name}"), &raw);
    desk.ok(&["run", "--once"]);
    let tickets = desk.json(&["tickets", "list", "--json"]);
    assert_eq!(tickets[0]["needs_staff"], true, "{tickets:#}");
    assert!(desk.sent_mails().is_empty(), "no sender, no answer");
}

#[test]
fn messages_in_any_charset_are_kept_raw() {
    ingest_all("charsets");
}

#[test]
fn encoded_subjects_are_decoded_for_staff() {
    let desk = Desk::empty();
    for (name, raw) in fixtures("charsets") {
        if name.contains("012-windows1252") || name.contains("sample3-rfc2047") {
            desk.deliver(&format!("1764000000.M1P1.{name}"), &raw);
        }
    }
    desk.ok(&["run", "--once"]);
    let subjects: Vec<String> = desk
        .json(&["tickets", "list", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["subject"].as_str().unwrap().to_string())
        .collect();
    assert!(
        subjects.iter().any(|s| s.contains("Frösche")),
        "{subjects:?}"
    );
    assert!(
        subjects
            .iter()
            .any(|s| s == "Bundesliga: Kevin De Bruyne élu joueur de l'année !"),
        "{subjects:?}"
    );
}

#[test]
fn a_bounce_with_classic_mac_line_ends_is_recognised_and_not_answered() {
    let desk = Desk::empty();
    let (name, raw) = fixtures("malformed")
        .into_iter()
        .find(|(n, _)| n.contains("mac-cr-only"))
        .unwrap();
    assert!(!raw.contains(&b'\n'), "the fixture has CR-only line ends");
    desk.deliver(&format!("1764000000.M1P1.{name}"), &raw);
    desk.ok(&["run", "--once"]);
    let (automated, malformed): (Option<String>, Option<String>) = desk
        .db()
        .query_row(
            "SELECT automated, malformed FROM messages WHERE direction = 'in'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(malformed, None);
    assert!(automated.is_some(), "a DSN is automated mail");
    assert!(desk.sent_mails().is_empty());
}
