//! Config problems: all reported at once, with file, line and column, exit code 2.

mod common;

use common::{Desk, maildesk_with, stderr};

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
