//! Helpers of the config and accounts-file tests: commands run as an unprivileged user
//! (as a packaged daemon runs).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use super::Desk;

/// Whether this process runs as root (tests then drop to `nobody` to see what a
/// service user sees: root can write whatever the permission bits say).
pub fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// Runs `maildesk --config CONFIG ARGS` as user `nobody` (via setpriv when root).
pub fn maildesk_as_nobody(desk: &Desk, args: &[&str]) -> Output {
    // nobody must reach the demo copy; the temporary directory is private by default.
    std::fs::set_permissions(desk.dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let binary = env!("CARGO_BIN_EXE_maildesk");
    let mut command = if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", binary]);
        c
    } else {
        Command::new(binary)
    };
    command
        .arg("--config")
        .arg(desk.config())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run maildesk as nobody")
}

/// 1-based line of the first line of `text` containing `needle`.
pub fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no {needle:?} in:\n{text}"))
        + 1
}

/// Sets the mode of `path`.
pub fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
