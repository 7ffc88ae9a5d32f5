//! `maildesk accounts import` and `list`: idempotent upserts, all rows or none.

mod common;

use std::time::Duration;

use common::{Desk, header, stderr, wait_for};

#[test]
fn import_is_idempotent_and_reports_changes() {
    let desk = Desk::empty();
    let csv = desk.examples().join("accounts.csv");
    let csv_arg = csv.to_str().unwrap();
    let first = desk.ok(&["accounts", "import", csv_arg]);
    assert!(
        first.contains("4 created, 0 updated, 0 unchanged"),
        "{first}"
    );
    let again = desk.ok(&["accounts", "import", csv_arg]);
    assert!(
        again.contains("0 created, 0 updated, 4 unchanged"),
        "{again}"
    );

    let text = std::fs::read_to_string(&csv)
        .unwrap()
        .replace("Jane Doe,en", "Jane Doe-Smith,en");
    std::fs::write(&csv, text).unwrap();
    let third = desk.ok(&["accounts", "import", csv_arg]);
    assert!(
        third.contains("0 created, 1 updated, 3 unchanged"),
        "{third}"
    );
    let events: Vec<String> = desk
        .db()
        .prepare("SELECT kind || ' ' || detail FROM events WHERE kind LIKE 'account.%' ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(events.len(), 5, "{events:?}");
    assert_eq!(
        events[4],
        "account.updated name: \"Jane Doe\" -> \"Jane Doe-Smith\""
    );

    let accounts = desk.json(&["accounts", "list", "--json"]);
    let jane = accounts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["reference"] == "C1002")
        .unwrap();
    assert_eq!(jane["name"], "Jane Doe-Smith");
    assert_eq!(jane["email"], "jane.doe@janedoe.example");
    assert_eq!(jane["resources"][0]["value"], "janedoe.example");
    let text = desk.ok(&["accounts", "list"]);
    assert!(
        text.contains("C1003") && text.contains("claire.martin@boulangerie-martin.example"),
        "{text}"
    );
}

#[test]
fn a_file_with_bad_rows_imports_nothing() {
    let desk = Desk::empty();
    let csv = desk.examples().join("bad.csv");
    std::fs::write(
        &csv,
        "reference,email,name,language,status,details_valid,resources\n\
         C1,good@example.com,Good,en,active,true,good.example\n\
         C2,not an address,Bad,en,active,true,\n\
         C3,c3@example.com,Bad,english,paused,maybe,300.1.1.1/99\n",
    )
    .unwrap();
    let out = desk.maildesk(&["accounts", "import", csv.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let path = csv.display().to_string();
    assert!(
        err.contains(&format!(
            "{path}:3: error: \"not an address\" is not an email address"
        )),
        "{err}"
    );
    for problem in [
        "language \"english\"",
        "status \"paused\"",
        "details_valid \"maybe\"",
        "resource \"300.1.1.1/99\"",
    ] {
        assert!(
            err.contains(&format!("{path}:4: error: {problem}")),
            "missing {problem}: {err}"
        );
    }
    assert!(err.contains("nothing was imported"), "{err}");
    assert_eq!(
        desk.json(&["accounts", "list", "--json"]),
        serde_json::json!([])
    );
}

#[test]
fn an_address_registered_to_another_account_is_refused() {
    let desk = Desk::empty();
    desk.ok(&[
        "accounts",
        "import",
        desk.examples().join("accounts.csv").to_str().unwrap(),
    ]);
    let csv = desk.examples().join("clash.csv");
    std::fs::write(
        &csv,
        "reference,email\nC9,new@example.com\nC8,jane.doe@janedoe.example\n",
    )
    .unwrap();
    let out = desk.maildesk(&["accounts", "import", csv.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            ":3: error: email jane.doe@janedoe.example is already registered to account C1002"
        ),
        "{}",
        stderr(&out)
    );
    let accounts = desk.json(&["accounts", "list", "--json"]);
    assert_eq!(
        accounts.as_array().unwrap().len(),
        4,
        "C9 was not imported either"
    );
}

#[test]
fn two_accounts_can_swap_addresses_in_one_import() {
    let desk = Desk::empty();
    let csv = desk.examples().join("accounts.csv");
    desk.ok(&["accounts", "import", csv.to_str().unwrap()]);
    let text = std::fs::read_to_string(&csv)
        .unwrap()
        .replace("mario.rossi@pizzeria-rossi.example", "SWAP")
        .replace(
            "jane.doe@janedoe.example",
            "mario.rossi@pizzeria-rossi.example",
        )
        .replace("SWAP", "jane.doe@janedoe.example");
    std::fs::write(&csv, text).unwrap();
    let out = desk.ok(&["accounts", "import", csv.to_str().unwrap()]);
    assert!(out.contains("0 created, 2 updated, 2 unchanged"), "{out}");
    let accounts = desk.json(&["accounts", "list", "--json"]);
    let email = |reference: &str| {
        accounts
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["reference"] == reference)
            .unwrap()["email"]
            .clone()
    };
    assert_eq!(email("C1001"), "jane.doe@janedoe.example");
    assert_eq!(email("C1002"), "mario.rossi@pizzeria-rossi.example");
    let details: Vec<String> = desk
        .db()
        .prepare("SELECT detail FROM events WHERE kind = 'account.updated' ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        details,
        vec![
            "email: \"mario.rossi@pizzeria-rossi.example\" -> \"jane.doe@janedoe.example\"",
            "email: \"jane.doe@janedoe.example\" -> \"mario.rossi@pizzeria-rossi.example\"",
        ]
    );
}

#[test]
fn a_resource_overlapping_another_accounts_is_refused_naming_both() {
    let desk = Desk::empty();
    let csv = desk.examples().join("accounts.csv");
    desk.ok(&["accounts", "import", csv.to_str().unwrap()]);
    let new = desk.examples().join("new.csv");
    std::fs::write(
        &new,
        "reference,email,resources\n\
         C2001,a@agency.example,agency.example\n\
         C2002,b@agency.example,198.51.100.8\n\
         C2003,c@agency.example,blog.bigshop.example 203.0.113.0/24\n",
    )
    .unwrap();
    let out = desk.maildesk(&["accounts", "import", new.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let path = new.display().to_string();
    for expected in [
        format!(
            "{path}:3: error: ip 198.51.100.8 of account C2002 is inside cidr 198.51.100.0/28 of account C1003 (registered)"
        ),
        format!(
            "{path}:4: error: cidr 203.0.113.0/24 of account C2003 contains ip 203.0.113.5 of account C1004 (registered)"
        ),
        format!(
            "{path}:4: error: domain blog.bigshop.example of account C2003 is under domain bigshop.example of account C1004 (registered)"
        ),
    ] {
        assert!(err.contains(&expected), "missing {expected}\n{err}");
    }
    assert_eq!(err.matches("error:").count(), 3, "{err}");
    let accounts = desk.json(&["accounts", "list", "--json"]);
    assert_eq!(
        accounts.as_array().unwrap().len(),
        4,
        "C2001 was not imported either"
    );
}

/// The staff notices about the accounts file among the mails sent.
fn accounts_notices(desk: &Desk) -> Vec<String> {
    desk.sent_mails()
        .into_iter()
        .filter(|m| header(m, "Subject").is_some_and(|s| s.contains("accounts_file")))
        .collect()
}

fn health(desk: &Desk) -> serde_json::Value {
    std::fs::read_to_string(desk.examples().join("demo.health.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null)
}

fn name_of(desk: &Desk, reference: &str) -> String {
    let accounts = desk.json(&["accounts", "list", "--json"]);
    accounts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["reference"] == reference)
        .map(|a| a["name"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

#[test]
fn a_bad_accounts_file_never_stops_the_desk_and_is_imported_once_corrected() {
    let desk = Desk::empty();
    desk.edit_config("poll_interval_secs = 30", "poll_interval_secs = 1");
    let csv = desk.examples().join("accounts.csv");
    desk.ok(&["accounts", "import", csv.to_str().unwrap()]);
    let renamed = std::fs::read_to_string(&csv)
        .unwrap()
        .replace("Jane Doe,en", "Jane Doe-Smith,en");
    let bad_row = "C1005,web@agency.example,Agency,en,active,true,192.0.2.0/24\n";
    std::fs::write(&csv, format!("{renamed}{bad_row}")).unwrap();

    let daemon = desk.spawn_daemon();
    let limit = Duration::from_secs(20);
    desk.deliver(
        "1763900000.M1P9.demo",
        b"From: mario.rossi@pizzeria-rossi.example\r\nTo: support@acme-hosting.example\r\nSubject: Domain renewal\r\nMessage-ID: <renew@pizzeria-rossi.example>\r\n\r\nWhen does my domain expire?\r\n",
    );
    wait_for("the customer's acknowledgement", limit, || {
        desk.sent_mails().iter().any(|m| {
            header(m, "To").as_deref() == Some("mario.rossi@pizzeria-rossi.example")
                && header(m, "Subject").is_some_and(|s| s.contains("[ACME #1]"))
        })
    });
    wait_for("the notice to staff", limit, || {
        accounts_notices(&desk).len() == 1
    });
    let notice = &accounts_notices(&desk)[0];
    assert_eq!(
        header(notice, "To").as_deref(),
        Some("luca@acme-hosting.example")
    );
    assert_eq!(
        name_of(&desk, "C1002"),
        "Jane Doe",
        "the registry is as it was"
    );
    assert_eq!(
        name_of(&desk, "C1005"),
        "",
        "no row of the file was imported"
    );
    let problem = format!(
        "{}:6: error: cidr 192.0.2.0/24 of account C1005 contains ip 192.0.2.10 of account C1001 on line 2\n  hint: each address and resource belongs to one account: correct one of the two",
        csv.display()
    );
    let refused = health(&desk)["accounts_rejected"].clone();
    assert_eq!(refused["problems"][0], problem, "{refused}");
    let out = desk.maildesk(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&problem), "{err}");
    assert!(
        err.contains(&format!(
            "the daemon (pid {}) refused the accounts_file at",
            daemon.id()
        )),
        "{err}"
    );

    // The same refusal again, on SIGHUP: recorded, not told twice.
    let hangup = || {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &daemon.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    hangup();
    wait_for("the refusal to be recorded again", limit, || {
        let again = health(&desk)["accounts_rejected"].clone();
        again.is_object() && again["at"] != refused["at"]
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(accounts_notices(&desk).len(), 1, "one notice per refusal");

    // Corrected: imported on the change, without a restart.
    std::fs::write(&csv, &renamed).unwrap();
    wait_for("the corrected file to be imported", limit, || {
        name_of(&desk, "C1002") == "Jane Doe-Smith"
    });
    wait_for("the health file to clear", limit, || {
        health(&desk)["accounts_rejected"].is_null()
    });

    // On SIGHUP too: a change that keeps the size and the time stamp is seen only then.
    let modified = std::fs::metadata(&csv).unwrap().modified().unwrap();
    std::fs::write(&csv, renamed.replace("Jane Doe-Smith", "Jane Doe-Smyth")).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&csv)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    hangup();
    wait_for("the import on SIGHUP", limit, || {
        name_of(&desk, "C1002") == "Jane Doe-Smyth"
    });

    let log = common::terminate(daemon);
    assert!(log.contains("accounts_file refused"), "{log}");
    assert!(log.contains(&problem), "{log}");
    assert_eq!(accounts_notices(&desk).len(), 1);
}
