//! The rules engine, table-driven and black-box: (message, rules) -> expected decisions.
//!
//! Every case runs the real binary on a private copy of the demo whose rules directory
//! holds one rule file written by the case, as `maildesk rules test MESSAGE --json`, and
//! checks which rules matched and why, the decisions (effects) and the mails that would
//! be written. Every condition and every action is covered, each with a negative control
//! (the same rules and a message that must not match). Two more tests run the real
//! pipeline (`run --once`) and check the database rows the actions write, and that
//! `rules test` changes nothing.

mod common;

use std::path::Path;

use common::Desk;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------

// The demo's mails (examples/maildir/new).

/// Italian, registered: "Sito completamente down da stamattina".
const MARIO_DOWN: &str = "1763802000.M100001P4242.demo";
const JANE_SMTP: &str = "1763802300.M100002P4242.demo"; // en, registered, Reply-To elsewhere
const CURIOUS: &str = "1763802600.M100003P4242.demo"; // en, unregistered
const CLAIRE_SSL: &str = "1763803200.M100005P4242.demo"; // fr, registered, RFC 2047 + QP latin-1
const BIGSHOP_OOF: &str = "1763803500.M100006P4242.demo"; // registered, Auto-Submitted
const GARBAGE: &str = "1763803800.M100007P4242.demo"; // no header at all

/// Real messages from the shared corpus, copied unchanged (see tests/fixtures/rules/SOURCES.md).
const ARF_AOL: &str = "abuseio-fbl-aol-1.eml";
const PHISHING_FR: &str = "cerberus-lexsi-phishing-fr.eml";
const COPYRIGHT_XML: &str = "abuseio-ipechelon-1-copyright.eml";
const GMAIL_ALTERNATIVE: &str = "talon-gmail.eml";
const NDR_ITALIAN: &str = "sisimai-exchange2007-07-italian.eml";

/// Crafted messages (LF here, written with CRLF).
const STAFF_NOTE: &str = "From: Luca <Luca@ACME-Hosting.example>
To: support@acme-hosting.example
Subject: Note for the team
Message-ID: <staff-note-1@acme-hosting.example>

Internal note: the new mail cluster goes live on Monday morning, please warn customers.
";

/// From a registered address, but the receiving server says DMARC failed.
const FORGED_JANE: &str = "Authentication-Results: mx.test; spf=pass smtp.mailfrom=relay.example; dmarc=fail header.from=janedoe.example
From: Jane Doe <jane.doe@janedoe.example>
To: support@acme-hosting.example
Subject: Please change the email address of my account
Message-ID: <forged-1@relay.example>

Hello, please change the registered email address of my account to jane@attacker.example. Thanks.
";

/// SPF failed, but a good DKIM signature proves the sender: still the customer.
const JANE_SPF_FAIL_DKIM_PASS: &str = "Authentication-Results: mx.test; spf=fail smtp.mailfrom=janedoe.example; dkim=pass header.d=janedoe.example
From: Jane Doe <jane.doe@janedoe.example>
To: support@acme-hosting.example
Subject: Forwarded mail problem
Message-ID: <spf-fail-dkim-pass@janedoe.example>

Hello, my mail forwarded through the university server seems to get lost, could you check?
";

/// SPF failed and nothing else vouches for the sender: not trusted as the customer.
const JANE_SPF_FAIL: &str =
    "Authentication-Results: mx.test; spf=fail smtp.mailfrom=janedoe.example
From: Jane Doe <jane.doe@janedoe.example>
To: support@acme-hosting.example
Subject: Forwarded mail problem
Message-ID: <spf-fail@janedoe.example>

Hello, my mail forwarded through the university server seems to get lost, could you check?
";

/// From the suspended and the closed account added by [`Setup::BlockedAccounts`].
const FROM_SUSPENDED: &str = "From: Gianni Sospeso <gianni@sospeso.example>
To: support@acme-hosting.example
Subject: Perché il mio sito è sospeso?
Message-ID: <sospeso-1@sospeso.example>

Buongiorno, da ieri il nostro sito mostra una pagina di sospensione. Potete spiegarci il motivo?
";
const FROM_CLOSED: &str = "From: Old Customer <old@closed-shop.example>
To: support@acme-hosting.example
Subject: Can I get my old backups?
Message-ID: <closed-1@closed-shop.example>

Hello, our contract ended last month. Could we still download the backups of our website?
";

/// Two Received and two X-Ticket-Source headers, a Cc in capitals, an encoded subject.
const MANY_HEADERS: &str = "Received: from mx1.relay.example by mx.acme-hosting.example
Received: from laptop.janedoe.example by mx1.relay.example
From: Jane Doe <jane.doe@janedoe.example>
To: support@acme-hosting.example
Cc: \"Billing\" <Billing@ACME-Hosting.example>, ops@janedoe.example
Subject: =?utf-8?q?Fattura_sbagliata?=
X-Ticket-Source: webform
X-Ticket-Source: phone-callback
Message-ID: <headers-1@janedoe.example>

Hello, my invoice for November shows a wrong amount, could you check it please?
";

/// A registered customer's mail with a file attached.
const JANE_WITH_ATTACHMENT: &str = "From: Jane Doe <jane.doe@janedoe.example>
To: support@acme-hosting.example
Subject: Wrong amount on my bill
Message-ID: <attachment-1@janedoe.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=\"b1\"

--b1
Content-Type: text/plain; charset=utf-8

Hello, the attached notes show the wrong amount charged for my hosting plan.
--b1
Content-Type: text/plain; name=\"notes.txt\"
Content-Disposition: attachment; filename=\"notes.txt\"

charged 120 EUR instead of 80 EUR
--b1--
";

const TOO_SHORT: &str = "From: Jane Doe <jane.doe@janedoe.example>
To: support@acme-hosting.example
Subject: ok
Message-ID: <short-1@janedoe.example>

ok
";

/// Follow-ups, for a desk that has run the demo once (tickets 1 Mario, 2 Jane, 3 curious).
const MARIO_FOLLOW_UP: &str = "From: Mario Rossi <mario.rossi@pizzeria-rossi.example>
To: support@acme-hosting.example
Subject: Re: Sito completamente down da stamattina
Message-ID: <follow-up-1@pizzeria-rossi.example>
In-Reply-To: <20261122094000.1@pizzeria-rossi.example>
References: <20261122094000.1@pizzeria-rossi.example>

Il sito adesso risponde di nuovo, ma la posta non arriva ancora. Grazie per il vostro aiuto.
";
const JANE_TAGGED_FOLLOW_UP: &str = "From: Jane Doe <jane.doe@janedoe.example>
To: support@acme-hosting.example
Subject: Re: [ACME #2] Cannot send mail from my mailbox (SMTP auth error)
Message-ID: <follow-up-2@janedoe.example>

It works again since this morning, thank you. You can close the ticket.
";
/// A stranger answering Jane's thread, by Message-ID and by tag: may not join it.
const STRANGER_IN_JANES_THREAD: &str = "From: Someone Curious <curious@freemail.example>
To: support@acme-hosting.example
Subject: Re: Cannot send mail from my mailbox (SMTP auth error)
Message-ID: <sneaky-1@freemail.example>
In-Reply-To: <CAJd0e-77f1@mail.janedoe.example>

I am helping Jane with her mail, please send me her SMTP password.
";
const STRANGER_WITH_JANES_TAG: &str = "From: Someone Curious <curious@freemail.example>
To: support@acme-hosting.example
Subject: Re: [ACME #2] Cannot send mail from my mailbox (SMTP auth error)
Message-ID: <sneaky-2@freemail.example>

I am helping Jane with her mail, please send me her SMTP password.
";

const JANE_CLOSE_ACCOUNT: &str = "From: Jane Doe <jane.doe@janedoe.example>
To: support@acme-hosting.example
Subject: Please close my account
Message-ID: <close-1@janedoe.example>

Hello, I am moving my website elsewhere: please close my account at the end of the month.
";
const STRANGER_CLOSE_ACCOUNT: &str = "From: Someone Curious <curious@freemail.example>
To: support@acme-hosting.example
Subject: Please close the account of janedoe.example
Message-ID: <close-2@freemail.example>

Hello, Jane asked me to tell you: please close the account of janedoe.example at once.
";

#[derive(Clone, Copy)]
enum Msg {
    /// A demo mail, by file name.
    Demo(&'static str),
    /// A file of tests/fixtures/rules/.
    Fixture(&'static str),
    /// A crafted message.
    Inline(&'static str),
}

impl Msg {
    /// Read from a fresh demo copy (its mails are all in new/ then).
    fn bytes(self, desk: &Desk) -> Vec<u8> {
        match self {
            Msg::Demo(name) => std::fs::read(desk.maildir().join("new").join(name))
                .unwrap_or_else(|e| panic!("demo mail {name}: {e}")),
            Msg::Fixture(name) => {
                std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
            }
            Msg::Inline(text) => crlf(text),
        }
    }
}

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(common::REPO)
        .join("tests/fixtures/rules")
        .join(name)
}

fn crlf(text: &str) -> Vec<u8> {
    text.replace('\n', "\r\n").into_bytes()
}

// ---------------------------------------------------------------------------------------
// The desk a case runs on
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Setup {
    /// The demo as it is, no database (`rules test` uses an in-memory one).
    Fresh,
    /// The demo's 7 mails stored first by `run --once` with [`SEED_RULES`]:
    /// ticket 1 Mario (category outage), 2 Jane, 3 the stranger.
    DemoRun,
    /// As `DemoRun`, then Jane's ticket resolved.
    DemoRunJaneResolved,
    /// A second mailbox, `abuse-desk`, with role abuse.
    AbuseMailbox,
    /// accounts.csv gains a suspended and a closed account.
    BlockedAccounts,
}

/// The rules the demo's mails are stored with before a follow-up is tested.
const SEED_RULES: &str = r#"
[[rule]]
name = "seed-outage"
when.subject = '(?i)\bdown\b'
then.category = "outage"
"#;

fn prepare(desk: &Desk, setup: Setup) {
    match setup {
        Setup::Fresh => {}
        Setup::DemoRun | Setup::DemoRunJaneResolved => {
            install_rules(desk, SEED_RULES);
            desk.ok(&["run", "--once"]);
            if setup == Setup::DemoRunJaneResolved {
                let changed = desk
                    .db()
                    .execute(
                        "UPDATE tickets SET status = 'resolved'
                          WHERE number = 2 AND requester = 'jane.doe@janedoe.example'",
                        [],
                    )
                    .expect("resolve");
                assert_eq!(
                    changed, 1,
                    "the demo run should make Jane's ticket number 2"
                );
            }
        }
        Setup::AbuseMailbox => add_abuse_mailbox(desk),
        Setup::BlockedAccounts => {
            let file = desk.examples().join("accounts.csv");
            let mut text = std::fs::read_to_string(&file).expect("accounts.csv");
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(
                "C1005,gianni@sospeso.example,Gianni Sospeso,it,suspended,true,sospeso.example\n",
            );
            text.push_str(
                "C1006,old@closed-shop.example,Old Customer,en,closed,true,closed-shop.example\n",
            );
            std::fs::write(&file, text).expect("write accounts.csv");
        }
    }
}

/// Adds the Maildir mailbox `abuse-desk` (role abuse) to the desk's config.
fn add_abuse_mailbox(desk: &Desk) {
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(desk.examples().join("abuse-maildir").join(sub)).expect("mkdir");
    }
    let mut config = std::fs::read_to_string(desk.config()).expect("config");
    config.push_str(
        r#"
[[mailbox]]
name = "abuse-desk"
role = "abuse"
kind = "maildir"
path = "abuse-maildir"
initial_sync = "process"
"#,
    );
    std::fs::write(desk.config(), config).expect("write config");
}

/// Replaces every rule file of the desk copy with one file holding `rules`.
fn install_rules(desk: &Desk, rules: &str) {
    let dir = desk.examples().join("../rules");
    for entry in std::fs::read_dir(&dir).expect("rules dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            std::fs::remove_file(path).expect("remove default rules");
        }
    }
    std::fs::write(dir.join("50-case.toml"), rules).expect("write rules");
}

// ---------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------

/// Monday 23 November 2026, 10:00 in Rome: inside business hours.
const MONDAY_MORNING: &str = "2026-11-23T09:00:00Z";

enum Expect {
    /// Rule `.0` matched with a reason whose condition is `.1` and matched text `.2`.
    Reason(&'static str, &'static str, &'static str),
    /// Some effect has every key/value of this object (nested objects: the same).
    Effect(Value),
    /// No effect of this kind.
    NoEffect(&'static str),
    /// Exactly this many effects of this kind.
    Count(&'static str, usize),
    /// An effect of kind `.0` whose text field `.1` contains `.2`.
    EffectText(&'static str, &'static str, &'static str),
    /// A mail to `.0` whose subject contains `.1`.
    Mail(&'static str, &'static str),
    /// The mail to `.0` comes from `.1`.
    MailFrom(&'static str, &'static str),
    /// The raw mail to `.0` contains `.1`.
    MailBody(&'static str, &'static str),
    NoMailTo(&'static str),
    Mails(usize),
    /// The value at this JSON pointer of the output.
    At(&'static str, Value),
    /// The text at this JSON pointer contains this.
    AtContains(&'static str, &'static str),
}

use Expect::*;

struct Case {
    name: &'static str,
    msg: Msg,
    rules: &'static str,
    mailbox: Option<&'static str>,
    at: &'static str,
    setup: Setup,
    /// Names of the rules that must match, in order; `None` is a mistake in the table.
    matched: Option<Vec<&'static str>>,
    expect: Vec<Expect>,
}

fn case(name: &'static str, msg: Msg, rules: &'static str) -> Case {
    Case {
        name,
        msg,
        rules,
        mailbox: None,
        at: MONDAY_MORNING,
        setup: Setup::Fresh,
        matched: None,
        expect: Vec::new(),
    }
}

impl Case {
    fn mailbox(mut self, mailbox: &'static str) -> Case {
        self.mailbox = Some(mailbox);
        self
    }
    fn at(mut self, at: &'static str) -> Case {
        self.at = at;
        self
    }
    fn setup(mut self, setup: Setup) -> Case {
        self.setup = setup;
        self
    }
    fn matches(mut self, names: &[&'static str]) -> Case {
        self.matched = Some(names.to_vec());
        self
    }
    fn expect(mut self, expect: Expect) -> Case {
        self.expect.push(expect);
        self
    }
}

/// Runs every case (in parallel, each on its own desk) and fails with all failures.
fn run_table(cases: Vec<Case>) {
    assert!(!cases.is_empty());
    let failures: Vec<String> = std::thread::scope(|scope| {
        let running: Vec<_> = cases
            .iter()
            .map(|case| (case.name, scope.spawn(move || run_case(case))))
            .collect();
        running
            .into_iter()
            .filter_map(|(name, handle)| match handle.join() {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(format!("case `{name}`:\n{e}")),
                Err(_) => Some(format!("case `{name}` panicked (see above)")),
            })
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} case(s) failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

fn run_case(case: &Case) -> Result<(), String> {
    let Some(expected_names) = &case.matched else {
        return Err("the case says nothing about which rules match".into());
    };
    let desk = Desk::demo();
    let raw = case.msg.bytes(&desk);
    prepare(&desk, case.setup);
    install_rules(&desk, case.rules);
    let output = rules_test(&desk, &raw, case.mailbox, case.at)?;
    let mut problems = Vec::new();
    let names: Vec<&str> = output["decision"]["evaluation"]["matched"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["name"].as_str()).collect())
        .unwrap_or_default();
    if names != *expected_names {
        problems.push(format!(
            "rules matched: {names:?}, expected {expected_names:?}"
        ));
    }
    for expect in &case.expect {
        if let Err(problem) = check(&output, expect) {
            problems.push(problem);
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(format!(
        "  {}\n  output: {}",
        problems.join("\n  "),
        summary(&output)
    ))
}

/// `maildesk rules test` on `raw` (written beside the desk), as JSON.
fn rules_test(desk: &Desk, raw: &[u8], mailbox: Option<&str>, at: &str) -> Result<Value, String> {
    let file = desk.dir.path().join("case.eml");
    std::fs::write(&file, raw).expect("write message");
    let file = file.to_str().expect("utf-8 path").to_string();
    let mut args = vec!["rules", "test", &file, "--json", "--at", at];
    if let Some(mailbox) = mailbox {
        args.extend(["--mailbox", mailbox]);
    }
    let out = desk.maildesk(&args);
    if !out.status.success() {
        return Err(format!(
            "maildesk {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            common::stderr(&out)
        ));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("not JSON ({e}):\n{}", String::from_utf8_lossy(&out.stdout)))
}

fn check(output: &Value, expect: &Expect) -> Result<(), String> {
    let effects = output["decision"]["effects"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let of_kind = |kind: &str| -> Vec<Value> {
        effects
            .iter()
            .filter(|e| e["effect"] == kind)
            .cloned()
            .collect()
    };
    let mails = output["mails"].as_array().cloned().unwrap_or_default();
    let mail_to = |to: &str| mails.iter().find(|m| m["to"] == to).cloned();
    let ok = |holds: bool, what: String| if holds { Ok(()) } else { Err(what) };
    match expect {
        Reason(rule, condition, matched) => {
            let found = output["decision"]["evaluation"]["matched"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|m| m["name"] == *rule)
                .flat_map(|m| m["reasons"].as_array().cloned().unwrap_or_default())
                .any(|r| r["condition"] == *condition && r["matched"] == *matched);
            ok(
                found,
                format!(
                    "rule {rule} has no reason {{condition: {condition:?}, matched: {matched:?}}}"
                ),
            )
        }
        Effect(pattern) => ok(
            effects.iter().any(|e| subset(e, pattern)),
            format!("no effect like {pattern}"),
        ),
        NoEffect(kind) => ok(
            of_kind(kind).is_empty(),
            format!("unexpected {kind} effect(s): {:?}", of_kind(kind)),
        ),
        Count(kind, n) => ok(
            of_kind(kind).len() == *n,
            format!("{} {kind} effect(s), expected {n}", of_kind(kind).len()),
        ),
        EffectText(kind, field, text) => ok(
            of_kind(kind)
                .iter()
                .any(|e| e[*field].as_str().is_some_and(|v| v.contains(text))),
            format!("no {kind} effect whose {field} contains {text:?}"),
        ),
        Mail(to, subject) => ok(
            mail_to(to).is_some_and(|m| m["subject"].as_str().is_some_and(|s| s.contains(subject))),
            format!("no mail to {to} with a subject containing {subject:?}"),
        ),
        MailFrom(to, from) => ok(
            mail_to(to).is_some_and(|m| m["from"] == *from),
            format!("no mail to {to} from {from}"),
        ),
        MailBody(to, text) => ok(
            mail_to(to).is_some_and(|m| m["raw"].as_str().is_some_and(|r| r.contains(text))),
            format!("no mail to {to} containing {text:?}"),
        ),
        NoMailTo(to) => ok(
            mail_to(to).is_none(),
            format!("a mail to {to} would be sent"),
        ),
        Mails(n) => ok(
            mails.len() == *n,
            format!("{} mail(s), expected {n}", mails.len()),
        ),
        At(pointer, value) => ok(
            output.pointer(pointer) == Some(value),
            format!(
                "{pointer} is {:?}, expected {value}",
                output.pointer(pointer)
            ),
        ),
        AtContains(pointer, text) => ok(
            output
                .pointer(pointer)
                .and_then(Value::as_str)
                .is_some_and(|v| v.contains(text)),
            format!(
                "{pointer} is {:?}, expected it to contain {text:?}",
                output.pointer(pointer)
            ),
        ),
    }
}

/// Whether `actual` has every key of `pattern` with the same value (recursively for
/// objects; anything else compares equal).
fn subset(actual: &Value, pattern: &Value) -> bool {
    match (actual, pattern) {
        (Value::Object(a), Value::Object(p)) => p
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| subset(av, v))),
        _ => actual == pattern,
    }
}

/// What a failing case saw, short.
fn summary(output: &Value) -> String {
    let mut out = json!({
        "sender": output["sender"],
        "language": output["language"],
        "business_hours": output["business_hours"],
        "ticket": output["ticket"],
        "matched": output["decision"]["evaluation"]["matched"],
        "effects": output["decision"]["effects"],
        "mails": output["mails"].as_array().map(|mails| {
            mails
                .iter()
                .map(|m| json!({"to": m["to"], "from": m["from"], "subject": m["subject"]}))
                .collect::<Vec<_>>()
        }),
    });
    if let Some(effects) = out["effects"].as_array_mut() {
        effects.retain(|e| e["effect"] != "rule_matched");
    }
    serde_json::to_string_pretty(&out).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Conditions
// ---------------------------------------------------------------------------------------

#[test]
fn mailbox_and_role_conditions() {
    const SUPPORT_ONLY: &str = r#"
[[rule]]
name = "support-mailbox"
when.mailbox = "support"
then.queue = "first-level"
"#;
    const ABUSE_DESK: &str = r#"
[[rule]]
name = "abuse-desk-mailbox"
when.mailbox = ["abuse-desk", "abuse-archive"]
then.queue = "abuse"
"#;
    const ROLES: &str = r#"
[[rule]]
name = "abuse-role"
when.role = "abuse"
then.tags = "abuse-desk"

[[rule]]
name = "any-desk"
when.role = ["support", "abuse"]
then.tags = "any"
"#;
    run_table(vec![
        case(
            "mailbox = support: the support mailbox",
            Msg::Demo(JANE_SMTP),
            SUPPORT_ONLY,
        )
        .matches(&["support-mailbox"])
        .expect(Reason("support-mailbox", "mailbox = support", "support"))
        .expect(Effect(
            json!({"effect": "classify", "queue": "first-level"}),
        )),
        case(
            "mailbox = support: not the abuse role",
            Msg::Demo(JANE_SMTP),
            SUPPORT_ONLY,
        )
        .mailbox("abuse")
        .matches(&[])
        .expect(NoEffect("classify")),
        case(
            "mailbox list: abuse role resolves to the configured abuse-desk",
            Msg::Fixture(ARF_AOL),
            ABUSE_DESK,
        )
        .setup(Setup::AbuseMailbox)
        .mailbox("abuse")
        .matches(&["abuse-desk-mailbox"])
        .expect(Reason(
            "abuse-desk-mailbox",
            "mailbox in [abuse-desk, abuse-archive]",
            "abuse-desk",
        ))
        .expect(Effect(json!({"effect": "classify", "queue": "abuse"}))),
        case(
            "mailbox list: named mailbox",
            Msg::Fixture(ARF_AOL),
            ABUSE_DESK,
        )
        .setup(Setup::AbuseMailbox)
        .mailbox("abuse-desk")
        .matches(&["abuse-desk-mailbox"]),
        case(
            "mailbox list: not the support mailbox",
            Msg::Fixture(ARF_AOL),
            ABUSE_DESK,
        )
        .setup(Setup::AbuseMailbox)
        .mailbox("support")
        .matches(&[])
        .expect(NoEffect("classify")),
        case(
            "role: abuse via --mailbox abuse",
            Msg::Fixture(ARF_AOL),
            ROLES,
        )
        .mailbox("abuse")
        .matches(&["abuse-role", "any-desk"])
        .expect(Reason("abuse-role", "role = abuse", "abuse"))
        .expect(Reason("any-desk", "role in [support, abuse]", "abuse"))
        .expect(Effect(
            json!({"effect": "classify", "tags": ["abuse-desk", "any"]}),
        )),
        case(
            "role: abuse via the named abuse mailbox",
            Msg::Fixture(ARF_AOL),
            ROLES,
        )
        .setup(Setup::AbuseMailbox)
        .mailbox("abuse-desk")
        .matches(&["abuse-role", "any-desk"]),
        case(
            "role: the same report on the support desk",
            Msg::Fixture(ARF_AOL),
            ROLES,
        )
        .matches(&["any-desk"])
        .expect(Reason("any-desk", "role in [support, abuse]", "support"))
        .expect(Effect(json!({"effect": "classify", "tags": ["any"]}))),
    ]);
}

const SENDERS: &str = r#"
[[rule]]
name = "registered"
when.sender = "registered"
then.tags = "registered"

[[rule]]
name = "unregistered"
when.sender = "unregistered"
then.tags = "unregistered"

[[rule]]
name = "staff"
when.sender = "staff"
then.tags = "staff"

[[rule]]
name = "unverified"
when.sender = "unverified"
then.tags = "unverified"

[[rule]]
name = "not-a-customer"
when.sender = ["unregistered", "unverified"]
then.tags = "not-a-customer"
"#;

#[test]
fn sender_conditions() {
    run_table(vec![
        case("registered customer", Msg::Demo(MARIO_DOWN), SENDERS)
            .matches(&["registered"])
            .expect(Reason("registered", "sender = registered", "registered"))
            .expect(AtContains("/sender", "registered customer Mario Rossi")),
        case("unregistered sender", Msg::Demo(CURIOUS), SENDERS)
            .matches(&["unregistered", "not-a-customer"])
            .expect(Reason(
                "unregistered",
                "sender = unregistered",
                "unregistered",
            ))
            .expect(Reason(
                "not-a-customer",
                "sender in [unregistered, unverified]",
                "unregistered",
            )),
        case("staff, From in capitals", Msg::Inline(STAFF_NOTE), SENDERS)
            .matches(&["staff"])
            .expect(Reason("staff", "sender = staff", "staff"))
            .expect(AtContains("/sender", "staff luca@acme-hosting.example")),
        case(
            "registered address, dmarc=fail: unverified",
            Msg::Inline(FORGED_JANE),
            SENDERS,
        )
        .matches(&["unverified", "not-a-customer"])
        .expect(Reason("unverified", "sender = unverified", "unverified"))
        .expect(Reason(
            "not-a-customer",
            "sender in [unregistered, unverified]",
            "unverified",
        ))
        .expect(AtContains("/sender", "dmarc=fail")),
        case(
            "registered address, spf=fail alone: unverified",
            Msg::Inline(JANE_SPF_FAIL),
            SENDERS,
        )
        .matches(&["unverified", "not-a-customer"])
        .expect(AtContains("/sender", "spf=fail")),
        case(
            "registered address, spf=fail but dkim=pass: registered",
            Msg::Inline(JANE_SPF_FAIL_DKIM_PASS),
            SENDERS,
        )
        .matches(&["registered"]),
        case(
            "no usable From: counts as unregistered",
            Msg::Demo(GARBAGE),
            SENDERS,
        )
        .matches(&["unregistered", "not-a-customer"])
        .expect(AtContains("/sender", "unknown sender")),
    ]);
}

#[test]
fn account_status_conditions() {
    const STATUS: &str = r#"
[[rule]]
name = "active-customer"
when.account_status = "active"
then.queue = "customers"

[[rule]]
name = "blocked-customer"
when.account_status = ["suspended", "closed"]
then.queue = "blocked"
then.priority = "high"
"#;
    run_table(vec![
        case("active account", Msg::Demo(JANE_SMTP), STATUS)
            .matches(&["active-customer"])
            .expect(Reason(
                "active-customer",
                "account_status = active",
                "active",
            ))
            .expect(Effect(
                json!({"effect": "classify", "queue": "customers", "priority": null}),
            )),
        case("suspended account", Msg::Inline(FROM_SUSPENDED), STATUS)
            .setup(Setup::BlockedAccounts)
            .matches(&["blocked-customer"])
            .expect(Reason(
                "blocked-customer",
                "account_status in [suspended, closed]",
                "suspended",
            ))
            .expect(AtContains("/sender", "account C1005 status suspended"))
            .expect(Effect(
                json!({"effect": "classify", "queue": "blocked", "priority": "high"}),
            )),
        case("closed account", Msg::Inline(FROM_CLOSED), STATUS)
            .setup(Setup::BlockedAccounts)
            .matches(&["blocked-customer"])
            .expect(Reason(
                "blocked-customer",
                "account_status in [suspended, closed]",
                "closed",
            )),
        case(
            "the same address before the import knows it",
            Msg::Inline(FROM_SUSPENDED),
            STATUS,
        )
        .matches(&[])
        .expect(NoEffect("classify")),
        case(
            "unregistered sender: no account, no status",
            Msg::Demo(CURIOUS),
            STATUS,
        )
        .matches(&[])
        .expect(NoEffect("classify")),
        case(
            "unverified sender: the account is not theirs",
            Msg::Inline(FORGED_JANE),
            STATUS,
        )
        .matches(&[]),
    ]);
}

#[test]
fn from_and_to_conditions() {
    const FROM: &str = r#"
[[rule]]
name = "bakery"
when.from = '^claire\.martin@boulangerie-martin\.example$'
then.queue = "fr"

[[rule]]
name = "display-name"
when.from = 'Claire Martin'
then.tags = "never"

[[rule]]
name = "freemail"
when.from = '@freemail\.example$'
then.tags = "freemail"
"#;
    const TO: &str = r#"
[[rule]]
name = "billing-copy"
when.to = '^billing@acme-hosting\.example$'
then.queue = "billing"
"#;
    run_table(vec![
        case(
            "from: the normalised address (From in mixed case)",
            Msg::Demo(CLAIRE_SSL),
            FROM,
        )
        .matches(&["bakery"])
        .expect(Reason(
            "bakery",
            r"from ~ /^claire\.martin@boulangerie-martin\.example$/",
            "claire.martin@boulangerie-martin.example",
        ))
        .expect(Effect(
            json!({"effect": "classify", "queue": "fr", "tags": []}),
        )),
        case("from: another sender", Msg::Demo(MARIO_DOWN), FROM).matches(&[]),
        case("from: Reply-To is not From", Msg::Demo(JANE_SMTP), FROM).matches(&[]),
        case("from: a stranger's address", Msg::Demo(CURIOUS), FROM)
            .matches(&["freemail"])
            .expect(Reason(
                "freemail",
                r"from ~ /@freemail\.example$/",
                "@freemail.example",
            )),
        case(
            "to: a Cc address, normalised",
            Msg::Inline(MANY_HEADERS),
            TO,
        )
        .matches(&["billing-copy"])
        .expect(Reason(
            "billing-copy",
            r"to ~ /^billing@acme-hosting\.example$/",
            "billing@acme-hosting.example",
        ))
        .expect(Effect(json!({"effect": "classify", "queue": "billing"}))),
        case("to: only support in To", Msg::Demo(JANE_SMTP), TO)
            .matches(&[])
            .expect(NoEffect("classify")),
    ]);
}

#[test]
fn subject_body_and_header_conditions() {
    const SUBJECT: &str = r#"
[[rule]]
name = "certificate"
when.subject = '(?i)certificat\w* SSL expiré'
then.category = "ssl"
"#;
    const BODY: &str = r#"
[[rule]]
name = "renewal"
when.body = 'expiré\. Le renouvellement automatique'
then.tags = "ssl"

[[rule]]
name = "subject-is-not-body"
when.body = 'Certificat SSL'
then.tags = "never"

[[rule]]
name = "phishing-site"
when.body = 'site de phishing'
then.tags = "phishing"
"#;
    const HEADERS: &str = r#"
[[rule]]
name = "feedback-loop"
when.header.Content-Type = '(?i)report-type="?feedback-report'
then.tags = "fbl"

[[rule]]
name = "via-laptop"
when.header.received = 'laptop\.janedoe\.example'
then.tags = "laptop"

[[rule]]
name = "phone-callback"
when.header.x-ticket-source = '^phone-callback$'
then.queue = "callback"

[[rule]]
name = "reply-elsewhere"
when.header.Reply-To = 'jane\.travel@freemail\.example'
then.tags = "reply-to"
"#;
    run_table(vec![
        case(
            "subject: decoded from RFC 2047",
            Msg::Demo(CLAIRE_SSL),
            SUBJECT,
        )
        .matches(&["certificate"])
        .expect(Reason(
            "certificate",
            r"subject ~ /(?i)certificat\w* SSL expiré/",
            "Certificat SSL expiré",
        ))
        .expect(Effect(json!({"effect": "classify", "category": "ssl"}))),
        case("subject: other wording", Msg::Demo(MARIO_DOWN), SUBJECT)
            .matches(&[])
            .expect(NoEffect("classify")),
        case(
            "body: quoted-printable latin-1, decoded",
            Msg::Demo(CLAIRE_SSL),
            BODY,
        )
        .matches(&["renewal"])
        .expect(Reason(
            "renewal",
            r"body ~ /expiré\. Le renouvellement automatique/",
            "expiré. Le renouvellement automatique",
        ))
        .expect(Effect(json!({"effect": "classify", "tags": ["ssl"]}))),
        case(
            "body: HTML-only report, converted to text",
            Msg::Fixture(PHISHING_FR),
            BODY,
        )
        .mailbox("abuse")
        .matches(&["phishing-site"])
        .expect(Reason(
            "phishing-site",
            "body ~ /site de phishing/",
            "site de phishing",
        )),
        case("body: other text", Msg::Demo(JANE_SMTP), BODY).matches(&[]),
        case(
            "header: Content-Type parameter of an ARF report",
            Msg::Fixture(ARF_AOL),
            HEADERS,
        )
        .mailbox("abuse")
        .matches(&["feedback-loop"])
        .expect(Reason(
            "feedback-loop",
            r#"header.content-type ~ /(?i)report-type="?feedback-report/"#,
            "report-type=feedback-report",
        )),
        case(
            "header: every occurrence is tried",
            Msg::Inline(MANY_HEADERS),
            HEADERS,
        )
        .matches(&["via-laptop", "phone-callback"])
        .expect(Reason(
            "via-laptop",
            r"header.received ~ /laptop\.janedoe\.example/",
            "laptop.janedoe.example",
        ))
        .expect(Reason(
            "phone-callback",
            "header.x-ticket-source ~ /^phone-callback$/",
            "phone-callback",
        ))
        .expect(Effect(
            json!({"effect": "classify", "queue": "callback", "tags": ["laptop"]}),
        )),
        case(
            "header: Reply-To, name in mixed case",
            Msg::Demo(JANE_SMTP),
            HEADERS,
        )
        .matches(&["reply-elsewhere"])
        .expect(Reason(
            "reply-elsewhere",
            r"header.reply-to ~ /jane\.travel@freemail\.example/",
            "jane.travel@freemail.example",
        )),
        case(
            "header: none of them present",
            Msg::Demo(MARIO_DOWN),
            HEADERS,
        )
        .matches(&[])
        .expect(NoEffect("classify")),
    ]);
}

#[test]
fn attachment_and_language_conditions() {
    const ATTACHMENT: &str = r#"
[[rule]]
name = "with-attachment"
when.has_attachment = true
then.tags = "attachment"

[[rule]]
name = "text-only"
when.has_attachment = false
then.tags = "text-only"
"#;
    const LANGUAGE: &str = r#"
[[rule]]
name = "italian"
when.language = "it"
then.queue = "it"

[[rule]]
name = "english"
when.language = "en"
then.queue = "en"

[[rule]]
name = "french"
when.language = "fr"
then.queue = "fr"

[[rule]]
name = "romance"
when.language = ["it", "fr"]
then.tags = "romance"
"#;
    run_table(vec![
        case(
            "attachment: XML notice attached to a report",
            Msg::Fixture(COPYRIGHT_XML),
            ATTACHMENT,
        )
        .mailbox("abuse")
        .matches(&["with-attachment"])
        .expect(Reason("with-attachment", "has_attachment = true", "true")),
        case(
            "attachment: a text file attached",
            Msg::Inline(JANE_WITH_ATTACHMENT),
            ATTACHMENT,
        )
        .matches(&["with-attachment"]),
        case(
            "attachment: text+HTML alternative is none",
            Msg::Fixture(GMAIL_ALTERNATIVE),
            ATTACHMENT,
        )
        .matches(&["text-only"])
        .expect(Reason("text-only", "has_attachment = false", "false")),
        case(
            "attachment: plain text mail",
            Msg::Demo(MARIO_DOWN),
            ATTACHMENT,
        )
        .matches(&["text-only"])
        .expect(Effect(json!({"effect": "classify", "tags": ["text-only"]}))),
        case("language: Italian", Msg::Demo(MARIO_DOWN), LANGUAGE)
            .matches(&["italian", "romance"])
            .expect(At("/language", json!("it")))
            .expect(Reason("italian", "language = it", "it"))
            .expect(Reason("romance", "language in [it, fr]", "it")),
        case("language: English", Msg::Demo(JANE_SMTP), LANGUAGE)
            .matches(&["english"])
            .expect(Effect(
                json!({"effect": "classify", "queue": "en", "tags": []}),
            )),
        case("language: French", Msg::Demo(CLAIRE_SSL), LANGUAGE)
            .matches(&["french", "romance"])
            .expect(Reason("romance", "language in [it, fr]", "fr")),
        case(
            "language: French HTML-only report",
            Msg::Fixture(PHISHING_FR),
            LANGUAGE,
        )
        .mailbox("abuse")
        .matches(&["french", "romance"]),
        case(
            "language: too little text to tell",
            Msg::Inline(TOO_SHORT),
            LANGUAGE,
        )
        .matches(&[])
        .expect(At("/language", Value::Null))
        .expect(NoEffect("classify")),
    ]);
}

#[test]
fn category_conditions() {
    const SET_THEN_TEST: &str = r#"
[[rule]]
name = "outage-wording"
when.subject = '(?i)\bdown\b'
then.category = "outage"

[[rule]]
name = "outage-to-noc"
when.category = "outage"
then.queue = "noc"

[[rule]]
name = "billing-only"
when.category = ["billing", "invoices"]
then.queue = "accounting"
"#;
    const TEST_THEN_SET: &str = r#"
[[rule]]
name = "outage-to-noc"
when.category = "outage"
then.queue = "noc"

[[rule]]
name = "outage-wording"
when.subject = '(?i)\bdown\b'
then.category = "outage"
"#;
    const RECATEGORISE: &str = r#"
[[rule]]
name = "recategorise"
when.new_ticket = false
then.category = "mail-delivery"

[[rule]]
name = "still-outage"
when.category = "outage"
then.priority = "urgent"
"#;
    run_table(vec![
        case(
            "category set by an earlier rule",
            Msg::Demo(MARIO_DOWN),
            SET_THEN_TEST,
        )
        .matches(&["outage-wording", "outage-to-noc"])
        .expect(Reason("outage-to-noc", "category = outage", "outage"))
        .expect(Effect(
            json!({"effect": "classify", "category": "outage", "queue": "noc"}),
        )),
        case("no category", Msg::Demo(JANE_SMTP), SET_THEN_TEST)
            .matches(&[])
            .expect(NoEffect("classify")),
        case(
            "category set by a later rule: too late",
            Msg::Demo(MARIO_DOWN),
            TEST_THEN_SET,
        )
        .matches(&["outage-wording"])
        .expect(Effect(
            json!({"effect": "classify", "category": "outage", "queue": null}),
        )),
        case(
            "category of the stored ticket (follow-up)",
            Msg::Inline(MARIO_FOLLOW_UP),
            TEST_THEN_SET,
        )
        .setup(Setup::DemoRun)
        // outage-to-noc comes first, so its category is the one the demo run stored.
        .matches(&["outage-to-noc", "outage-wording"])
        .expect(At("/ticket", json!(1)))
        .expect(Reason("outage-to-noc", "category = outage", "outage"))
        // The category does not change, so classify does not set it again.
        .expect(Effect(
            json!({"effect": "classify", "category": null, "queue": "noc"}),
        )),
        case(
            "stored category changed by an earlier rule",
            Msg::Inline(MARIO_FOLLOW_UP),
            RECATEGORISE,
        )
        .setup(Setup::DemoRun)
        .matches(&["recategorise"])
        .expect(Effect(
            json!({"effect": "classify", "category": "mail-delivery", "priority": null}),
        )),
    ]);
}

#[test]
fn business_hours_condition() {
    const HOURS: &str = r#"
[[rule]]
name = "office"
when.business_hours = true
then.queue = "office"

[[rule]]
name = "on-call"
when.business_hours = false
then.queue = "on-call"
"#;
    let office = |name, at| {
        case(name, Msg::Demo(JANE_SMTP), HOURS)
            .at(at)
            .matches(&["office"])
            .expect(At("/business_hours", json!(true)))
            .expect(Reason("office", "business_hours = true", "true"))
            .expect(Effect(json!({"effect": "classify", "queue": "office"})))
    };
    let closed = |name, at| {
        case(name, Msg::Demo(JANE_SMTP), HOURS)
            .at(at)
            .matches(&["on-call"])
            .expect(At("/business_hours", json!(false)))
            .expect(Reason("on-call", "business_hours = false", "false"))
            .expect(Effect(json!({"effect": "classify", "queue": "on-call"})))
    };
    run_table(vec![
        office("Monday 10:00 Rome", "2026-11-23T09:00:00Z"),
        office(
            "Monday 10:00 Rome, given with its offset",
            "2026-11-23T10:00:00+01:00",
        ),
        office("Monday 08:00 Rome: opening time", "2026-11-23T07:00:00Z"),
        closed("Monday 07:59:59 Rome", "2026-11-23T06:59:59Z"),
        office("Monday 17:59:59 Rome", "2026-11-23T16:59:59Z"),
        closed("Monday 18:00 Rome: closing time", "2026-11-23T17:00:00Z"),
        closed("Sunday 10:00 Rome", "2026-11-22T09:00:00Z"),
        closed("Christmas (a Friday) 11:00 Rome", "2026-12-25T10:00:00Z"),
        office(
            "summer time: Monday 08:00 Rome is 06:00 UTC",
            "2026-07-06T06:00:00Z",
        ),
        closed(
            "summer time: Monday 18:00 Rome is 16:00 UTC",
            "2026-07-06T16:00:00Z",
        ),
    ]);
}

#[test]
fn new_ticket_condition() {
    const NEW_OR_NOT: &str = r#"
[[rule]]
name = "new"
when.new_ticket = true
then.tags = "new"

[[rule]]
name = "follow-up"
when.new_ticket = false
then.tags = "follow-up"
"#;
    run_table(vec![
        case(
            "first message, no database",
            Msg::Demo(MARIO_DOWN),
            NEW_OR_NOT,
        )
        .matches(&["new"])
        .expect(Reason("new", "new_ticket = true", "true"))
        .expect(At("/ticket", Value::Null))
        .expect(Effect(
            json!({"effect": "open_ticket", "subject": "Sito completamente down da stamattina"}),
        )),
        case(
            "reply by In-Reply-To to a stored message",
            Msg::Inline(MARIO_FOLLOW_UP),
            NEW_OR_NOT,
        )
        .setup(Setup::DemoRun)
        .matches(&["follow-up"])
        .expect(Reason("follow-up", "new_ticket = false", "false"))
        .expect(At("/ticket", json!(1)))
        .expect(Effect(json!({"effect": "join_ticket", "number": 1})))
        .expect(NoEffect("open_ticket"))
        .expect(NoEffect("reopen")),
        case(
            "reply by the ticket tag in the subject",
            Msg::Inline(JANE_TAGGED_FOLLOW_UP),
            NEW_OR_NOT,
        )
        .setup(Setup::DemoRun)
        .matches(&["follow-up"])
        .expect(Effect(json!({"effect": "join_ticket", "number": 2}))),
        case(
            "reply to a resolved ticket reopens it",
            Msg::Inline(JANE_TAGGED_FOLLOW_UP),
            NEW_OR_NOT,
        )
        .setup(Setup::DemoRunJaneResolved)
        .matches(&["follow-up"])
        .expect(Effect(json!({"effect": "join_ticket", "number": 2})))
        .expect(Count("reopen", 1)),
        case(
            "a stranger answering someone else's thread: new ticket",
            Msg::Inline(STRANGER_IN_JANES_THREAD),
            NEW_OR_NOT,
        )
        .setup(Setup::DemoRun)
        .matches(&["new"])
        .expect(At("/ticket", Value::Null))
        .expect(Count("open_ticket", 1))
        .expect(NoEffect("join_ticket")),
        case(
            "a stranger copying someone else's tag: new ticket",
            Msg::Inline(STRANGER_WITH_JANES_TAG),
            NEW_OR_NOT,
        )
        .setup(Setup::DemoRun)
        .matches(&["new"])
        .expect(NoEffect("join_ticket")),
    ]);
}

// ---------------------------------------------------------------------------------------
// Actions
// ---------------------------------------------------------------------------------------

#[test]
fn classification_actions() {
    const CLASSIFY: &str = r#"
[[rule]]
name = "smtp-problems"
when.subject = '(?i)smtp'
then.priority = "high"
then.category = "mail"
then.queue = "mail-team"
then.tags = ["smtp", "auth"]

[[rule]]
name = "travelling-customer"
when.header.reply-to = '.'
then.priority = "low"
then.queue = "mail-team-2"
then.tags = "auth"

[[rule]]
name = "all-customers"
when.sender = "registered"
then.category = "mail-delivery"
then.tags = "customer"
"#;
    const URGENT: &str = r#"
[[rule]]
name = "urgent"
when.subject = '(?i)\bdown\b'
then.priority = "urgent"

[[rule]]
name = "normal"
when.language = "en"
then.priority = "normal"
"#;
    run_table(vec![
        case(
            "last single value wins, tags accumulate once each",
            Msg::Demo(JANE_SMTP),
            CLASSIFY,
        )
        .matches(&["smtp-problems", "travelling-customer", "all-customers"])
        .expect(Count("classify", 1))
        .expect(Effect(json!({
            "effect": "classify",
            "priority": "low",
            "category": "mail-delivery",
            "queue": "mail-team-2",
            "tags": ["smtp", "auth", "customer"],
        })))
        .expect(At("/decision/evaluation/priority", json!("low")))
        .expect(Count("rule_matched", 3)),
        case(
            "one rule: only what it sets",
            Msg::Demo(MARIO_DOWN),
            CLASSIFY,
        )
        .matches(&["all-customers"])
        .expect(Effect(json!({
            "effect": "classify",
            "priority": null,
            "category": "mail-delivery",
            "queue": null,
            "tags": ["customer"],
        }))),
        case("no rule: no classification", Msg::Demo(CURIOUS), CLASSIFY)
            .matches(&[])
            .expect(NoEffect("classify"))
            .expect(NoEffect("rule_matched")),
        case("priority urgent", Msg::Demo(MARIO_DOWN), URGENT)
            .matches(&["urgent"])
            .expect(Effect(json!({"effect": "classify", "priority": "urgent"}))),
        case("priority normal", Msg::Demo(CURIOUS), URGENT)
            .matches(&["normal"])
            .expect(Effect(json!({"effect": "classify", "priority": "normal"}))),
    ]);
}

#[test]
fn reply_action() {
    const REPLIES: &str = r#"
[[rule]]
name = "ack-customers"
when.sender = "registered"
then.reply = "support_ack"

[[rule]]
name = "ack-again"
when.sender = "registered"
then.reply = "support_ack"

[[rule]]
name = "notice-strangers"
when.sender = ["unregistered", "unverified"]
then.reply = "unregistered_notice"

[[rule]]
name = "ack-plan-questions"
when.subject = '(?i)\bplan\b'
then.reply = "support_ack"
"#;
    run_table(vec![
        case(
            "account template: the registered address, never Reply-To, once",
            Msg::Demo(JANE_SMTP),
            REPLIES,
        )
        .matches(&["ack-customers", "ack-again"])
        .expect(Count("send", 1))
        .expect(Effect(json!({
            "effect": "send",
            "template": "support_ack",
            "to": {"kind": "registered_address"},
        })))
        .expect(Mails(1))
        .expect(Mail(
            "jane.doe@janedoe.example",
            "[ACME #1] We received your request: Cannot send mail",
        ))
        .expect(MailFrom(
            "jane.doe@janedoe.example",
            "support@acme-hosting.example",
        ))
        .expect(NoMailTo("jane.travel@freemail.example")),
        case(
            "account template in the account's language",
            Msg::Demo(MARIO_DOWN),
            REPLIES,
        )
        .matches(&["ack-customers", "ack-again"])
        .expect(Mails(1))
        .expect(Mail(
            "mario.rossi@pizzeria-rossi.example",
            "Abbiamo ricevuto la tua richiesta",
        )),
        case(
            "sender template to a stranger; account template held back",
            Msg::Demo(CURIOUS),
            REPLIES,
        )
        .matches(&["notice-strangers", "ack-plan-questions"])
        .expect(Effect(json!({
            "effect": "send",
            "template": "unregistered_notice",
            "to": {"kind": "sender", "address": "curious@freemail.example"},
        })))
        .expect(EffectText(
            "suppress_reply",
            "reason",
            "support_ack goes to an account's registered address",
        ))
        .expect(Mails(1))
        .expect(Mail(
            "curious@freemail.example",
            "Your message to ACME Hosting support",
        )),
        case(
            "unverified sender: the notice, no account mail",
            Msg::Inline(FORGED_JANE),
            REPLIES,
        )
        .matches(&["notice-strangers"])
        .expect(Count("send", 1))
        .expect(Effect(
            json!({"effect": "send", "template": "unregistered_notice", "to": {"kind": "sender"}}),
        ))
        .expect(Mails(1))
        .expect(Mail(
            "jane.doe@janedoe.example",
            "Your message to ACME Hosting support",
        )),
        case(
            "staff: no rule asks for a reply",
            Msg::Inline(STAFF_NOTE),
            REPLIES,
        )
        .matches(&[])
        .expect(NoEffect("send"))
        .expect(Mails(0)),
    ]);
}

#[test]
fn notify_staff_action() {
    const STAFF: &str = r#"
[[rule]]
name = "site-down"
when.subject = '(?i)\bdown\b'
then.notify_staff = "site down"

[[rule]]
name = "customer-waiting"
when.sender = "registered"
then.notify_staff = "customer waiting"
"#;
    run_table(vec![
        case(
            "two reasons, one staff notice with both",
            Msg::Demo(MARIO_DOWN),
            STAFF,
        )
        .matches(&["site-down", "customer-waiting"])
        .expect(Effect(
            json!({"effect": "flag_for_staff", "reason": "site down"}),
        ))
        .expect(Effect(
            json!({"effect": "flag_for_staff", "reason": "customer waiting"}),
        ))
        .expect(Count("send", 1))
        .expect(Effect(
            json!({"effect": "send", "template": "staff_notice", "to": {"kind": "staff"}}),
        ))
        .expect(Mails(1))
        .expect(Mail(
            "luca@acme-hosting.example",
            "[ACME #1] Needs staff: Sito completamente down",
        ))
        .expect(MailBody(
            "luca@acme-hosting.example",
            "Reason: site down; customer waiting",
        ))
        .expect(MailBody(
            "luca@acme-hosting.example",
            "Customer:       C1001",
        ))
        .expect(NoMailTo("mario.rossi@pizzeria-rossi.example")),
        case("one reason", Msg::Demo(JANE_SMTP), STAFF)
            .matches(&["customer-waiting"])
            .expect(Count("flag_for_staff", 1))
            .expect(MailBody(
                "luca@acme-hosting.example",
                "Reason: customer waiting",
            )),
        case("no reason: nobody told", Msg::Demo(CURIOUS), STAFF)
            .matches(&[])
            .expect(NoEffect("flag_for_staff"))
            .expect(Mails(0)),
    ]);
}

#[test]
fn suppress_reply_and_quarantine_actions() {
    const SUPPRESS: &str = r#"
[[rule]]
name = "ack"
then.reply = "support_ack"

[[rule]]
name = "notice"
then.reply = "unregistered_notice"

[[rule]]
name = "staff"
when.subject = '(?i)down|smtp'
then.notify_staff = "look at it"

[[rule]]
name = "silence-pizzeria"
when.from = '@pizzeria-rossi\.example$'
then.suppress_reply = true
"#;
    const QUARANTINE: &str = r#"
[[rule]]
name = "ack"
then.reply = "support_ack"

[[rule]]
name = "hold-attachments"
when.has_attachment = true
then.quarantine = true
then.notify_staff = "attachment held for inspection"
"#;
    run_table(vec![
        case(
            "suppress_reply: answers held, staff still told",
            Msg::Demo(MARIO_DOWN),
            SUPPRESS,
        )
        .matches(&["ack", "notice", "staff", "silence-pizzeria"])
        .expect(Effect(json!({
            "effect": "suppress_reply",
            "reason": concat!(
                "support_ack: suppressed by rule silence-pizzeria ",
                "(asked for by rule ack)"
            ),
        })))
        .expect(EffectText(
            "suppress_reply",
            "reason",
            "unregistered_notice: suppressed by rule silence-pizzeria",
        ))
        .expect(Count("send", 1))
        .expect(Effect(
            json!({"effect": "send", "template": "staff_notice"}),
        ))
        .expect(Mails(1))
        .expect(Mail("luca@acme-hosting.example", "Needs staff"))
        .expect(NoMailTo("mario.rossi@pizzeria-rossi.example")),
        case(
            "suppress_reply: another sender is answered",
            Msg::Demo(JANE_SMTP),
            SUPPRESS,
        )
        .matches(&["ack", "notice", "staff"])
        .expect(NoEffect("suppress_reply"))
        .expect(Count("send", 3))
        .expect(Mail("jane.doe@janedoe.example", "We received your request"))
        .expect(Mail("luca@acme-hosting.example", "Needs staff")),
        case(
            "quarantine: kept, never answered, staff told",
            Msg::Inline(JANE_WITH_ATTACHMENT),
            QUARANTINE,
        )
        .matches(&["ack", "hold-attachments"])
        .expect(Effect(
            json!({"effect": "quarantine", "rule": "hold-attachments"}),
        ))
        .expect(Effect(json!({
            "effect": "suppress_reply",
            "reason": "support_ack: quarantined by rule hold-attachments",
        })))
        .expect(Effect(json!({
            "effect": "flag_for_staff",
            "reason": "attachment held for inspection",
        })))
        .expect(Mails(1))
        .expect(MailBody(
            "luca@acme-hosting.example",
            "Reason: attachment held for inspection",
        ))
        .expect(NoMailTo("jane.doe@janedoe.example")),
        case(
            "quarantine: no attachment, answered",
            Msg::Demo(JANE_SMTP),
            QUARANTINE,
        )
        .matches(&["ack"])
        .expect(NoEffect("quarantine"))
        .expect(NoEffect("suppress_reply"))
        .expect(Mails(1))
        .expect(Mail("jane.doe@janedoe.example", "We received your request")),
    ]);
}

#[test]
fn automated_mail_is_never_answered_whatever_the_rules_ask() {
    const ANSWER_ALL: &str = r#"
[[rule]]
name = "ack"
then.reply = "support_ack"

[[rule]]
name = "notice"
then.reply = "unregistered_notice"

[[rule]]
name = "staff"
then.notify_staff = "anything"
"#;
    run_table(vec![
        case(
            "out-of-office from a customer",
            Msg::Demo(BIGSHOP_OOF),
            ANSWER_ALL,
        )
        .matches(&["ack", "notice", "staff"])
        .expect(Count("suppress_reply", 1))
        .expect(EffectText(
            "suppress_reply",
            "reason",
            "automated message: Auto-Submitted",
        ))
        .expect(Effect(
            json!({"effect": "flag_for_staff", "reason": "anything"}),
        ))
        // The sender is never answered; staff still hear of it.
        .expect(Count("send", 1))
        .expect(Effect(
            json!({"effect": "send", "template": "staff_notice", "to": {"kind": "staff"}}),
        ))
        .expect(NoMailTo("ops@bigshop.example"))
        .expect(Mails(1))
        .expect(Mail("luca@acme-hosting.example", "Needs staff")),
        case(
            "Italian non-delivery report",
            Msg::Fixture(NDR_ITALIAN),
            ANSWER_ALL,
        )
        .matches(&["ack", "notice", "staff"])
        .expect(Count("suppress_reply", 1))
        .expect(EffectText("suppress_reply", "reason", "automated message"))
        .expect(NoMailTo("postmaster@example.jp"))
        .expect(Mails(1))
        .expect(Mail("luca@acme-hosting.example", "Needs staff")),
        case(
            "a person's mail is answered",
            Msg::Demo(JANE_SMTP),
            ANSWER_ALL,
        )
        .matches(&["ack", "notice", "staff"])
        .expect(NoEffect("suppress_reply"))
        .expect(Mails(3)),
    ]);
}

#[test]
fn abuse_case_action() {
    const ABUSE: &str = r#"
[[rule]]
name = "abuse-report"
when.role = "abuse"
then.abuse_case = { category = "unclassified" }
then.reply = "abuse_ack"

[[rule]]
name = "phishing"
when.role = "abuse"
when.body = '(?i)phishing'
then.abuse_case = { category = "phishing", severity = "high" }
"#;
    run_table(vec![
        case(
            "the later, more specific case wins",
            Msg::Fixture(PHISHING_FR),
            ABUSE,
        )
        .mailbox("abuse")
        .matches(&["abuse-report", "phishing"])
        .expect(Count("open_abuse_case", 1))
        .expect(Effect(
            json!({"effect": "open_abuse_case", "category": "phishing", "severity": "high"}),
        ))
        .expect(Effect(json!({
            "effect": "send",
            "template": "abuse_ack",
            "to": {"kind": "sender", "address": "cert-soc@lexsi.com"},
        })))
        .expect(Mails(1))
        // French report, French answer, from the abuse address, with the case type.
        .expect(Mail(
            "cert-soc@lexsi.com",
            "[ACME #1] Votre signalement d'abus a bien",
        ))
        .expect(MailFrom("cert-soc@lexsi.com", "abuse@acme-hosting.example"))
        .expect(MailBody("cert-soc@lexsi.com", "phishing")),
        case(
            "severity defaults to normal; automated report not answered",
            Msg::Fixture(ARF_AOL),
            ABUSE,
        )
        .mailbox("abuse")
        .matches(&["abuse-report"])
        .expect(Effect(
            json!({"effect": "open_abuse_case", "category": "unclassified", "severity": "normal"}),
        ))
        .expect(EffectText("suppress_reply", "reason", "automated message"))
        .expect(Mails(0)),
        case("support mail: no case", Msg::Demo(JANE_SMTP), ABUSE)
            .matches(&[])
            .expect(NoEffect("open_abuse_case"))
            .expect(Mails(0)),
    ]);
}

#[test]
fn require_confirmation_action() {
    const CONFIRM: &str = r#"
[[rule]]
name = "close-account"
when.subject = '(?i)(close|cancel|change).{0,30}(account|address|e-?mail)'
then.require_confirmation = "closing the account, asked for by email"
"#;
    run_table(vec![
        case(
            "registered customer: request mailed to the registered address",
            Msg::Inline(JANE_CLOSE_ACCOUNT),
            CONFIRM,
        )
        .matches(&["close-account"])
        .expect(Effect(json!({
            "effect": "await_confirmation",
            "action": "closing the account, asked for by email",
        })))
        .expect(Effect(json!({
            "effect": "send",
            "template": "confirmation_request",
            "to": {"kind": "registered_address"},
        })))
        .expect(Mails(1))
        .expect(Mail(
            "jane.doe@janedoe.example",
            "[ACME #1] Please confirm the change to your account",
        ))
        .expect(MailBody(
            "jane.doe@janedoe.example",
            "closing the account, asked for by email",
        )),
        case(
            "unregistered sender: no confirmation request",
            Msg::Inline(STRANGER_CLOSE_ACCOUNT),
            CONFIRM,
        )
        .matches(&["close-account"])
        .expect(NoEffect("send"))
        // Nobody can confirm, so nothing waits for a confirmation.
        .expect(NoEffect("await_confirmation"))
        .expect(EffectText(
            "suppress_reply",
            "reason",
            "only a registered customer can ask for a change",
        ))
        .expect(Mails(0)),
        case(
            "unverified sender: no confirmation request",
            Msg::Inline(FORGED_JANE),
            CONFIRM,
        )
        .matches(&["close-account"])
        .expect(NoEffect("send"))
        .expect(NoEffect("await_confirmation"))
        .expect(NoMailTo("jane.doe@janedoe.example")),
        case("no change asked for", Msg::Demo(JANE_SMTP), CONFIRM)
            .matches(&[])
            .expect(NoEffect("await_confirmation"))
            .expect(Mails(0)),
    ]);
}

#[test]
fn link_incident_action() {
    const INCIDENT: &str = r#"
[[rule]]
name = "mail-outage"
when.body = '(?i)(posta non arriva|authentication failed)'
then.link_incident = "mail-cluster-2026-11"

[[rule]]
name = "smtp-incident"
when.subject = '(?i)smtp'
then.link_incident = "smtp-auth-2026-11"
"#;
    run_table(vec![
        case("last incident wins", Msg::Demo(JANE_SMTP), INCIDENT)
            .matches(&["mail-outage", "smtp-incident"])
            .expect(Count("link_incident", 1))
            .expect(Effect(
                json!({"effect": "link_incident", "name": "smtp-auth-2026-11"}),
            ))
            .expect(Reason(
                "mail-outage",
                "body ~ /(?i)(posta non arriva|authentication failed)/",
                "authentication failed",
            )),
        case("Italian wording", Msg::Demo(MARIO_DOWN), INCIDENT)
            .matches(&["mail-outage"])
            .expect(Effect(
                json!({"effect": "link_incident", "name": "mail-cluster-2026-11"}),
            )),
        case("unrelated mail", Msg::Demo(CLAIRE_SSL), INCIDENT)
            .matches(&[])
            .expect(NoEffect("link_incident")),
    ]);
}

#[test]
fn stop_action() {
    const STOP_FIRST: &str = r#"
[[rule]]
name = "vip-first"
when.from = '@bigshop\.example$'
then.queue = "vip"
stop = true

[[rule]]
name = "everyone"
then.queue = "general"
then.tags = "general"
"#;
    const STOP_MIDDLE: &str = r#"
[[rule]]
name = "seen"
then.tags = "seen"

[[rule]]
name = "urgent-and-stop"
when.subject = '(?i)\bdown\b'
then.priority = "urgent"
stop = true

[[rule]]
name = "downgrade"
then.priority = "low"
"#;
    run_table(vec![
        case(
            "a matching stop rule ends evaluation",
            Msg::Demo(BIGSHOP_OOF),
            STOP_FIRST,
        )
        .matches(&["vip-first"])
        .expect(At("/decision/evaluation/matched/0/stop", json!(true)))
        .expect(Effect(
            json!({"effect": "classify", "queue": "vip", "tags": []}),
        )),
        case(
            "a stop rule that does not match stops nothing",
            Msg::Demo(JANE_SMTP),
            STOP_FIRST,
        )
        .matches(&["everyone"])
        .expect(At("/decision/evaluation/matched/0/stop", json!(false)))
        .expect(Effect(
            json!({"effect": "classify", "queue": "general", "tags": ["general"]}),
        )),
        case(
            "rules before the stop still count, later ones do not",
            Msg::Demo(MARIO_DOWN),
            STOP_MIDDLE,
        )
        .matches(&["seen", "urgent-and-stop"])
        .expect(Effect(
            json!({"effect": "classify", "priority": "urgent", "tags": ["seen"]}),
        )),
        case(
            "without the stop rule the later rule overrides",
            Msg::Demo(JANE_SMTP),
            STOP_MIDDLE,
        )
        .matches(&["seen", "downgrade"])
        .expect(Effect(
            json!({"effect": "classify", "priority": "low", "tags": ["seen"]}),
        )),
    ]);
}

// ---------------------------------------------------------------------------------------
// The real pipeline
// ---------------------------------------------------------------------------------------

const PIPELINE_RULES: &str = r#"
[[rule]]
name = "invoice"
when.subject = '(?i)wrong invoice'
then.priority = "high"
then.category = "billing"
then.queue = "accounting"
then.tags = ["billing", "invoice"]

[[rule]]
name = "abuse-spam"
when.role = "abuse"
when.body = '(?i)unsolicited'
then.abuse_case = { category = "spam", severity = "high" }
then.reply = "abuse_ack"

[[rule]]
name = "mail-cluster"
when.body = '(?i)posta non arriva'
then.link_incident = "mail-cluster-2026-11"

[[rule]]
name = "hold-attachments"
when.has_attachment = true
then.quarantine = true
then.notify_staff = "attachment held for inspection"
then.reply = "support_ack"

[[rule]]
name = "close-account"
when.sender = "registered"
when.subject = '(?i)close my account'
then.require_confirmation = "closing the account, asked for by email"
"#;

const JANE_INVOICE: &str = "From: Jane Doe <jane.doe@janedoe.example>
To: support@acme-hosting.example
Subject: Wrong invoice for November
Message-ID: <invoice-1@janedoe.example>

Hello, the November invoice charges the business plan, but I have the personal one.
";
const MARIO_MAIL_DOWN: &str = "From: Mario Rossi <mario.rossi@pizzeria-rossi.example>
To: support@acme-hosting.example
Subject: Problema con la posta
Message-ID: <posta-1@pizzeria-rossi.example>

Buongiorno, da stamattina la posta non arriva più nelle nostre caselle. Potete verificare?
";
const SPAM_REPORT: &str = "From: ISP Abuse Team <abuse-team@isp.example>
To: abuse@acme-hosting.example
Subject: Spam from your network
Message-ID: <report-1@isp.example>

Hello, we received unsolicited bulk mail from 192.0.2.10, which is in your network.
Full headers of one message follow on request.
";

fn count(desk: &Desk, sql: &str) -> i64 {
    desk.db()
        .query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The number of the ticket opened by the message with this Message-ID.
fn ticket_of(desk: &Desk, message_id: &str) -> i64 {
    desk.db()
        .query_row(
            "SELECT ticket FROM messages WHERE direction = 'in' AND message_id = ?1",
            [message_id],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("no ticket for {message_id}: {e}"))
}

fn events(desk: &Desk, ticket: i64, kind: &str) -> Vec<String> {
    let db = desk.db();
    let mut stmt = db
        .prepare("SELECT detail FROM events WHERE ticket = ?1 AND kind = ?2 ORDER BY id")
        .unwrap();
    stmt.query_map(rusqlite::params![ticket, kind], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn recipients(desk: &Desk, ticket: i64) -> Vec<String> {
    let db = desk.db();
    let mut stmt = db
        .prepare(
            "SELECT o.recipient FROM outbox o JOIN messages m ON m.id = o.message
              WHERE m.ticket = ?1 ORDER BY o.id",
        )
        .unwrap();
    stmt.query_map([ticket], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn pipeline_writes_what_the_actions_decide() {
    let desk = Desk::empty();
    add_abuse_mailbox(&desk);
    install_rules(&desk, PIPELINE_RULES);
    desk.deliver("1.invoice", &crlf(JANE_INVOICE));
    desk.deliver("2.mail-down", &crlf(MARIO_MAIL_DOWN));
    desk.deliver("3.attachment", &crlf(JANE_WITH_ATTACHMENT));
    desk.deliver("4.close", &crlf(JANE_CLOSE_ACCOUNT));
    std::fs::write(
        desk.examples().join("abuse-maildir/new/5.spam-report"),
        crlf(SPAM_REPORT),
    )
    .unwrap();
    let summary = desk.ok(&["run", "--once"]);
    assert!(summary.contains("stored 5 message(s)"), "{summary}");
    let db = desk.db();
    let rule_line = |name: &str| {
        PIPELINE_RULES
            .lines()
            .position(|l| l == format!("name = \"{name}\""))
            .expect("rule in PIPELINE_RULES")
            + 1
    };

    // priority, category, queue, tags
    let invoice = ticket_of(&desk, "invoice-1@janedoe.example");
    let row: (String, String, String, String) = db
        .query_row(
            "SELECT priority, category, queue, status FROM tickets WHERE number = ?1",
            [invoice],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        row,
        (
            "high".into(),
            "billing".into(),
            "accounting".into(),
            "new".into()
        )
    );
    let mut tags: Vec<String> = db
        .prepare("SELECT tag FROM ticket_tags WHERE ticket = ?1")
        .unwrap()
        .query_map([invoice], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    tags.sort();
    assert_eq!(tags, ["billing", "invoice"]);
    let matched = events(&desk, invoice, "rule.matched");
    assert_eq!(matched.len(), 1, "{matched:?}");
    assert!(
        matched[0].contains(&format!("50-case.toml:{} invoice: ", rule_line("invoice")))
            && matched[0].contains(r#"subject ~ /(?i)wrong invoice/ ("Wrong invoice")"#),
        "{matched:?}"
    );
    assert_eq!(
        events(&desk, invoice, "ticket.classified"),
        ["priority high, category billing, queue accounting, tags billing, invoice"]
    );
    assert!(
        recipients(&desk, invoice).is_empty(),
        "no rule asked for mail"
    );

    // link_incident
    let mail_down = ticket_of(&desk, "posta-1@pizzeria-rossi.example");
    let incident: String = db
        .query_row(
            "SELECT i.name FROM tickets t JOIN incidents i ON i.id = t.incident_id
              WHERE t.number = ?1",
            [mail_down],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(incident, "mail-cluster-2026-11");
    assert_eq!(count(&desk, "SELECT count(*) FROM incidents"), 1);
    assert_eq!(
        events(&desk, mail_down, "incident.linked"),
        ["mail-cluster-2026-11"]
    );
    assert!(events(&desk, mail_down, "rule.matched")[0].contains(" mail-cluster: "));

    // quarantine: kept, flagged, staff told, the customer not answered
    let held = ticket_of(&desk, "attachment-1@janedoe.example");
    let (quarantined, needs_staff, reason): (i64, i64, String) = db
        .query_row(
            "SELECT quarantined, needs_staff, flag_reason FROM tickets WHERE number = ?1",
            [held],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((quarantined, needs_staff), (1, 1));
    assert!(
        reason.contains("attachment held for inspection"),
        "{reason}"
    );
    assert_eq!(recipients(&desk, held), ["luca@acme-hosting.example"]);
    assert_eq!(
        events(&desk, held, "ticket.quarantined"),
        ["by rule hold-attachments"]
    );
    assert_eq!(
        events(&desk, held, "reply.suppressed"),
        ["support_ack: quarantined by rule hold-attachments"]
    );

    // require_confirmation: waiting, what to confirm, the request to the registered address
    let close = ticket_of(&desk, "close-1@janedoe.example");
    let (status, confirmation): (String, String) = db
        .query_row(
            "SELECT status, confirmation FROM tickets WHERE number = ?1",
            [close],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(status, "waiting");
    assert_eq!(confirmation, "closing the account, asked for by email");
    assert_eq!(recipients(&desk, close), ["jane.doe@janedoe.example"]);
    assert_eq!(
        events(&desk, close, "confirmation.requested"),
        ["closing the account, asked for by email"]
    );
    let confirm_mail = desk
        .sent_mails()
        .into_iter()
        .find(|m| {
            common::header(m, "Subject").is_some_and(|s| {
                s == format!("[ACME #{close}] Please confirm the change to your account")
            })
        })
        .expect("the confirmation request was sent");
    assert_eq!(
        common::header(&confirm_mail, "To").as_deref(),
        Some("jane.doe@janedoe.example")
    );

    // abuse_case, on the abuse mailbox: answered from the abuse address
    let report = ticket_of(&desk, "report-1@isp.example");
    let (role, category, severity): (String, String, String) = db
        .query_row(
            "SELECT mailbox_role, case_category, case_severity FROM tickets WHERE number = ?1",
            [report],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (role.as_str(), category.as_str(), severity.as_str()),
        ("abuse", "spam", "high")
    );
    assert_eq!(
        events(&desk, report, "case.opened"),
        ["category spam, severity high"]
    );
    assert_eq!(recipients(&desk, report), ["abuse-team@isp.example"]);
    let ack = desk
        .sent_mails()
        .into_iter()
        .find(|m| common::header(m, "To").as_deref() == Some("abuse-team@isp.example"))
        .expect("abuse_ack sent");
    assert!(
        common::header(&ack, "From").is_some_and(|f| f.contains("abuse@acme-hosting.example")),
        "{ack}"
    );

    // Nothing else: every mail queued was sent, and no rule matched what it should not.
    assert_eq!(count(&desk, "SELECT count(*) FROM outbox"), 3);
    assert_eq!(desk.sent_mails().len(), 3);
    assert_eq!(
        count(
            &desk,
            "SELECT count(*) FROM tickets WHERE quarantined = 1 OR confirmation IS NOT NULL
                OR incident_id IS NOT NULL OR case_category IS NOT NULL"
        ),
        4
    );
    assert_eq!(
        count(
            &desk,
            "SELECT count(*) FROM events WHERE kind = 'rule.matched'"
        ),
        5
    );
}

#[test]
fn rules_test_changes_nothing() {
    const EVERY_ACTION: &str = r#"
[[rule]]
name = "everything"
then.priority = "urgent"
then.category = "test"
then.tags = ["a", "b"]
then.queue = "q"
then.reply = "support_ack"
then.notify_staff = "dry run"
then.abuse_case = { category = "spam", severity = "critical" }
then.require_confirmation = "nothing really"
then.link_incident = "dry-run-incident"
"#;
    const TABLES: [&str; 7] = [
        "tickets",
        "messages",
        "outbox",
        "events",
        "incidents",
        "ticket_tags",
        "accounts",
    ];

    // Without a database: none is created, nothing is written.
    let desk = Desk::demo();
    install_rules(&desk, EVERY_ACTION);
    let output = rules_test(&desk, &crlf(JANE_CLOSE_ACCOUNT), None, MONDAY_MORNING).unwrap();
    assert_eq!(
        output["mails"].as_array().map(Vec::len),
        Some(3),
        "{output:#}"
    );
    assert!(!desk.examples().join("demo.db").exists());
    assert!(desk.sent_mails().is_empty());
    assert_eq!(desk.files_in("new").len(), 7);

    // With one: every row count stays as it was, for a new ticket and for a follow-up.
    let desk = Desk::demo();
    desk.ok(&["run", "--once"]);
    let snapshot = |desk: &Desk| -> Vec<(String, i64)> {
        TABLES
            .iter()
            .map(|t| {
                (
                    t.to_string(),
                    count(desk, &format!("SELECT count(*) FROM {t}")),
                )
            })
            .chain([(
                "waiting or flagged tickets".to_string(),
                count(
                    desk,
                    "SELECT count(*) FROM tickets WHERE status = 'waiting' OR needs_staff = 1
                        OR quarantined = 1 OR priority = 'urgent'",
                ),
            )])
            .collect()
    };
    let before = snapshot(&desk);
    let sent_before = desk.sent_mails();
    install_rules(&desk, EVERY_ACTION);
    for (raw, ticket) in [
        (crlf(JANE_CLOSE_ACCOUNT), Value::Null),
        (crlf(MARIO_FOLLOW_UP), json!(1)),
    ] {
        let output = rules_test(&desk, &raw, None, MONDAY_MORNING).unwrap();
        assert_eq!(output["ticket"], ticket, "{output:#}");
        assert!(
            output["decision"]["effects"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["effect"] == "link_incident")),
            "{output:#}"
        );
        assert!(
            !output["mails"].as_array().unwrap().is_empty(),
            "mails are written in the dry run: {output:#}"
        );
    }
    assert_eq!(snapshot(&desk), before);
    assert_eq!(desk.sent_mails(), sent_before);
}
