//! A real SMTP server for tests: Debian's aiosmtpd on 127.0.0.1, a free port, writing every
//! mail it accepts to a Maildir; stopped when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct SmtpSink {
    pub port: u16,
    pub maildir: PathBuf,
    child: Child,
}

const AIOSMTPD: &str = "/usr/bin/aiosmtpd";

impl SmtpSink {
    pub fn start(dir: &Path) -> SmtpSink {
        Self::start_on(dir, free_port())
    }

    pub fn start_on(dir: &Path, port: u16) -> SmtpSink {
        Self::spawn(
            dir.join("smtp-sink"),
            port,
            "aiosmtpd.handlers.Mailbox",
            None,
        )
    }

    /// A server that delivers into `maildir`: another desk's inbox.
    pub fn start_into(maildir: PathBuf) -> SmtpSink {
        Self::spawn(maildir, free_port(), "aiosmtpd.handlers.Mailbox", None)
    }

    fn spawn(maildir: PathBuf, port: u16, handler: &str, python_path: Option<&Path>) -> SmtpSink {
        assert!(
            Path::new(AIOSMTPD).exists(),
            "{AIOSMTPD} is missing: run scripts/test, which installs Debian's python3-aiosmtpd"
        );
        let child = Command::new(AIOSMTPD)
            .args(["-n", "-l", &format!("127.0.0.1:{port}"), "-c", handler])
            .arg(&maildir)
            .envs(python_path.map(|p| ("PYTHONPATH", p)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let sink = SmtpSink {
            port,
            maildir,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not listen on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        sink
    }

    /// The server's process, e.g. to stop it with SIGSTOP: it then accepts connections
    /// (the kernel queues them) and never answers, as a hung relay does.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every mail received, as text (aiosmtpd adds X-MailFrom and X-RcptTo headers),
    /// whether still in new/ or already read into cur/ by a desk reading this Maildir.
    pub fn received(&self) -> Vec<String> {
        let mut mails: Vec<String> = ["new", "cur"]
            .iter()
            .filter_map(|sub| std::fs::read_dir(self.maildir.join(sub)).ok())
            .flatten()
            .map(|e| {
                String::from_utf8_lossy(&std::fs::read(e.expect("entry").path()).expect("read"))
                    .into_owned()
            })
            .collect();
        mails.sort();
        mails
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl SmtpSink {
    /// Like [`SmtpSink::start`], but the server refuses (550 5.1.1, user unknown) every
    /// recipient whose address starts with `refused`: a real permanent failure.
    pub fn start_refusing(dir: &Path, refused: &str) -> SmtpSink {
        let module_dir = dir.join("smtp-handler");
        std::fs::create_dir_all(&module_dir).expect("handler dir");
        std::fs::write(
            module_dir.join("refusing.py"),
            format!(
                "from aiosmtpd.handlers import Mailbox\n\
                 class Refusing(Mailbox):\n    \
                     async def handle_RCPT(self, server, session, envelope, address, rcpt_options):\n        \
                         if address.startswith({refused:?}):\n            \
                             return '550 5.1.1 <%s>: Recipient address rejected: User unknown' % address\n        \
                         envelope.rcpt_tos.append(address)\n        \
                         return '250 OK'\n"
            ),
        )
        .expect("handler");
        Self::spawn(
            dir.join("smtp-sink"),
            free_port(),
            "refusing.Refusing",
            Some(&module_dir),
        )
    }
}
