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
        assert!(
            Path::new(AIOSMTPD).exists(),
            "{AIOSMTPD} is missing: run scripts/test, which installs Debian's python3-aiosmtpd"
        );
        let maildir = dir.join("smtp-sink");
        let child = Command::new(AIOSMTPD)
            .args([
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(&maildir)
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

    /// Every mail received, as text (aiosmtpd adds X-MailFrom and X-RcptTo headers).
    pub fn received(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        let mut mails: Vec<String> = entries
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
