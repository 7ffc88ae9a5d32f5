//! A real IMAP server for tests: Debian's Dovecot 2.3 on 127.0.0.1, on free ports, with its
//! config, sockets, state, log and mail store in a directory of the test's; stopped when
//! dropped.
//!
//! Users (passwd-file, `{PLAIN}`): `support@example.test`, `abuse@example.test` and
//! `alice@client.example`, all with the password `secret`. Mail is stored as Maildir under
//! `<dir>/dovecot-<imap port>/mail/<domain>/<user>/Maildir`. Run as root (CI), the mail
//! belongs to `nobody:nogroup` (Dovecot refuses uid 0 for mail); run as a normal user, every
//! Dovecot process runs as that user.
//!
//! The IMAP helpers (`append`, `uids`, …) open one plain connection per call, run on a
//! current-thread tokio runtime of their own (on a separate thread when called from inside a
//! runtime), and never SELECT: they EXAMINE, so `\Recent` stays for the client under test.
//!
//! [`Dovecot::start_with`] gives variants ([`Options`]): TLS (implicit TLS on a third port and
//! STARTTLS on the plain one, with a certificate for `localhost` from a test CA of its own),
//! a server that hides IDLE or MOVE, and a log of every IMAP command clients ran.

use std::fmt::Display;
use std::fs::OpenOptions;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_imap::types::Flag;
use futures::TryStreamExt;

const DOVECOT: &str = "/usr/sbin/dovecot";
const DOVEADM: &str = "/usr/bin/doveadm";
/// What `dovecot-imapd` and `dovecot-lmtpd` install besides `dovecot-core`.
const SERVICES: [&str; 2] = ["/usr/lib/dovecot/imap", "/usr/lib/dovecot/lmtp"];
const NOT_INSTALLED: &str = "dovecot is not installed: run scripts/test, which installs Debian's dovecot-imapd and dovecot-lmtpd";

/// The users every instance knows.
pub const USERS: [&str; 3] = [
    "support@example.test",
    "abuse@example.test",
    "alice@client.example",
];
/// Every user's password.
pub const PASSWORD: &str = "secret";

/// How long starting, stopping and one IMAP helper call may take.
const DEADLINE: Duration = Duration::from_secs(20);
/// How many lines of dovecot.log a failure shows.
const LOG_TAIL: usize = 40;
/// What Dovecot 2.3.19 advertises after login by default (asked with CAPABILITY; it appends
/// `LITERAL+` and `NOTIFY` itself only when `imap_capability` is not set). Hiding a
/// capability sets `imap_capability` to this list without it.
const CAPABILITIES: &str = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY \
    THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT \
    CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT \
    SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW \
    STATUS=SIZE SAVEDATE LITERAL+ NOTIFY";
/// What the command log's lines say before the command (`log_debug` of
/// `imap_command_finished`).
const COMMAND_FINISHED: &str = ": Debug: Command finished: ";

type Session = async_imap::Session<tokio::net::TcpStream>;

/// How [`Dovecot::start_with`] varies the server; the default is what [`Dovecot::start`] runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `ssl = yes` with a certificate for `localhost` and `127.0.0.1` signed by a test CA
    /// ([`Dovecot::ca_file`]): implicit TLS on [`Dovecot::imaps_port`], STARTTLS offered on
    /// `imap_port`. Plaintext logins stay allowed there, so the helpers keep working.
    pub tls: bool,
    /// The server does not advertise IDLE (it still accepts the command).
    pub without_idle: bool,
    /// The server does not advertise MOVE (it still accepts the command).
    pub without_move: bool,
    /// dovecot.log gets a line for every IMAP command a logged-in client ran (without
    /// literals; LOGIN runs before and is not logged): see [`Dovecot::commands`].
    pub log_commands: bool,
}

#[derive(Debug)]
pub struct Dovecot {
    pub imap_port: u16,
    pub lmtp_port: u16,
    /// Implicit TLS, with `options.tls`.
    imaps_port: Option<u16>,
    options: Options,
    /// `<dir>/dovecot-<imap port>`: config, users, password file, log, run/, state/, mail/.
    root: PathBuf,
    /// The master process (`dovecot -F`), while running.
    master: Option<Child>,
}

impl Dovecot {
    /// Starts a Dovecot on 127.0.0.1 with free ports, everything under `dir` (a test's temp
    /// dir; created if missing) in `dir/dovecot-<imap port>/`, and returns once all its ports
    /// accept connections (about 25 ms). Panics with a hint to run scripts/test if Dovecot's
    /// IMAP or LMTP server is not installed.
    pub fn start(dir: &Path) -> Dovecot {
        Dovecot::start_with(dir, Options::default())
    }

    /// [`Dovecot::start`] with the variations `options` asks for. With `without_idle` or
    /// `without_move`, panics unless CAPABILITY after login shows the capability hidden.
    pub fn start_with(dir: &Path, options: Options) -> Dovecot {
        if !Path::new(DOVECOT).exists() || SERVICES.iter().any(|s| !Path::new(s).exists()) {
            panic!("{NOT_INSTALLED}");
        }
        // A free port can be taken by someone else before Dovecot binds it: try other ports then.
        let mut attempt = 1;
        loop {
            let [imap_port, lmtp_port, imaps_port] = free_ports();
            let mut dovecot = Dovecot {
                imap_port,
                lmtp_port,
                imaps_port: options.tls.then_some(imaps_port),
                options,
                root: dir.join(format!("dovecot-{imap_port}")),
                master: None,
            };
            dovecot.write_config(dir);
            match dovecot.launch() {
                Ok(()) => {
                    dovecot.check_hidden_capabilities();
                    return dovecot;
                }
                Err(e) if attempt < 3 && dovecot.port_was_taken() => {
                    eprintln!("dovecot: {e}; trying other ports");
                    attempt += 1;
                }
                Err(e) => dovecot.fail(&e),
            }
        }
    }

    /// Stops Dovecot by its master PID (never by process name), disconnecting every IMAP and
    /// LMTP client with it, and waits until its ports are closed. Does nothing if it is not
    /// running. Takes about 1.1 s: Dovecot's master waits 1 s for its children before it exits.
    pub fn stop(&mut self) {
        if let Err(e) = self.try_stop() {
            self.fail(&e);
        }
    }

    /// Stops, then starts again on the same ports with the same mail store.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.launch() {
            self.fail(&e);
        }
    }

    /// The implicit-TLS (IMAPS) port, with `options.tls`.
    pub fn imaps_port(&self) -> Option<u16> {
        self.imaps_port
    }

    /// The test CA's certificate (PEM), which signed the server's, with `options.tls`. No
    /// system trusts it.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.options.tls.then(|| self.root.join("ca.pem"))
    }

    /// What the server advertises to `user` after login (CAPABILITY), sorted.
    pub fn capabilities(&self, user: &str) -> Vec<String> {
        let port = self.imap_port;
        self.imap(&format!("CAPABILITY for {user}"), async move {
            let mut session = login(port, user).await?;
            let capabilities = session.capabilities().await.context("CAPABILITY")?;
            logout(session).await;
            let mut names: Vec<String> = capabilities
                .iter()
                .map(|c| match c {
                    async_imap::types::Capability::Imap4rev1 => "IMAP4rev1".to_string(),
                    async_imap::types::Capability::Auth(mechanism) => format!("AUTH={mechanism}"),
                    async_imap::types::Capability::Atom(atom) => atom.to_string(),
                })
                .collect();
            names.sort();
            Ok(names)
        })
    }

    /// Every IMAP command `user`'s sessions ran, oldest first, as dovecot.log has them (e.g.
    /// `UID STORE 1:7 +FLAGS.SILENT (\Deleted)`). Needs `options.log_commands`. Includes
    /// what the helpers here ran (LIST, EXAMINE, APPEND, UID FETCH, CAPABILITY, …).
    pub fn commands(&self, user: &str) -> Vec<String> {
        assert!(
            self.options.log_commands,
            "Dovecot::commands needs Options {{ log_commands: true, .. }}"
        );
        let prefix = format!("imap({user})<");
        self.log()
            .lines()
            .filter(|line| line.contains(&prefix))
            .filter_map(|line| line.split_once(COMMAND_FINISHED))
            .map(|(_, command)| command.trim_end().to_string())
            .collect()
    }

    /// A file containing "secret\n" (mode 0600), for the client's password setting.
    /// The IMAP server processes (one per logged-in client), e.g. to stop them with
    /// SIGSTOP: their clients' connections stay open and nothing answers, as on a hung
    /// server.
    pub fn imap_processes(&self) -> Vec<u32> {
        self.master
            .as_ref()
            .map_or_else(Vec::new, |m| children(m.id(), &["imap"]))
    }

    pub fn password_file(&self) -> PathBuf {
        self.root.join("password")
    }

    /// IMAP APPEND of one message without flags; creates the folder if it is missing.
    pub fn append(&self, user: &str, folder: &str, raw: &[u8]) {
        self.append_many(user, folder, &[raw.to_vec()]);
    }

    /// IMAP APPEND of every message, in order, over one connection; creates the folder if it is
    /// missing.
    pub fn append_many(&self, user: &str, folder: &str, raws: &[Vec<u8>]) {
        let port = self.imap_port;
        self.imap(&format!("append to {user} {folder}"), async move {
            let mut session = login(port, user).await?;
            if !folder_exists(&mut session, folder).await? {
                session
                    .create(folder)
                    .await
                    .context(format!("CREATE {folder}"))?;
            }
            for (i, raw) in raws.iter().enumerate() {
                session
                    .append(folder, None, None, raw)
                    .await
                    .context(format!("APPEND of message {} of {}", i + 1, raws.len()))?;
            }
            logout(session).await;
            Ok(())
        });
    }

    /// Every message of the folder, by ascending UID, with its flags as IMAP writes them
    /// (`"\\Seen"`, `"\\Answered"`, keywords as they are). `\Recent` is left out: it belongs to
    /// whichever session saw the message first. Empty if the folder does not exist.
    pub fn uids(&self, user: &str, folder: &str) -> Vec<(u32, Vec<String>)> {
        let port = self.imap_port;
        self.imap(&format!("list UIDs of {user} {folder}"), async move {
            let mut session = login(port, user).await?;
            if !folder_exists(&mut session, folder).await? {
                logout(session).await;
                return Ok(Vec::new());
            }
            let mailbox = session
                .examine(folder)
                .await
                .context(format!("EXAMINE {folder}"))?;
            let mut messages = Vec::new();
            if mailbox.exists > 0 {
                let fetches: Vec<_> = session
                    .uid_fetch("1:*", "(UID FLAGS)")
                    .await
                    .context("UID FETCH 1:* (UID FLAGS)")?
                    .try_collect()
                    .await
                    .context("UID FETCH 1:* (UID FLAGS)")?;
                for fetch in &fetches {
                    let uid = fetch
                        .uid
                        .ok_or_else(|| format!("FETCH response without UID: {fetch:?}"))?;
                    let flags = fetch
                        .flags()
                        .filter(|f| *f != Flag::Recent)
                        .map(flag_name)
                        .collect();
                    messages.push((uid, flags));
                }
            }
            logout(session).await;
            messages.sort_by_key(|(uid, _)| *uid);
            Ok(messages)
        })
    }

    /// How many messages the folder holds; 0 if it does not exist.
    pub fn count(&self, user: &str, folder: &str) -> usize {
        self.examine(user, folder).map_or(0, |(exists, _)| exists)
    }

    /// The folder's UIDVALIDITY; panics if the folder does not exist.
    pub fn uidvalidity(&self, user: &str, folder: &str) -> u32 {
        match self.examine(user, folder) {
            Some((_, uidvalidity)) => uidvalidity,
            None => self.fail(&format!("uidvalidity: {user} has no folder {folder:?}")),
        }
    }

    /// Gives `folder` a new, greater UIDVALIDITY (what a server does after a mailbox is
    /// rebuilt), keeping its messages: `doveadm mailbox update --uid-validity <old + 1>`.
    /// Panics unless IMAP then reports the new value and the same number of messages.
    pub fn change_uidvalidity(&self, user: &str, folder: &str) {
        let Some((messages, old)) = self.examine(user, folder) else {
            self.fail(&format!(
                "change_uidvalidity: {user} has no folder {folder:?}"
            ));
        };
        // RFC 3501 2.3.1.1: a new incarnation's UIDVALIDITY must be greater than the old one.
        let new = old.checked_add(1).unwrap_or_else(|| {
            self.fail(&format!("{user} {folder}: UIDVALIDITY {old} cannot grow"))
        });
        let out = Command::new(DOVEADM)
            .arg("-c")
            .arg(self.config())
            .args(["mailbox", "update", "--uid-validity"])
            .arg(new.to_string())
            .args(["-u", user, folder])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| self.fail(&format!("cannot run {DOVEADM}: {e}")));
        if !out.status.success() {
            self.fail(&format!(
                "doveadm mailbox update --uid-validity {new} -u {user} {folder} failed: {}\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let (after, now) = self.examine(user, folder).unwrap_or_default();
        if now != new || after != messages {
            self.fail(&format!(
                "change_uidvalidity {user} {folder}: expected UIDVALIDITY {new} and {messages} \
                 messages, IMAP reports {now} and {after} (was {old})"
            ));
        }
    }

    /// The contents of dovecot.log (empty if there is none yet).
    pub fn log(&self) -> String {
        std::fs::read(self.log_path())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    fn config(&self) -> PathBuf {
        self.root.join("dovecot.conf")
    }

    fn log_path(&self) -> PathBuf {
        self.root.join("dovecot.log")
    }

    /// What `dovecot -F` writes itself (config errors before the log is open).
    fn output_path(&self) -> PathBuf {
        self.root.join("dovecot.out")
    }

    /// Writes the directories, users, password file and dovecot.conf.
    fn write_config(&self, dir: &Path) {
        let root = &self.root;
        let is_root = command_output("id", &["-u"]) == "0";
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir_all(root.join(sub))
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", root.join(sub).display()));
        }
        set_mode(root, 0o755);
        let (mail_user, mail_group) = if is_root {
            make_searchable(root, dir);
            let mail = root.join("mail");
            let chown = Command::new("chown")
                .arg("nobody:nogroup")
                .arg(&mail)
                .status()
                .expect("run chown");
            assert!(
                chown.success(),
                "chown nobody:nogroup {} failed",
                mail.display()
            );
            ("nobody".to_string(), "nogroup".to_string())
        } else {
            (
                command_output("id", &["-un"]),
                command_output("id", &["-gn"]),
            )
        };
        // Unix socket paths are limited to 107 bytes; run/ holds names up to 30 bytes long.
        let run = root.join("run");
        assert!(
            run.as_os_str().len() <= 75,
            "{} is too long for Dovecot's unix sockets: use a shorter temporary directory",
            run.display()
        );
        let users: String = USERS
            .iter()
            .map(|u| format!("{u}:{{PLAIN}}{PASSWORD}\n"))
            .collect();
        write(&root.join("users"), users.as_bytes(), 0o644);
        write(
            &self.password_file(),
            format!("{PASSWORD}\n").as_bytes(),
            0o600,
        );

        let (imap_port, lmtp_port) = (self.imap_port, self.lmtp_port);
        let imaps_port = self.imaps_port.unwrap_or(0);
        let r = root.display();
        let ssl = if self.options.tls {
            make_certificates(root);
            format!("ssl = yes\nssl_cert = <{r}/server.pem\nssl_key = <{r}/server.key")
        } else {
            "ssl = no".to_string()
        };
        let mut conf = format!(
            "# Throw-away Dovecot 2.3 for tests: loopback only, plaintext auth allowed.
protocols = imap lmtp
listen = 127.0.0.1
base_dir = {r}/run
state_dir = {r}/state
instance_name = maildesk-test-{imap_port}
log_path = {r}/dovecot.log
auth_verbose = yes
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {r}/users
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_group} home={r}/mail/%d/%n
}}
service imap-login {{
  inet_listener imap {{
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = {imaps_port}
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    port = {lmtp_port}
  }}
}}
protocol imap {{
  # the client under test, its IDLE connections and this harness, all from 127.0.0.1
  mail_max_userip_connections = 100
}}
protocol lmtp {{
  postmaster_address = postmaster@example.test
}}
"
        );
        if !is_root {
            // Unprivileged: every process runs as the invoking user, and chroot() is not allowed.
            conf.push_str(&format!(
                "default_internal_user = {mail_user}
default_internal_group = {mail_group}
default_login_user = {mail_user}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
"
            ));
        }
        let hidden: Vec<&str> = [
            (self.options.without_idle, "IDLE"),
            (self.options.without_move, "MOVE"),
        ]
        .into_iter()
        .filter_map(|(hide, name)| hide.then_some(name))
        .collect();
        if !hidden.is_empty() {
            let shown: Vec<&str> = CAPABILITIES
                .split_whitespace()
                .filter(|c| !hidden.contains(c))
                .collect();
            // Also what imap-login shows before login (plus STARTTLS and AUTH=).
            conf.push_str(&format!("imap_capability = {}\n", shown.join(" ")));
        }
        if self.options.log_commands {
            conf.push_str("log_debug = event=imap_command_finished\n");
        }
        write(&self.config(), conf.as_bytes(), 0o644);
    }

    /// Panics unless the capabilities `options` hides are missing after login, while the
    /// rest of the list (UIDPLUS, say) is still there.
    fn check_hidden_capabilities(&self) {
        if !self.options.without_idle && !self.options.without_move {
            return;
        }
        let advertised = self.capabilities(USERS[0]);
        let has = |name: &str| advertised.iter().any(|c| c.eq_ignore_ascii_case(name));
        let wrong = (self.options.without_idle && has("IDLE"))
            || (self.options.without_move && has("MOVE"))
            || !has("UIDPLUS")
            || (!self.options.without_idle && !has("IDLE"))
            || (!self.options.without_move && !has("MOVE"));
        if wrong {
            self.fail(&format!(
                "imap_capability did not give what {:?} asks for: CAPABILITY says {advertised:?}",
                self.options
            ));
        }
    }

    /// The ports this instance listens on.
    fn ports(&self) -> Vec<u16> {
        [Some(self.imap_port), Some(self.lmtp_port), self.imaps_port]
            .into_iter()
            .flatten()
            .collect()
    }

    /// Runs `dovecot -F` (so the child's PID is the master PID) and waits until all its ports
    /// accept connections.
    fn launch(&mut self) -> Result<(), String> {
        let output = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.output_path())
            .map_err(|e| format!("cannot open {}: {e}", self.output_path().display()))?;
        let stderr = output.try_clone().map_err(|e| e.to_string())?;
        let started = Instant::now();
        let master = Command::new(DOVECOT)
            .arg("-F")
            .arg("-c")
            .arg(self.config())
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot run {DOVECOT}: {e}"))?;
        let ports = self.ports();
        let master = self.master.insert(master);
        loop {
            if let Some(status) = master.try_wait().map_err(|e| e.to_string())? {
                self.master = None;
                return Err(format!("dovecot exited at start ({status})"));
            }
            if ports.iter().copied().all(is_open) {
                return Ok(());
            }
            if started.elapsed() > DEADLINE {
                return Err(format!(
                    "dovecot did not listen on ports {ports:?} within {DEADLINE:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM to the master PID and to the imap and lmtp processes it spawned (found by their
    /// parent PID), as a service manager stopping the whole service does. Signalled alone, the
    /// master leaves IMAP sessions running for up to 10 s after their last command (Dovecot's
    /// `IMAP_DIE_IDLE_SECS`), and a client would go on with them across a restart; this way
    /// every client gets `* BYE Server shutting down.` at once. SIGKILL to the master if it has
    /// not exited by the deadline. Then waits until nothing listens on the ports any more.
    fn try_stop(&mut self) -> Result<(), String> {
        let Some(mut master) = self.master.take() else {
            return Ok(());
        };
        let started = Instant::now();
        let mut pids = vec![master.id()];
        pids.extend(children(master.id(), &["imap", "lmtp"]));
        // No libc here: the shell's kill builtin sends the signals.
        let signalled = Command::new("sh")
            .args(["-c", "kill -TERM \"$@\" 2>/dev/null", "sh"])
            .args(pids.iter().map(u32::to_string))
            .status();
        let mut problem = signalled
            .err()
            .map(|e| format!("cannot run sh to signal dovecot: {e}"));
        loop {
            if let Ok(Some(_)) = master.try_wait() {
                break;
            }
            if problem.is_some() || started.elapsed() > DEADLINE {
                problem.get_or_insert_with(|| {
                    format!(
                        "dovecot (PID {}) did not stop within {DEADLINE:?}",
                        master.id()
                    )
                });
                let _ = master.kill();
                let _ = master.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Login processes may hold the listening sockets a moment longer than the master.
        while self.ports().into_iter().any(is_open) {
            if started.elapsed() > DEADLINE {
                return Err(format!(
                    "ports {:?} still open {DEADLINE:?} after stopping dovecot",
                    self.ports()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        problem.map_or(Ok(()), Err)
    }

    /// Whether the last start failed because a port was already taken.
    fn port_was_taken(&self) -> bool {
        let out = std::fs::read_to_string(self.output_path()).unwrap_or_default();
        (self.log() + &out).contains("Address already in use")
    }

    /// EXAMINE: (messages, UIDVALIDITY), or None if the folder does not exist.
    fn examine(&self, user: &str, folder: &str) -> Option<(usize, u32)> {
        let port = self.imap_port;
        self.imap(&format!("examine {user} {folder}"), async move {
            let mut session = login(port, user).await?;
            if !folder_exists(&mut session, folder).await? {
                logout(session).await;
                return Ok(None);
            }
            let mailbox = session
                .examine(folder)
                .await
                .context(format!("EXAMINE {folder}"))?;
            logout(session).await;
            let uidvalidity = mailbox
                .uid_validity
                .ok_or_else(|| format!("EXAMINE {folder} gave no UIDVALIDITY"))?;
            Ok(Some((mailbox.exists as usize, uidvalidity)))
        })
    }

    /// Runs one IMAP conversation on a runtime of its own, with a deadline.
    fn imap<T: Send>(
        &self,
        what: &str,
        conversation: impl Future<Output = Result<T, String>> + Send,
    ) -> T {
        let deadline = async {
            tokio::time::timeout(DEADLINE, conversation)
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {DEADLINE:?}")))
        };
        match block_on(deadline) {
            Ok(value) => value,
            Err(e) => self.fail(&format!("IMAP {what} on port {}: {e}", self.imap_port)),
        }
    }

    /// Panics with `message`, the tail of dovecot.log and anything dovecot printed itself.
    fn fail(&self, message: &str) -> ! {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n");
        let output = std::fs::read_to_string(self.output_path()).unwrap_or_default();
        let output = if output.trim().is_empty() {
            String::new()
        } else {
            format!("\n--- dovecot's own output ---\n{}", output.trim_end())
        };
        panic!(
            "{message}\n--- last {LOG_TAIL} lines of {} ---\n{tail}{output}",
            self.log_path().display()
        );
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if let Err(e) = self.try_stop() {
            eprintln!("dovecot on port {}: {e}", self.imap_port);
        }
    }
}

/// `N` distinct ports nothing listens on right now.
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: [TcpListener; N] =
        std::array::from_fn(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"));
    listeners.map(|l| l.local_addr().expect("local address").port())
}

/// A test CA (`ca.pem`) and a server certificate for `localhost` and `127.0.0.1` signed by it
/// (`server.pem`, `server.key`) in `root`, with openssl.
fn make_certificates(root: &Path) {
    let openssl = |args: &str| {
        let args: Vec<&str> = args.split_whitespace().collect();
        let out = Command::new("openssl")
            .args(&args)
            .current_dir(root)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run openssl: {e}"));
        assert!(
            out.status.success(),
            "openssl {args:?} in {} failed: {}\n{}",
            root.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(
        "req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=maildesk-test-CA \
         -keyout ca.key -out ca.pem -addext basicConstraints=critical,CA:TRUE \
         -addext keyUsage=critical,keyCertSign,cRLSign",
    );
    openssl("req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr");
    write(
        &root.join("server.ext"),
        b"subjectAltName=DNS:localhost,IP:127.0.0.1\n\
          basicConstraints=CA:FALSE\n\
          extendedKeyUsage=serverAuth\n",
        0o644,
    );
    openssl(
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
         -extfile server.ext -out server.pem",
    );
}

fn is_open(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn command_output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        out.status
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
}

fn write(path: &Path, contents: &[u8], mode: u32) {
    std::fs::write(path, contents)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    set_mode(path, mode);
}

/// As root, Dovecot's mail (nobody) and auth (dovecot) processes must reach `path`: every
/// directory above it needs the search bit for others. Adds it to `dir` and to directories in
/// the system's temporary directory (a `tempdir()` is 0700); anything else must have it already.
fn make_searchable(path: &Path, dir: &Path) {
    let tmp = std::env::temp_dir();
    for ancestor in path.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(ancestor) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o001 != 0 {
            continue;
        }
        if ancestor == dir || (ancestor.starts_with(&tmp) && ancestor != tmp) {
            set_mode(ancestor, mode | 0o011);
            continue;
        }
        panic!(
            "{} (mode {mode:o}) is not searchable by other users, so Dovecot's processes \
             (nobody, dovecot) cannot reach {}: start Dovecot in a temporary directory",
            ancestor.display(),
            path.display()
        );
    }
}

/// The processes whose parent is `parent` and whose command (/proc/PID/comm) is one of `names`.
fn children(parent: u32, names: &[&str]) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // /proc/PID/stat: "PID (COMM) STATE PPID ..."; COMM may contain spaces and ')'.
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                return false;
            };
            let ppid = stat[close + 1..].split_whitespace().nth(1);
            ppid == Some(parent.to_string().as_str()) && names.contains(&&stat[open + 1..close])
        })
        .collect()
}

/// Runs `future` on a new current-thread runtime; on a thread of its own when the caller is
/// already inside a runtime (e.g. a `#[tokio::test]`), where `block_on` would panic.
fn block_on<F>(future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    let run = move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(future)
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| {
            s.spawn(run)
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    } else {
        run()
    }
}

async fn login(port: u16, user: &str) -> Result<Session, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .context("connect")?;
    let mut client = async_imap::Client::new(tcp);
    // async-imap 0.12 does not read the greeting itself.
    client
        .read_response()
        .await
        .context("greeting")?
        .ok_or("connection closed before the greeting")?;
    client
        .login(user, PASSWORD)
        .await
        .map_err(|(e, _client)| format!("LOGIN {user}: {e}"))
}

async fn logout(mut session: Session) {
    // Not part of what is observed: a failing LOGOUT does not fail the helper.
    let _ = session.logout().await;
}

async fn folder_exists(session: &mut Session, folder: &str) -> Result<bool, String> {
    let pattern = format!("\"{}\"", folder.replace('\\', "\\\\").replace('"', "\\\""));
    let names: Vec<_> = session
        .list(Some(""), Some(&pattern))
        .await
        .context(format!("LIST \"\" {pattern}"))?
        .try_collect()
        .await
        .context(format!("LIST \"\" {pattern}"))?;
    let inbox = folder.eq_ignore_ascii_case("INBOX");
    Ok(names
        .iter()
        .any(|n| n.name() == folder || (inbox && n.name().eq_ignore_ascii_case("INBOX"))))
}

fn flag_name(flag: Flag<'_>) -> String {
    match flag {
        Flag::Seen => "\\Seen".to_string(),
        Flag::Answered => "\\Answered".to_string(),
        Flag::Flagged => "\\Flagged".to_string(),
        Flag::Deleted => "\\Deleted".to_string(),
        Flag::Draft => "\\Draft".to_string(),
        Flag::Recent => "\\Recent".to_string(),
        Flag::MayCreate => "\\*".to_string(),
        Flag::Custom(name) => name.into_owned(),
    }
}

trait Context<T> {
    fn context(self, what: impl Display) -> Result<T, String>;
}

impl<T, E: Display> Context<T> for Result<T, E> {
    fn context(self, what: impl Display) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}
