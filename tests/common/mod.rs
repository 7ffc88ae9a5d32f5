//! Test harness: a private copy of the demo (config, accounts, Maildir, templates) in a
//! temporary directory, and the real `maildesk` binary run against it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rusqlite::Connection;

pub mod cfg;
pub mod dovecot;
pub mod imapdesk;
pub mod mailgen;
pub mod scrape;
pub mod smtp;
pub mod snapshot;

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

pub struct Desk {
    pub dir: tempfile::TempDir,
}

impl Desk {
    /// A copy of `examples/` with `templates/` and `rules/` beside it, as in the repository.
    pub fn demo() -> Desk {
        Desk::demo_from(Path::new(REPO))
    }

    /// [`Desk::demo`] from the checkout at `root`.
    pub fn demo_from(root: &Path) -> Desk {
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["examples", "templates", "rules"] {
            copy_dir(&root.join(sub), &dir.path().join(sub));
        }
        let desk = Desk { dir };
        desk.reset_demo_state();
        desk
    }

    /// Creates the Maildir's empty cur/ and tmp/ (git keeps no empty directory), and
    /// undoes a run of the daemon on `examples/demo.toml` in place that a developer's
    /// checkout may carry (`scripts/demo` never writes there): mails back to new/, no
    /// database, no output.
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
    pub fn spawn_daemon(&self) -> Daemon {
        Daemon::spawn(
            Command::new(env!("CARGO_BIN_EXE_maildesk"))
                .arg("--config")
                .arg(self.config())
                .arg("run")
                .env("RUST_LOG", "info"),
        )
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

/// A process started by a test: killed when the guard is dropped, so a failing test
/// leaves nothing running; and killed by the kernel if the test's thread dies first.
/// Its log (stderr) is read as it comes, so a chatty process never blocks on a full pipe.
pub struct Daemon {
    child: Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    /// Starts `command` with stdout discarded and stderr (the log) collected.
    pub fn spawn(command: &mut Command) -> Daemon {
        Daemon::start(command.stdout(Stdio::null()))
    }

    /// Starts `command` with stderr (the log) collected and stdout as the caller set it.
    pub fn start(command: &mut Command) -> Daemon {
        use std::io::BufRead;
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let mut child = command
            .stderr(Stdio::piped())
            .spawn()
            .expect("start maildesk");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = std::sync::Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        Daemon {
            child,
            log,
            reader: Some(reader),
        }
    }

    /// Sends `signal` (e.g. "TERM", "HUP", "STOP").
    pub fn signal(&self, signal: &str) {
        signal_pid(self.child.id(), signal);
    }

    /// Waits up to `limit` for the process to end; returns its status and how long it took.
    pub fn wait_exit(&mut self, limit: Duration) -> (std::process::ExitStatus, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return (status, started.elapsed());
            }
            if started.elapsed() >= limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "still running {limit:?} after the signal; its log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What it logged so far; all of it once the process has ended.
    pub fn log(&mut self) -> String {
        if self.child.try_wait().ok().flatten().is_some()
            && let Some(reader) = self.reader.take()
        {
            let _ = reader.join();
        }
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until the log holds `text`; fails the test after `limit`.
    pub fn wait_for_log(&mut self, text: &str, limit: Duration) {
        let started = Instant::now();
        while !self.log().contains(text) {
            if let Some(status) = self.child.try_wait().expect("wait") {
                panic!("exited ({status}) before logging {text:?}:\n{}", self.log());
            }
            assert!(
                started.elapsed() < limit,
                "no {text:?} in the log after {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `kill -SIGNAL PID`.
pub fn signal_pid(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

impl std::ops::Deref for Daemon {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends SIGTERM, requires a clean exit within 10 s, and returns what it logged.
pub fn terminate(mut daemon: Daemon) -> String {
    daemon.signal("TERM");
    let (status, _) = daemon.wait_exit(Duration::from_secs(10));
    let log = daemon.log();
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
