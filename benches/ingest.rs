//! End-to-end ingestion benchmark (run with `scripts/bench-ingest [MESSAGES]`).
//!
//! Fills a throw-away Dovecot mailbox with realistic support traffic (70 % new tickets
//! from ~200 registered accounts, 30 % replies, 1–3 KB bodies, some small attachments),
//! then measures:
//! - the raw rate of a plain `UID FETCH BODY.PEEK[]` of the whole mailbox, in batches of
//!   the same size maildesk uses: the ceiling set by the server and the machine;
//! - the same with a `UID MOVE` of each batch after its fetch, and with a `UID STORE
//!   +FLAGS (\Seen)` instead (each on a copy of the mailbox): the server's own share of
//!   exactly-once ingestion with either acknowledgement, which maildesk cannot avoid;
//! - `maildesk run --once` (release build): the time until every message is ingested
//!   (stored with its ticket, events and queued answer, moved on the server), read from the
//!   database as it runs; the time until it exits (answers delivered too); its peak RSS;
//! - `maildesk run` idling on the mailbox: the time from an APPEND to the commit of the
//!   message, over a few messages.

#[path = "../tests/common/dovecot.rs"]
#[allow(dead_code)]
mod dovecot;
#[path = "../tests/common/mailgen.rs"]
#[allow(dead_code)]
mod mailgen;
#[path = "shared/rss.rs"]
mod rss;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::TryStreamExt;

const USER: &str = "support@example.test";
/// Hold copies of the mailbox for the fetch-and-acknowledge baselines.
const MOVE_USER: &str = "abuse@example.test";
const SEEN_USER: &str = "alice@client.example";
const BATCH: u32 = 500;

fn main() {
    let count: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let binary = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/maildesk");
    assert!(
        binary.exists(),
        "build the release binary first: cargo build --release"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let dovecot = dovecot::Dovecot::start(dir.path());
    let traffic = mailgen::traffic(42, 200, count, 30);
    let bytes: usize = traffic.messages.iter().map(Vec::len).sum();
    eprintln!(
        "filling the mailbox with {count} messages ({} KB)...",
        bytes / 1024
    );
    for chunk in traffic.messages.chunks(1000) {
        dovecot.append_many(USER, "INBOX", chunk);
        dovecot.append_many(MOVE_USER, "INBOX", chunk);
        dovecot.append_many(SEEN_USER, "INBOX", chunk);
    }

    let raw = raw_fetch_rate(dovecot.imap_port, USER, count, Ack::None);
    // The same, plus what acknowledges each batch: the server's share of exactly-once
    // ingestion, measured on copies of the mailbox.
    let raw_move = raw_fetch_rate(dovecot.imap_port, MOVE_USER, count, Ack::Move);
    let raw_seen = raw_fetch_rate(dovecot.imap_port, SEEN_USER, count, Ack::Seen);

    let desk = dir.path().join("desk");
    std::fs::create_dir_all(&desk).expect("mkdir");
    std::fs::write(desk.join("accounts.csv"), &traffic.accounts_csv).expect("accounts");
    // The shipped rules and templates: every new ticket is acknowledged.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let templates = repo.join("templates");
    let rules = repo.join("rules");
    let config = format!(
        r#"database = "desk.db"
rules_dir = "{rules}"
templates_dir = "{templates}"
accounts_file = "accounts.csv"
[desk]
name = "Bench Hosting"
support_address = "support@example.test"
abuse_address = "abuse@example.test"
ticket_tag = "BENCH"
[[mailbox]]
name = "support"
role = "support"
kind = "imap"
host = "127.0.0.1"
port = {port}
security = "plain"
user = "{USER}"
password_file = "{password}"
initial_sync = "process"
batch_size = {BATCH}
[outgoing]
transport = "file"
dir = "out"
# The generated traffic has ~35 new tickets per account within the run: acknowledge all.
[limits]
per_address = 1000000
"#,
        rules = rules.display(),
        templates = templates.display(),
        port = dovecot.imap_port,
        password = dovecot.password_file().display(),
    );
    std::fs::write(desk.join("maildesk.toml"), config).expect("config");

    eprintln!("running maildesk run --once...");
    let started = Instant::now();
    let mut child = Command::new(&binary)
        .arg("--config")
        .arg(desk.join("maildesk.toml"))
        .args(["run", "--once"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start maildesk");
    let status_file = format!("/proc/{}/status", child.id());
    let db = desk.join("desk.db");
    let mut peak_kb = 0u64;
    let mut ingested_at = None;
    let mut polls = 0u32;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if let Some(kb) = rss::high_water_mark_kb(&status_file) {
            peak_kb = peak_kb.max(kb);
        }
        polls += 1;
        if ingested_at.is_none() && polls.is_multiple_of(10) && stored(&db) >= count {
            ingested_at = Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    let ingested = ingested_at.unwrap_or(elapsed);
    let mut summary = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().expect("stdout"), &mut summary)
        .expect("read");
    assert!(status.success(), "maildesk failed: {status}");
    assert!(
        summary.contains(&format!("stored {count} message(s)")),
        "not everything was stored: {summary}"
    );
    assert_eq!(
        dovecot.count(USER, "INBOX"),
        0,
        "every message acknowledged"
    );

    let rate = count as f64 / ingested.as_secs_f64();
    println!(
        "messages:            {count} ({} new tickets, {} replies)",
        traffic.new_tickets,
        count - traffic.new_tickets
    );
    println!(
        "ingested:            {:.2} s, {rate:.0} messages/s (stored, ticket, answer queued, moved on the server)",
        ingested.as_secs_f64()
    );
    println!(
        "run --once, total:   {:.2} s (with delivering {} answers by the file transport)",
        elapsed.as_secs_f64(),
        traffic.new_tickets
    );
    println!("raw UID FETCH:       {raw:.0} messages/s (batches of {BATCH})");
    println!("ingested / raw:      {:.0} %", rate / raw * 100.0);
    println!(
        "raw FETCH + MOVE:    {raw_move:.0} messages/s (the same batches, each moved after its fetch)"
    );
    println!("ingested / that:     {:.0} %", rate / raw_move * 100.0);
    println!(
        "raw FETCH + \\Seen:   {raw_seen:.0} messages/s (the same batches, each flagged after its fetch)"
    );
    println!("peak RSS:            {:.1} MB", peak_kb as f64 / 1024.0);
    println!("maildesk said:       {}", summary.trim());

    let latencies = idle_latencies(&binary, &desk, &dovecot, &traffic.messages[..5]);
    let ms: Vec<String> = latencies
        .iter()
        .map(|d| format!("{:.0}", d.as_secs_f64() * 1000.0))
        .collect();
    let worst = latencies.iter().max().copied().unwrap_or_default();
    println!(
        "IDLE, APPEND->commit: {} ms (worst {:.0} ms)",
        ms.join(", "),
        worst.as_secs_f64() * 1000.0
    );
}

/// Runs the daemon on the (now empty) mailbox and times each of `messages` from its
/// APPEND to its commit; each is a copy with a fresh Message-ID, so none is a duplicate.
fn idle_latencies(
    binary: &Path,
    desk: &Path,
    dovecot: &dovecot::Dovecot,
    messages: &[Vec<u8>],
) -> Vec<Duration> {
    let mut daemon = Command::new(binary)
        .arg("--config")
        .arg(desk.join("maildesk.toml"))
        .arg("run")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the daemon");
    std::thread::sleep(Duration::from_secs(2)); // connected and idling
    let db = desk.join("desk.db");
    let mut latencies = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let before = stored(&db);
        let mut copy = format!("X-Bench-Idle: {i}\r\n").into_bytes();
        copy.extend_from_slice(message);
        let started = Instant::now();
        dovecot.append(USER, "INBOX", &copy);
        while stored(&db) <= before {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "message {i} not committed after 30 s"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        latencies.push(started.elapsed());
        std::thread::sleep(Duration::from_millis(300));
    }
    Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .expect("kill");
    let status = daemon.wait().expect("wait");
    assert!(
        status.success(),
        "the daemon did not stop cleanly: {status}"
    );
    latencies
}

/// Messages stored so far (0 before the database exists).
fn stored(db: &Path) -> usize {
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return 0;
    };
    conn.query_row(
        "SELECT count(*) FROM messages WHERE direction = 'in'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map_or(0, |n| n as usize)
}

/// How a baseline acknowledges each batch after fetching it.
#[derive(Clone, Copy, PartialEq)]
enum Ack {
    None,
    Move,
    Seen,
}

/// Messages per second of `UID FETCH BODY.PEEK[]` over `user`'s INBOX in batches, each
/// batch then acknowledged as `ack` says.
fn raw_fetch_rate(port: u16, user: &str, count: usize, ack: Ack) -> f64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let mut client = async_imap::Client::new(tcp);
        client.read_response().await.expect("greeting");
        let mut session = client
            .login(user, "secret")
            .await
            .map_err(|(e, _)| e)
            .expect("login");
        if ack == Ack::Move {
            session.create("Processed").await.expect("create");
        }
        session.select("INBOX").await.expect("select");
        let started = Instant::now();
        let mut fetched = 0;
        let mut first = 1u32;
        while fetched < count {
            let set = format!("{first}:{}", first + BATCH - 1);
            let batch: Vec<_> = session
                .uid_fetch(&set, "(UID BODY.PEEK[])")
                .await
                .expect("fetch")
                .try_collect()
                .await
                .expect("fetch stream");
            fetched += batch.iter().filter(|f| f.body().is_some()).count();
            match ack {
                Ack::None => {}
                Ack::Move => session.uid_mv(&set, "Processed").await.expect("move"),
                Ack::Seen => {
                    let _: Vec<_> = session
                        .uid_store(&set, "+FLAGS.SILENT (\\Seen)")
                        .await
                        .expect("store")
                        .try_collect()
                        .await
                        .expect("store stream");
                }
            }
            first += BATCH;
        }
        let rate = fetched as f64 / started.elapsed().as_secs_f64();
        session.logout().await.ok();
        rate
    })
}
