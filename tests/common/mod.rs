//! Test harness: a private copy of the demo (config, accounts, Maildir, templates) in a
//! temporary directory, and the real `maildesk` binary run against it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rusqlite::Connection;

pub mod dovecot;
pub mod mailgen;
pub mod smtp;
pub mod snapshot;

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

pub struct Desk {
    pub dir: tempfile::TempDir,
}

impl Desk {
    /// A copy of `examples/` with `templates/` and `rules/` beside it, as in the repository.
    pub fn demo() -> Desk {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(
            &Path::new(REPO).join("examples"),
            &dir.path().join("examples"),
        );
        copy_dir(
            &Path::new(REPO).join("templates"),
            &dir.path().join("templates"),
        );
        copy_dir(&Path::new(REPO).join("rules"), &dir.path().join("rules"));
        let desk = Desk { dir };
        desk.reset_demo_state();
        desk
    }

    /// Undoes a local demo run the copy may carry (the README's first command runs in the
    /// checkout): mails back to new/, no database, no output.
    fn reset_demo_state(&self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(self.examples().join(format!("demo.db{suffix}")));
        }
        let _ = std::fs::remove_dir_all(self.examples().join("out"));
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(self.maildir().join(sub)).expect("maildir");
        }
        for name in self.files_in("cur") {
            let unique = name.split(":2,").next().unwrap_or(&name).to_string();
            let from = self.maildir().join("cur").join(&name);
            std::fs::rename(from, self.maildir().join("new").join(unique)).expect("reset");
        }
    }

    /// The demo without its mails, for tests that bring their own.
    pub fn empty() -> Desk {
        let desk = Desk::demo();
        for sub in ["new", "cur"] {
            for entry in std::fs::read_dir(desk.maildir().join(sub)).expect("read maildir") {
                std::fs::remove_file(entry.expect("entry").path()).expect("remove");
            }
        }
        desk
    }

    pub fn examples(&self) -> PathBuf {
        self.dir.path().join("examples")
    }

    pub fn config(&self) -> PathBuf {
        self.examples().join("demo.toml")
    }

    pub fn maildir(&self) -> PathBuf {
        self.examples().join("maildir")
    }

    pub fn out_dir(&self) -> PathBuf {
        self.examples().join("out/mail")
    }

    /// Runs `maildesk --config <demo> ARGS`.
    pub fn maildesk(&self, args: &[&str]) -> Output {
        maildesk_with(&self.config(), args)
    }

    /// Runs and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.maildesk(args);
        assert!(
            out.status.success(),
            "maildesk {args:?} failed: {}\n{}",
            out.status,
            stderr(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Sends the desk's mail through the SMTP server on `port` of 127.0.0.1.
    pub fn use_smtp(&self, port: u16) {
        self.edit_config(
            "[outgoing]\ntransport = \"file\"\ndir = \"out/mail\"",
            &format!("[outgoing]\ntransport = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"plain\""),
        );
    }

    /// Replaces `from` (which must be there) with `to` in the config file.
    pub fn edit_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.config()).expect("config");
        assert!(text.contains(from), "config has no {from:?}:\n{text}");
        std::fs::write(self.config(), text.replace(from, to)).expect("config");
    }

    /// Adds lines (e.g. a `[limits]` table) at the end of the config file.
    pub fn append_config(&self, lines: &str) {
        let text = std::fs::read_to_string(self.config()).expect("config");
        std::fs::write(self.config(), format!("{text}\n{lines}\n")).expect("config");
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).expect("json output")
    }

    /// Messages stored so far; 0 while the daemon has not created its database yet.
    pub fn stored(&self) -> i64 {
        if !self.examples().join("demo.db").exists() {
            return 0;
        }
        self.db()
            .query_row(
                "SELECT count(*) FROM messages WHERE direction = 'in'",
                [],
                |r| r.get(0),
            )
            .unwrap_or(0)
    }

    /// `maildesk run` in the background, logging at info level to a pipe.
    pub fn spawn_daemon(&self) -> Child {
        Command::new(env!("CARGO_BIN_EXE_maildesk"))
            .arg("--config")
            .arg(self.config())
            .arg("run")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the daemon")
    }

    pub fn db(&self) -> Connection {
        Connection::open(self.examples().join("demo.db")).expect("open db")
    }

    /// Puts a message into the Maildir's new/ under `name`.
    pub fn deliver(&self, name: &str, raw: &[u8]) {
        std::fs::write(self.maildir().join("new").join(name), raw).expect("deliver");
    }

    /// Every mail written by the file transport, as text.
    pub fn sent_mails(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.out_dir()) else {
            return Vec::new();
        };
        let mut mails: Vec<String> = entries
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .map(|p| String::from_utf8(std::fs::read(p).expect("read eml")).expect("utf-8 mail"))
            .collect();
        mails.sort();
        mails
    }

    pub fn files_in(&self, sub: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.maildir().join(sub))
            .expect("read maildir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
    }
}

/// The demo's mails, in delivery order.
pub fn demo_mails() -> Vec<Vec<u8>> {
    let dir = Path::new(REPO).join("examples/maildir/new");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("demo mails")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read(f).expect("read"))
        .collect()
}

/// Polls `done` until it holds; fails the test after `limit`. Returns the time it took.
pub fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// Sends SIGTERM, requires a clean exit within 20 s, and returns what it logged.
pub fn terminate(mut child: Child) -> String {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut log = String::new();
    if let Some(stderr) = child.stderr.as_mut() {
        std::io::Read::read_to_string(stderr, &mut log).expect("read the log");
    }
    assert!(status.success(), "exit {status} after SIGTERM:\n{log}");
    log
}

pub fn maildesk_with(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_maildesk"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run maildesk")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A header's value (unfolded), in a mail with CRLF or LF line ends.
pub fn header(mail: &str, name: &str) -> Option<String> {
    let mail = mail.replace("\r\n", "\n");
    let head = mail.split("\n\n").next()?;
    let unfolded = head.replace("\n ", " ").replace("\n\t", " ");
    unfolded
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_string))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}
