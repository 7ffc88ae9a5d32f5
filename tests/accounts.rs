//! `maildesk accounts import` and `list`: idempotent upserts, all rows or none.

mod common;

use common::{Desk, stderr};

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
