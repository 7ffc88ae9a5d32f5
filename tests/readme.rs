//! The README's two commands work in either order, any number of times: the demo
//! (`scripts/demo`) runs on a copy under an ignored path and never changes a tracked
//! file, so the tests that read `examples/` find them as committed.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Desk, REPO};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=test", "-c", "user.email=test@example.org"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        common::stderr(&out)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A checkout of this tree as it is now (committed or not, without ignored files), in a
/// repository of its own.
fn checkout_copy() -> tempfile::TempDir {
    let copy = tempfile::tempdir().expect("tempdir");
    let files = git(
        Path::new(REPO),
        &[
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ],
    );
    for file in files.split('\0').filter(|f| !f.is_empty()) {
        let from = Path::new(REPO).join(file);
        if !from.is_file() {
            continue; // deleted in the work tree, not yet committed
        }
        let to = copy.path().join(file);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&from, &to).expect("copy");
    }
    git(copy.path(), &["init", "-q"]);
    git(copy.path(), &["add", "-A"]);
    git(copy.path(), &["commit", "-qm", "checkout"]);
    copy
}

fn demo(root: &Path) -> String {
    let out = Command::new(root.join("scripts/demo"))
        .current_dir(root)
        .env("MAILDESK", env!("CARGO_BIN_EXE_maildesk"))
        .output()
        .expect("scripts/demo");
    assert!(out.status.success(), "demo: {}", common::stderr(&out));
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn the_demo_changes_no_tracked_file_and_can_run_again() {
    let copy = checkout_copy();
    let root = copy.path();
    for _ in 0..2 {
        let out = demo(root);
        assert!(out.contains("stored 7 message(s)"), "{out}");
        assert!(out.contains("sent 5 mail(s)"), "{out}");
        assert!(out.contains("Sito completamente down"), "{out}");
        assert!(out.contains("target/demo/examples/demo.db"), "{out}");
        assert_eq!(
            git(root, &["status", "--porcelain"]),
            "",
            "the checkout is unchanged"
        );
        assert_eq!(
            git(root, &["status", "--porcelain", "--ignored"]),
            "!! target/\n",
            "everything it wrote is under target/"
        );
    }
    let answers = std::fs::read_dir(root.join("target/demo/examples/out/mail"))
        .expect("the demo's answers")
        .count();
    assert_eq!(
        answers, 5,
        "a fresh copy each time: the second run answered anew"
    );

    // What the tests read from examples/ is still as committed: the demo desk of the
    // test harness, made from this checkout, handles the seven mails.
    let desk = Desk::demo_from(root);
    assert_eq!(desk.files_in("new").len(), 7);
    let summary = desk.ok(&["run", "--once"]);
    assert!(summary.contains("stored 7 message(s)"), "{summary}");
    assert_eq!(desk.sent_mails().len(), 5);
}
