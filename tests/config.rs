//! Config problems: all reported at once, with file, line and column, exit code 2.

mod common;

use std::process::{Command, Output};

use common::cfg::{chmod, is_root, line_of, maildesk_as_nobody};
use common::{Desk, maildesk_with, stderr};

/// An IMAP mailbox beside the demo's Maildir; `secret` is its password line.
fn add_imap_mailbox(desk: &Desk, secret: &str) {
    desk.append_config(&format!(
        "[[mailbox]]\nname = \"imap-support\"\nrole = \"support\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\nuser = \"support\"\n{secret}\n"
    ));
}

fn config_text(desk: &Desk) -> String {
    std::fs::read_to_string(desk.config()).unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn read_only_commands_need_no_secret_but_check_and_run_refuse_without_it() {
    let desk = Desk::demo();
    // Reading commands never create the database: import the registry first.
    let accounts = desk.examples().join("accounts.csv");
    desk.ok(&["accounts", "import", accounts.to_str().unwrap()]);
    add_imap_mailbox(&desk, "password_env = \"MAILDESK_TEST_UNSET_PASSWORD\"");
    let text = config_text(&desk);
    let path = desk.config().display().to_string();
    let message = desk
        .maildir()
        .join("new")
        .join(desk.files_in("new")[0].clone());
    let read_only: [&[&str]; 4] = [
        &["tickets", "list"],
        &["accounts", "list"],
        &["config"],
        &["rules", "test", message.to_str().unwrap()],
    ];
    for args in read_only {
        desk.ok(args);
    }
    let expected = format!(
        "{path}:{}:16: error: environment variable MAILDESK_TEST_UNSET_PASSWORD is not set\n  hint: set it in the daemon's environment (e.g. systemd EnvironmentFile=)",
        line_of(&text, "MAILDESK_TEST_UNSET_PASSWORD")
    );
    check_and_run_refuse(&desk, &expected);
    assert_eq!(
        desk.files_in("cur"),
        Vec::<String>::new(),
        "run did nothing"
    );

    // A password file that cannot be read: a directory in its place fails even for root.
    std::fs::create_dir(desk.examples().join("imap.pass")).unwrap();
    desk.edit_config(
        "password_env = \"MAILDESK_TEST_UNSET_PASSWORD\"",
        "password_file = \"imap.pass\"",
    );
    let text = config_text(&desk);
    for args in read_only {
        desk.ok(args);
    }
    let expected = format!(
        "{path}:{}:17: error: password_file {} cannot be read: Is a directory (os error 21)\n  hint: make it a file readable by the user maildesk runs as",
        line_of(&text, "imap.pass"),
        desk.examples().join("imap.pass").display()
    );
    check_and_run_refuse(&desk, &expected);
    assert_eq!(
        desk.files_in("cur"),
        Vec::<String>::new(),
        "run did nothing"
    );
}

#[test]
fn check_and_run_refuse_what_the_service_user_cannot_read_or_write() {
    let desk = Desk::demo();
    // Created by root (or the test's user): the database and its directory.
    desk.ok(&["run", "--once"]);
    let secret = desk.examples().join("imap.pass");
    std::fs::write(&secret, "s3cret\n").unwrap();
    chmod(&secret, 0o600);
    if !is_root() {
        chmod(&desk.examples(), 0o555);
    }
    add_imap_mailbox(&desk, "password_file = \"imap.pass\"");
    let text = config_text(&desk);
    let path = desk.config().display().to_string();
    desk.deliver(
        "1763900000.M1P9.demo",
        b"From: a@example.com\r\nSubject: hi\r\n\r\nhello\r\n",
    );
    let expected = [
        format!(
            "{path}:{}:17: error: password_file {} cannot be read: Permission denied (os error 13)",
            line_of(&text, "imap.pass"),
            secret.display()
        ),
        format!(
            "{path}:{}:12: error: database {} is not writable: {}: Permission denied (os error 13)",
            line_of(&text, "database ="),
            desk.examples().join("demo.db").display(),
            desk.examples().display()
        ),
    ];
    for args in [&["check"][..], &["run", "--once"]] {
        let out = maildesk_as_nobody(&desk, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        for line in &expected {
            assert!(
                stderr(&out).contains(line),
                "{args:?}: missing {line}\n{}",
                stderr(&out)
            );
        }
    }
    assert_eq!(
        desk.files_in("new"),
        vec!["1763900000.M1P9.demo"],
        "run did nothing"
    );
    chmod(&desk.examples(), 0o755);
}

#[test]
fn check_and_run_refuse_a_database_that_is_a_directory_or_from_a_newer_maildesk() {
    let desk = Desk::demo();
    let database = desk.examples().join("demo.db");
    let text = config_text(&desk);
    let at = format!(
        "{}:{}:12: error: database",
        desk.config().display(),
        line_of(&text, "database =")
    );
    std::fs::create_dir(&database).unwrap();
    let expected = format!(
        "{at} {0} is not writable: {0}: Is a directory (os error 21)\n  hint: run maildesk as the user that owns the database",
        database.display()
    );
    check_and_run_refuse(&desk, &expected);
    std::fs::remove_dir(&database).unwrap();

    rusqlite::Connection::open(&database)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99;")
        .unwrap();
    let expected = format!(
        "{at} {} has schema version 99, newer than this maildesk understands ({})\n  hint: run the newer maildesk that wrote it, or restore a backup made by this version",
        database.display(),
        maildesk::store::LATEST_VERSION
    );
    check_and_run_refuse(&desk, &expected);
    assert_eq!(
        desk.files_in("cur"),
        Vec::<String>::new(),
        "run did nothing"
    );
}

#[test]
fn settings_that_do_not_apply_to_the_kind_are_refused_where_written() {
    let desk = Desk::demo();
    desk.edit_config(
        "kind = \"maildir\"\npath = \"maildir\"",
        "kind = \"maildir\"\npath = \"maildir\"\nfolder = \"INBOX\"\nprocessed_folder = \"Done\"",
    );
    desk.edit_config("dir = \"out/mail\"", "dir = \"out/mail\"\nport = 25");
    let text = config_text(&desk);
    let path = desk.config().display().to_string();
    for args in [&["check"][..], &["tickets", "list"]] {
        let out = desk.maildesk(args);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        for (needle, message) in [
            (
                "folder =",
                "`folder` only applies to kind = \"imap\"\n  hint: remove it, or set kind = \"imap\"",
            ),
            (
                "processed_folder =",
                "`processed_folder` only applies to kind = \"imap\"",
            ),
            (
                "port = 25",
                "`port` only applies to transport = \"smtp\"\n  hint: remove it, or set transport = \"smtp\"",
            ),
        ] {
            let expected = format!("{path}:{}:1: error: {message}", line_of(&text, needle));
            assert!(err.contains(&expected), "missing {expected}\n{err}");
        }
        assert_eq!(err.matches("error:").count(), 3, "{err}");
    }
}

#[test]
fn config_prints_every_default_and_no_secret_and_reads_back_the_same() {
    let desk = Desk::demo();
    add_imap_mailbox(&desk, "password_env = \"MAILDESK_TEST_CONFIG_SECRET\"");
    std::fs::write(desk.examples().join("smtp.pass"), "file-secret-42\n").unwrap();
    desk.edit_config(
        "[outgoing]\ntransport = \"file\"\ndir = \"out/mail\"",
        "[outgoing]\ntransport = \"smtp\"\nhost = \"127.0.0.1\"\nuser = \"desk\"\npassword_file = \"smtp.pass\"",
    );
    let run = |config: &std::path::Path, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_maildesk"))
            .arg("--config")
            .arg(config)
            .args(args)
            .env("MAILDESK_TEST_CONFIG_SECRET", "env-secret-17")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = run(&desk.config(), &["config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    for secret in ["env-secret-17", "file-secret-42"] {
        assert!(!printed.contains(secret), "{secret} shown:\n{printed}");
    }
    let table: toml::Table = printed.parse().unwrap();
    let examples = desk.examples().display().to_string();
    assert_eq!(
        table["database"].as_str(),
        Some(&*format!("{examples}/demo.db"))
    );
    assert_eq!(table["limits"]["per_address"].as_integer(), Some(5));
    assert_eq!(
        table["time"]["business_hours"].as_str(),
        Some("08:00-18:00")
    );
    assert_eq!(table["time"]["zone"].as_str(), Some("Europe/Rome"));
    assert_eq!(table["desk"]["default_language"].as_str(), Some("en"));
    let maildir = &table["mailbox"][0];
    assert_eq!(
        maildir["path"].as_str(),
        Some(&*format!("{examples}/maildir"))
    );
    assert!(maildir.get("folder").is_none(), "{printed}");
    let imap = &table["mailbox"][1];
    for (key, value) in [
        ("security", "tls"),
        ("folder", "INBOX"),
        ("after", "move"),
        ("processed_folder", "Processed"),
        ("initial_sync", "import-silently"),
        ("auth", "login"),
        ("password_env", "MAILDESK_TEST_CONFIG_SECRET"),
    ] {
        assert_eq!(imap[key].as_str(), Some(value), "{key} in {printed}");
    }
    assert_eq!(imap["port"].as_integer(), Some(993));
    assert_eq!(imap["batch_size"].as_integer(), Some(500));
    assert_eq!(
        imap["max_message_bytes"].as_integer(),
        Some(25 * 1024 * 1024)
    );
    assert_eq!(imap["allow_plaintext"].as_bool(), Some(false));
    let smtp = &table["outgoing"];
    assert_eq!(smtp["security"].as_str(), Some("starttls"));
    assert_eq!(smtp["port"].as_integer(), Some(587));
    assert_eq!(smtp["max_age_hours"].as_integer(), Some(48));
    assert_eq!(
        smtp["password_file"].as_str(),
        Some(&*format!("{examples}/smtp.pass"))
    );
    assert!(smtp.get("dir").is_none(), "{printed}");

    // Read back from elsewhere, the printout is the same configuration, and a valid one.
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("printed.toml");
    std::fs::write(&copy, &printed).unwrap();
    let again = run(&copy, &["config"]);
    assert!(again.status.success(), "{}", stderr(&again));
    let body = |s: &str| s.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&stdout(&again)), body(&printed));
    let check = run(&copy, &["check"]);
    assert!(check.status.success(), "{}", stderr(&check));
}

#[test]
fn check_shows_every_problem_of_the_accounts_file_with_its_line() {
    let desk = Desk::empty();
    let csv = desk.examples().join("accounts.csv");
    desk.ok(&["accounts", "import", csv.to_str().unwrap()]);
    let good = std::fs::read_to_string(&csv).unwrap();
    std::fs::write(
        &csv,
        format!("{good}C1005,not-an-address,Bad,en,active,true,\nC1006,web@agency.example,Agency,en,active,true,shop.janedoe.example 192.0.2.0/24\n"),
    )
    .unwrap();
    let out = desk.maildesk(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let path = csv.display().to_string();
    assert!(
        err.contains(&format!(
            "{path}:6: error: \"not-an-address\" is not an email address"
        )),
        "{err}"
    );
    // Syntax first: overlaps are looked for in a file whose rows all read.
    std::fs::write(
        &csv,
        format!("{good}C1006,web@agency.example,Agency,en,active,true,shop.janedoe.example 192.0.2.0/24\n"),
    )
    .unwrap();
    let err = stderr(&desk.maildesk(&["check"]));
    for expected in [
        format!(
            "{path}:6: error: cidr 192.0.2.0/24 of account C1006 contains ip 192.0.2.10 of account C1001 on line 2"
        ),
        format!(
            "{path}:6: error: domain shop.janedoe.example of account C1006 is under domain janedoe.example of account C1002 on line 3"
        ),
    ] {
        assert!(err.contains(&expected), "missing {expected}\n{err}");
    }
    assert!(
        err.contains("hint: each address and resource belongs to one account"),
        "{err}"
    );
    assert_eq!(
        desk.json(&["accounts", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

#[test]
fn unknown_key_wrong_type_and_missing_file_are_all_reported() {
    let desk = Desk::demo();
    let config = desk.config();
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .replace(
            "rules_dir = \"../rules\"",
            "rules_dir = \"../no-such-rules\"",
        )
        .replace(
            "default_language = \"en\"",
            "default_language = \"en\"\ndefualt_lang = \"it\"",
        )
        .replace("poll_interval_secs = 30", "poll_interval_secs = \"often\"");
    std::fs::write(&config, &text).unwrap();
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;

    let out = maildesk_with(&config, &["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    let path = config.display().to_string();
    assert!(
        err.contains(&format!(
            "{path}:{}:1: error: unknown field `defualt_lang`",
            line_of("defualt_lang")
        )),
        "{err}"
    );
    assert!(
        err.contains("hint: did you mean `default_language`?"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{path}:{}:22: error: invalid type: string \"often\"",
            line_of("poll_interval_secs")
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{path}:{}:13: error: rules_dir",
            line_of("no-such-rules")
        )),
        "{err}"
    );
    assert!(err.contains("does not exist"), "{err}");
    assert!(
        err.contains("hint: write a whole number, without quotes"),
        "{err}"
    );
    assert_eq!(
        err.matches("error:").count(),
        3,
        "exactly the three problems: {err}"
    );
    // The same problems stop every command, not only `check`.
    assert_eq!(
        maildesk_with(&config, &["run", "--once"]).status.code(),
        Some(2)
    );
    assert!(desk.files_in("cur").is_empty(), "nothing was processed");
}

#[test]
fn kind_specific_fields_and_addresses_are_checked() {
    let desk = Desk::demo();
    let config = desk.config();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(
            "support_address = \"support@acme-hosting.example\"",
            "support_address = \"ACME support\"",
        )
        .replace(
            "kind = \"maildir\"\npath = \"maildir\"",
            "kind = \"imap\"\npath = \"maildir\"",
        );
    std::fs::write(&config, &text).unwrap();
    let out = maildesk_with(&config, &["check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for expected in [
        "\"ACME support\" is not an email address",
        "an imap mailbox needs `host`",
        "an imap mailbox needs `user`",
        "a password is needed: password_file or password_env",
        "`path` only applies to kind = \"maildir\"",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn syntax_error_is_located() {
    let desk = Desk::demo();
    let config = desk.config();
    std::fs::write(&config, "database = \"x.db\"\n[desk\nname = 1\n").unwrap();
    let out = maildesk_with(&config, &["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!("{}:2:", config.display())),
        "{}",
        stderr(&out)
    );
}

#[test]
fn missing_config_file_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = maildesk_with(&dir.path().join("nope.toml"), &["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot read config"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_accepts_the_demo_and_reports_broken_templates() {
    let desk = Desk::demo();
    let out = desk.ok(&["check"]);
    assert!(out.contains("ok"), "{out}");
    // As the config names it: relative to the config file's directory.
    let template = desk.examples().join("../templates/fr/support_ack.txt");
    std::fs::write(
        &template,
        "Subject: {{ ticket.tag }}\nAudience: account\n\nBonjour {{ account.nom }}\n{% if %}\n",
    )
    .unwrap();
    let out = desk.maildesk(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}:5: error: template syntax", template.display())),
        "{err}"
    );
    std::fs::write(
        &template,
        "Subject: {{ ticket.tag }}\nAudience: account\n\nBonjour {{ account.nom }}\n",
    )
    .unwrap();
    let err = stderr(&desk.maildesk(&["check"]));
    assert!(
        err.contains(&format!(
            "{}:4: error: fr/support_ack: `account.nom` is undefined",
            template.display()
        )),
        "{err}"
    );
}

#[test]
fn password_comes_from_a_file_or_the_environment() {
    let desk = Desk::demo();
    let config = desk.config();
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[outgoing]\ntransport = \"file\"\ndir = \"out/mail\"",
        "[outgoing]\ntransport = \"smtp\"\nhost = \"127.0.0.1\"\nuser = \"desk\"\npassword_env = \"MAILDESK_TEST_UNSET_VARIABLE\"",
    );
    std::fs::write(&config, &text).unwrap();
    let err = stderr(&maildesk_with(&config, &["check"]));
    assert!(
        err.contains("environment variable MAILDESK_TEST_UNSET_VARIABLE is not set"),
        "{err}"
    );
    std::fs::write(
        &config,
        text.replace(
            "password_env = \"MAILDESK_TEST_UNSET_VARIABLE\"",
            "password_file = \"smtp.pass\"",
        ),
    )
    .unwrap();
    let err = stderr(&maildesk_with(&config, &["check"]));
    assert!(
        err.contains("password_file") && err.contains("smtp.pass does not exist"),
        "{err}"
    );
    std::fs::write(desk.examples().join("smtp.pass"), "s3cret\n").unwrap();
    assert!(maildesk_with(&config, &["check"]).status.success());
}

/// `check` and `run --once` both stop on the configuration (exit 2) and say `expected`.
fn check_and_run_refuse(desk: &Desk, expected: &str) {
    for args in [&["check"][..], &["run", "--once"]] {
        let out = desk.maildesk(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}
