//! Rule evaluation benchmark (run with `scripts/bench-rules [RULES] [KILOBYTES]`).
//!
//! Generates a rule set (default 1,000 rules: patterns on subject, body, From and
//! headers, plus role, sender and language conditions, as an admin would write them)
//! and a message (default 100 KB of mixed English, Italian and French text), then times
//! `RuleSet::evaluate` on it: parse and fact extraction are outside the timing, so the
//! figure is the rules' own cost per message.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use maildesk::config::{Limits, Role};
use maildesk::desk::decide::{Inbound, Recent, facts};
use maildesk::identity::Sender;
use maildesk::mail::ParsedMail;
use maildesk::rules;
use maildesk::store::accounts::Account;

const WORDS: &[&str] = &[
    "server",
    "sito",
    "website",
    "posta",
    "courriel",
    "fattura",
    "invoice",
    "facture",
    "backup",
    "dominio",
    "domain",
    "password",
    "certificato",
    "certificat",
    "database",
    "errore",
    "error",
    "erreur",
    "lento",
    "slow",
    "lent",
    "aggiornamento",
    "update",
    "più",
    "déjà",
    "perché",
    "très",
    "città",
    "réseau",
    "rete",
    "network",
    "ticket",
];

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let kilobytes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("bench.toml"), rule_file(count)).expect("write rules");
    let loading = Instant::now();
    let (set, problems) = rules::load(dir.path(), None);
    let load_time = loading.elapsed();
    let set = set.unwrap_or_else(|| panic!("generated rules are invalid: {problems:#?}"));

    let raw = message(kilobytes * 1024);
    let mail = ParsedMail::read(&raw, &[]);
    let sender = Sender::Customer(Account {
        id: 7,
        reference: "C7".into(),
        email: "ann@customer7.example".into(),
        name: "Ann".into(),
        language: "it".into(),
        status: "active".into(),
        details_valid: true,
    });
    let facts = facts(
        &Inbound {
            mailbox: "support",
            role: Role::Support,
            mail: &mail,
            sender: &sender,
            ticket: None,
            history: false,
            oversize: None,
            business_hours: true,
            reports_on: None,
            recent: Recent::default(),
            limits: Limits::default(),
        },
        set.uses_language(),
    );

    // Warm up (lazy DFA caches fill on first use, as in the long-running daemon).
    let mut matched = 0;
    for _ in 0..5 {
        matched = set.evaluate(&facts).matched.len();
    }
    let mut times: Vec<Duration> = (0..200)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(set.evaluate(std::hint::black_box(&facts)));
            start.elapsed()
        })
        .collect();
    times.sort();
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    println!(
        "rules: {} loaded and compiled in {:.1} ms",
        set.rules.len(),
        load_time.as_secs_f64() * 1e3
    );
    println!(
        "message: {} bytes raw, {} bytes of text; {matched} rule(s) match",
        raw.len(),
        mail.text.len()
    );
    println!(
        "evaluate: median {:.0} µs, mean {:.0} µs, p95 {:.0} µs, max {:.0} µs per message (target < 1000 µs)",
        micros(times[times.len() / 2]),
        micros(mean),
        micros(times[times.len() * 95 / 100]),
        micros(times[times.len() - 1]),
    );
}

/// `count` rules in the mix an admin writes: mostly subject and body keywords.
fn rule_file(count: usize) -> String {
    let mut out = String::new();
    for i in 0..count {
        let word = WORDS[i % WORDS.len()];
        let _ = writeln!(out, "[[rule]]\nname = \"rule-{i}\"");
        match i % 10 {
            0..=3 => {
                let _ = writeln!(out, "when.subject = '(?i)({word}|keyword{i})'");
            }
            4..=6 => {
                let _ = writeln!(
                    out,
                    "when.body = '(?i)(urgent{i}|{word} (down|fermo|en panne) {i})'"
                );
            }
            7 => {
                let _ = writeln!(out, "when.from = '@customer{i}\\.example$'");
            }
            8 => {
                let _ = writeln!(out, "when.header.x-mailer = '(?i)client{i}'");
            }
            _ => {
                let _ = writeln!(
                    out,
                    "when.role = \"support\"\nwhen.language = [\"it\", \"fr\"]\nwhen.sender = \"registered\""
                );
            }
        }
        let _ = writeln!(out, "then.tags = [\"t{}\"]\n", i % 50);
    }
    out
}

/// A plain-text message of about `size` bytes.
fn message(size: usize) -> Vec<u8> {
    let mut body = String::with_capacity(size + 100);
    let mut n: usize = 7;
    while body.len() < size {
        for _ in 0..12 {
            n = n.wrapping_mul(1103515245).wrapping_add(12345) % (1 << 31);
            body.push_str(WORDS[n % WORDS.len()]);
            body.push(' ');
        }
        body.push_str("\r\n");
    }
    format!(
        "From: ann@customer7.example\r\nTo: support@desk.example\r\nSubject: Problema con il sito e la posta\r\nX-Mailer: Thunderbird\r\nMessage-ID: <bench@customer7.example>\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}"
    )
    .into_bytes()
}
