//! Production scale (run with `scripts/bench-scale [MESSAGES]`).
//!
//! Preloads a database through the real ingestion code (the library's `Pipeline`, as the
//! daemon stores mail) with 1,000,000 messages in 300,000 tickets of 100,000 accounts:
//! 1–3 KB bodies, one in ten with a small attachment, every new ticket answered. Then,
//! against that database, measures what an operator and the daemon feel:
//! - `maildesk tickets list --status open --account X`, `maildesk tickets show N` (the
//!   real binary, process start included) and a References lookup (the store query the
//!   threading uses), each the median of several runs;
//! - the daemon's start-up time (spawn to "maildesk started");
//! - `maildesk run --once` ingesting a fresh Maildir of 20,000 messages, its rate and peak
//!   RSS until every message is stored, compared with the same mail into an empty
//!   database;
//! - the database's size per stored message.
//!
//! Each figure is printed with its target.

#[path = "../tests/common/mailgen.rs"]
#[allow(dead_code)]
mod mailgen;
#[path = "shared/rss.rs"]
mod rss;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use maildesk::config::{Config, Role};
use maildesk::pipeline::Pipeline;
use maildesk::policy::SharedPolicy;
use maildesk::source::SourceMessage;
use maildesk::store::Store;

const ACCOUNTS: usize = 100_000;
const TICKETS: usize = 300_000;
const FRESH: usize = 20_000;

fn main() {
    let total: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let tickets = TICKETS.min(total * 3 / 10).max(1);
    let accounts = ACCOUNTS.min(tickets).max(1);
    // The binary of the same build as this benchmark (release under `cargo bench`).
    let binary = Path::new(env!("CARGO_BIN_EXE_maildesk"));
    // SCALE_DIR keeps the preloaded database there for the next run (to iterate on a
    // change without preloading again); by default everything goes with the run.
    let temp = tempfile::tempdir().expect("tempdir");
    let dir =
        std::env::var_os("SCALE_DIR").map_or_else(|| temp.path().to_path_buf(), PathBuf::from);
    let _ = std::fs::remove_dir_all(dir.join("empty"));
    let big = Desk::new(&dir.join("big"), accounts);
    let empty = Desk::new(&dir.join("empty"), accounts);

    if big.db.exists() {
        eprintln!("reusing the preloaded database in {}", big.dir.display());
    } else {
        eprintln!("preloading {total} messages in {tickets} tickets of {accounts} accounts...");
        let started = Instant::now();
        preload(&big, total, tickets, accounts);
        let preload_secs = started.elapsed().as_secs_f64();
        println!(
            "preloaded:           {total} messages in {preload_secs:.0} s ({:.0} messages/s through the pipeline)",
            total as f64 / preload_secs
        );
    }
    let stored = big.count("in");
    let all = big.count("all");
    println!(
        "big database:        {stored} messages in, {} out",
        all - stored
    );
    let size = db_size(&big.db);
    println!(
        "database:            {:.0} MB, {:.0} bytes per stored message (in and out; raw mail is kept whole)",
        size as f64 / 1e6,
        size as f64 / all as f64
    );

    let account = format!("C{:06}", accounts / 2);
    let list = median_ms(
        binary,
        &big.config,
        &["tickets", "list", "--status", "open", "--account", &account],
    );
    report("tickets list --status open --account", list, 50.0);
    let list_new = median_ms(
        binary,
        &big.config,
        &["tickets", "list", "--status", "new", "--account", &account],
    );
    report("tickets list --status new --account", list_new, 50.0);
    let number = (tickets / 2).to_string();
    report(
        "tickets show N",
        median_ms(binary, &big.config, &["tickets", "show", &number]),
        50.0,
    );
    report(
        "References lookup",
        references_lookup_ms(&big, tickets),
        50.0,
    );
    println!(
        "daemon start-up:     {:.0} ms (spawn to \"maildesk started\")",
        startup_ms(binary, &big.config)
    );

    let fresh = fresh_mail(accounts);
    let on_big = ingest_fresh(binary, &big, &fresh);
    let on_empty = ingest_fresh(binary, &empty, &fresh);
    for (what, run) in [("empty db", &on_empty), ("big db", &on_big)] {
        println!(
            "ingestion, {what:<9} {:.0} messages/s from process start, {:.0} messages/s from the first commit to the last; peak RSS {:.0} MB",
            run.whole, run.steady, run.rss_mb
        );
    }
    println!(
        "ingestion, big / empty: {:.0} % from process start, {:.0} % from the first commit (target >= 90 %); peak RSS on the big database {:.0} MB (target < 100 MB)",
        on_big.whole / on_empty.whole * 100.0,
        on_big.steady / on_empty.steady * 100.0,
        on_big.rss_mb
    );
}

/// A desk directory: config, accounts CSV, Maildir, database.
struct Desk {
    dir: PathBuf,
    config: PathBuf,
    db: PathBuf,
}

impl Desk {
    fn new(dir: &Path, accounts: usize) -> Desk {
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(dir.join("maildir").join(sub)).expect("mkdir");
        }
        let mut csv = String::from("reference,email,name,language\n");
        for i in 0..accounts {
            let lang = ["en", "it", "fr"][i % 3];
            csv.push_str(&format!("C{i:06},{},Customer {i},{lang}\n", customer(i)));
        }
        std::fs::write(dir.join("accounts.csv"), csv).expect("accounts");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let config = format!(
            r#"database = "desk.db"
rules_dir = "{}"
templates_dir = "{}"
accounts_file = "accounts.csv"
[desk]
name = "Scale Hosting"
support_address = "support@example.test"
abuse_address = "abuse@example.test"
ticket_tag = "SCALE"
[[mailbox]]
name = "support"
role = "support"
kind = "maildir"
path = "maildir"
initial_sync = "process"
[outgoing]
transport = "file"
dir = "out"
[[staff]]
email = "staff@example.test"
name = "Staff"
[limits]
per_address = 1000000
"#,
            repo.join("rules").display(),
            repo.join("templates").display(),
        );
        std::fs::write(dir.join("maildesk.toml"), config).expect("config");
        std::fs::create_dir_all(dir.join("out")).expect("out");
        Desk {
            dir: dir.to_path_buf(),
            config: dir.join("maildesk.toml"),
            db: dir.join("desk.db"),
        }
    }

    /// Messages stored: "in", or "all" (ours too).
    fn count(&self, which: &str) -> usize {
        let sql = match which {
            "in" => "SELECT count(*) FROM messages WHERE direction = 'in'",
            _ => "SELECT count(*) FROM messages",
        };
        rusqlite::Connection::open(&self.db)
            .and_then(|c| c.query_row(sql, [], |r| r.get::<_, i64>(0)))
            .map_or(0, |n| n as usize)
    }
}

fn customer(i: usize) -> String {
    format!("customer{i}@client{}.example", i % 97)
}

/// Message `n` of the preload: the first `tickets` open a ticket each (ticket `t` from
/// account `t % accounts`), the rest reply to a ticket picked at random.
fn message(n: usize, tickets: usize, accounts: usize, rng: &mut mailgen::Rng) -> Vec<u8> {
    let (ticket, threading) = if n < tickets {
        (n, String::new())
    } else {
        let t = rng.below(tickets as u64) as usize;
        (
            t,
            format!("In-Reply-To: <t{t}@scale.example>\r\nReferences: <t{t}@scale.example>\r\n"),
        )
    };
    let who = ticket % accounts;
    let id = if n < tickets {
        format!("t{n}@scale.example")
    } else {
        format!("m{n}@scale.example")
    };
    let subject = if n < tickets {
        format!("Website returns error 500 (site {ticket})")
    } else {
        format!("Re: Website returns error 500 (site {ticket})")
    };
    body_mail(&customer(who), &subject, &id, &threading, n, rng)
}

fn body_mail(
    from: &str,
    subject: &str,
    id: &str,
    threading: &str,
    n: usize,
    rng: &mut mailgen::Rng,
) -> Vec<u8> {
    let body_len = 1000 + rng.below(2000) as usize;
    let mut body = String::with_capacity(body_len + mailgen::LOREM.len());
    while body.len() < body_len {
        body.push_str(mailgen::LOREM);
    }
    let text = body[..body_len].replace(". ", ".\r\n");
    let mime = if n.is_multiple_of(10) {
        let attachment = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\r\n".repeat(16);
        format!(
            "Content-Type: multipart/mixed; boundary=\"b{n}\"\r\n\r\n--b{n}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n--b{n}\r\nContent-Type: application/octet-stream; name=\"error.log\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"error.log\"\r\n\r\n{attachment}--b{n}--\r\n"
        )
    } else {
        format!("Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n")
    };
    format!("From: <{from}>\r\nTo: support@example.test\r\nSubject: {subject}\r\nDate: Mon, 16 Nov 2026 10:00:00 +0100\r\nMessage-ID: <{id}>\r\n{threading}MIME-Version: 1.0\r\n{mime}").into_bytes()
}

/// Stores `total` messages through the library's pipeline, a batch of 1,000 per
/// transaction, their time spread over the year before the benchmark.
fn preload(desk: &Desk, total: usize, tickets: usize, accounts: usize) {
    let config = Config::load(&desk.config).expect("config");
    let (policy, problems) = config.policy_files().load();
    let policy = policy.unwrap_or_else(|| panic!("rules: {problems:?}"));
    let mut store = Store::open(&desk.db).expect("open");
    store.sync_staff(&config.staff).expect("staff");
    maildesk::identity::import::import_file(&mut store, &desk.dir.join("accounts.csv"))
        .expect("accounts");
    let mut pipeline = Pipeline::new(&config, store, SharedPolicy::new(policy)).expect("pipeline");
    let reader = pipeline.reader();
    let start: DateTime<Utc> = Utc
        .with_ymd_and_hms(2025, 12, 1, 0, 0, 0)
        .single()
        .expect("date");
    let step = chrono::Duration::milliseconds(365 * 24 * 3600 * 1000 / total.max(1) as i64);
    let mut rng = mailgen::Rng::new(1);
    let mut reported = Instant::now();
    for first in (0..total).step_by(1000) {
        let batch: Vec<_> = (first..total.min(first + 1000))
            .map(|n| {
                reader.prepare(SourceMessage {
                    mailbox: "support".into(),
                    role: Role::Support,
                    key: n.to_string(),
                    raw: message(n, tickets, accounts, &mut rng),
                    oversize: None,
                    history: false,
                })
            })
            .collect();
        pipeline
            .ingest_batch(&batch, None, start + step * first as i32)
            .expect("ingest");
        if reported.elapsed() > Duration::from_secs(10) {
            eprintln!("  {first} stored");
            reported = Instant::now();
        }
    }
}

fn db_size(db: &Path) -> u64 {
    ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
        .map(|m| m.len())
        .sum()
}

fn report(what: &str, ms: f64, target: f64) {
    let verdict = if ms < target { "ok" } else { "OVER" };
    println!("{what:<38} {ms:>8.3} ms (target < {target:.0} ms: {verdict})");
}

/// Median wall time of `maildesk ARGS` over 7 runs, process start included.
fn median_ms(binary: &Path, config: &Path, args: &[&str]) -> f64 {
    let mut times: Vec<f64> = (0..7)
        .map(|_| {
            let started = Instant::now();
            let out = Command::new(binary)
                .arg("--config")
                .arg(config)
                .args(args)
                .env("RUST_LOG", "warn")
                .output()
                .expect("run");
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// The store query the threading runs for a reply's References, on the big database:
/// the median over 101 tickets spread over the whole history.
fn references_lookup_ms(desk: &Desk, tickets: usize) -> f64 {
    let conn = rusqlite::Connection::open(&desk.db).expect("open");
    let mut times: Vec<f64> = (0..101)
        .map(|i| {
            let id = format!("t{}@scale.example", i * (tickets - 1) / 100);
            let started = Instant::now();
            let found = maildesk::store::tickets::ticket_of_messages(
                &conn,
                &[id.as_str(), "unknown@nowhere.example"],
            )
            .expect("lookup");
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            assert!(found.is_some(), "{id} not found");
            ms
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Spawn to the "maildesk started" log line, then SIGTERM.
fn startup_ms(binary: &Path, config: &Path) -> f64 {
    use std::io::BufRead;
    let started = Instant::now();
    let mut child = Command::new(binary)
        .arg("--config")
        .arg(config)
        .arg("run")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let stderr = child.stderr.take().expect("stderr");
    let mut took = None;
    for line in std::io::BufReader::new(stderr).lines() {
        if line.expect("log").contains("maildesk started") {
            took = Some(started.elapsed());
            break;
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    took.expect("the daemon never said it started")
        .as_secs_f64()
        * 1000.0
}

/// New mail from the same customers, as new tickets.
fn fresh_mail(accounts: usize) -> Vec<Vec<u8>> {
    let mut rng = mailgen::Rng::new(2);
    (0..FRESH)
        .map(|n| {
            let who = rng.below(accounts as u64) as usize;
            body_mail(
                &customer(who),
                &format!("Cannot receive mail on my domain ({n})"),
                &format!("fresh{n}@scale.example"),
                "",
                n,
                &mut rng,
            )
        })
        .collect()
}

/// A fresh ingestion: messages per second from process start and from the first commit
/// to the last, and peak RSS.
struct Ingestion {
    whole: f64,
    steady: f64,
    rss_mb: f64,
}

/// `run --once` over a Maildir of `mails`, until every one is stored (moved out of `new/`,
/// which happens only after its commit). The run is then stopped: on the big database it
/// would go on to deliver the preload's answers, which are not part of the measure.
fn ingest_fresh(binary: &Path, desk: &Desk, mails: &[Vec<u8>]) -> Ingestion {
    let new = desk.dir.join("maildir/new");
    for (i, raw) in mails.iter().enumerate() {
        std::fs::write(new.join(format!("{}.M{i}.scale", 1_800_000_000 + i)), raw)
            .expect("deliver");
    }
    let waiting = || std::fs::read_dir(&new).map_or(usize::MAX, Iterator::count);
    let started = Instant::now();
    let mut child = Command::new(binary)
        .arg("--config")
        .arg(&desk.config)
        .args(["run", "--once"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0u64;
    let mut first: Option<(Duration, usize)> = None;
    let took = loop {
        peak_kb = peak_kb.max(rss::high_water_mark_kb(&status_file).unwrap_or(0));
        let left = waiting();
        if left == 0 {
            break started.elapsed();
        }
        if first.is_none() && left < mails.len() {
            first = Some((started.elapsed(), mails.len() - left));
        }
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("run --once ended ({status}) with {left} messages left in new/");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let (at, done) = first.unwrap_or((Duration::ZERO, 0));
    Ingestion {
        whole: mails.len() as f64 / took.as_secs_f64(),
        steady: (mails.len() - done) as f64 / (took - at).as_secs_f64(),
        rss_mb: peak_kb as f64 / 1024.0,
    }
}
