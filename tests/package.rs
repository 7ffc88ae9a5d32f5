//! The Debian package, taken apart without installing it: `scripts/package --dev` builds
//! it from the test binary, `dpkg-deb` unpacks it into a directory, and the unpacked unit
//! and binary are checked as they would run (`systemd-analyze`, `maildesk check`).
//! Needs cargo-deb and systemd's tools, which `scripts/test` installs.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::REPO;

/// The package built once for all tests of this file (building it rewrites
/// `target/deb-assets`, so tests must not build it side by side).
struct Package {
    deb: PathBuf,
    /// `dpkg-deb -x`: the files as they would be installed.
    root: PathBuf,
    /// `dpkg-deb -e`: control, conffiles, maintainer scripts.
    control: PathBuf,
}

fn package() -> &'static Package {
    static PACKAGE: OnceLock<Package> = OnceLock::new();
    PACKAGE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("package");
        let _ = std::fs::remove_dir_all(&dir);
        let out = run(Command::new(Path::new(REPO).join("scripts/package"))
            .args(["--dev", "--out"])
            .arg(dir.join("deb")));
        let deb = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        assert!(deb.is_file(), "no package at {deb:?}");
        let (root, control) = (dir.join("root"), dir.join("control"));
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
        run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
        Package { deb, root, control }
    })
}

/// Runs `command`, requires success, returns its output.
fn run(command: &mut Command) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        common::stderr(&out)
    );
    out
}

/// Every file (not directory) under `dir`, relative to `base`.
fn files_under(base: &Path, dir: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            found.extend(files_under(base, &path));
        } else {
            let relative = path.strip_prefix(base).expect("under base");
            found.insert(relative.to_string_lossy().into_owned());
        }
    }
    found
}

#[test]
fn package_holds_the_binary_config_rules_templates_unit_and_completions() {
    let package = package();
    let name = package.deb.file_name().expect("name").to_string_lossy();
    assert!(
        name.starts_with(&format!("maildesk_{}-1_", env!("CARGO_PKG_VERSION"))),
        "{name}"
    );
    let files = files_under(&package.root, &package.root);
    let mut expected: BTreeSet<String> = [
        "usr/bin/maildesk",
        "etc/maildesk/maildesk.toml",
        "etc/maildesk/rules/README.md",
        "usr/lib/systemd/system/maildesk.service",
        "usr/share/bash-completion/completions/maildesk",
        "usr/share/zsh/vendor-completions/_maildesk",
        "usr/share/fish/vendor_completions.d/maildesk.fish",
        "usr/share/doc/maildesk/README.md",
        "usr/share/doc/maildesk/copyright",
    ]
    .map(String::from)
    .into();
    // The shipped rules and templates, all of them, as in the repository.
    let repo = Path::new(REPO);
    for dir in ["rules", "templates"] {
        expected.extend(
            files_under(repo, &repo.join(dir))
                .into_iter()
                .filter(|f| f.ends_with(".toml") || f.ends_with(".txt"))
                .map(|f| format!("etc/maildesk/{f}")),
        );
    }
    let others: BTreeSet<String> = files
        .iter()
        .filter(|f| !f.starts_with("usr/share/man/man1/"))
        .cloned()
        .collect();
    assert_eq!(
        others, expected,
        "the package's files besides the man pages"
    );

    let binary = package.root.join("usr/bin/maildesk");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&binary).expect("binary").permissions(),
    );
    assert_eq!(mode & 0o777, 0o755, "usr/bin/maildesk mode");
    let version = run(Command::new(&binary).arg("--version"));
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("maildesk {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn man_pages_and_completions_come_from_the_command_line_definitions() {
    let package = package();
    let man: BTreeSet<String> = files_under(&package.root, &package.root.join("usr/share/man"))
        .into_iter()
        .collect();
    // One page per visible subcommand, none for the hidden `generate`.
    for page in ["maildesk.1.gz", "maildesk-run.1.gz", "maildesk-check.1.gz"] {
        assert!(
            man.contains(&format!("usr/share/man/man1/{page}")),
            "{page} in {man:?}"
        );
    }
    assert!(
        man.iter()
            .all(|p| p.starts_with("usr/share/man/man1/maildesk") && p.ends_with(".1.gz")),
        "{man:?}"
    );
    assert!(!man.iter().any(|p| p.contains("generate")), "{man:?}");
    let page = run(Command::new("gzip")
        .arg("-dc")
        .arg(package.root.join("usr/share/man/man1/maildesk.1.gz")));
    let page = String::from_utf8_lossy(&page.stdout);
    assert!(page.contains(".TH maildesk 1"), "{page}");
    assert!(page.contains("maildesk\\-run(1)"), "{page}");

    let read = |path: &str| {
        std::fs::read_to_string(package.root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let bash = read("usr/share/bash-completion/completions/maildesk");
    assert!(bash.contains("complete -F _maildesk"), "{bash}");
    assert!(bash.contains("maildesk,check)"), "{bash}");
    let zsh = read("usr/share/zsh/vendor-completions/_maildesk");
    assert!(zsh.starts_with("#compdef maildesk"), "{zsh}");
    assert!(zsh.contains("'run:Read the mailboxes"), "{zsh}");
    let fish = read("usr/share/fish/vendor_completions.d/maildesk.fish");
    assert!(fish.contains("complete -c maildesk"), "{fish}");
    assert!(fish.contains("-a \"tickets\""), "{fish}");
}

#[test]
fn every_file_under_etc_is_a_conffile_and_the_scripts_create_the_user() {
    let package = package();
    let conffiles =
        std::fs::read_to_string(package.control.join("conffiles")).expect("DEBIAN/conffiles");
    let conffiles: BTreeSet<String> = conffiles.lines().map(String::from).collect();
    let under_etc: BTreeSet<String> = files_under(&package.root, &package.root.join("etc"))
        .into_iter()
        .map(|f| format!("/{f}"))
        .collect();
    assert!(under_etc.contains("/etc/maildesk/maildesk.toml"));
    assert_eq!(conffiles, under_etc, "DEBIAN/conffiles");

    let postinst = std::fs::read_to_string(package.control.join("postinst")).expect("postinst");
    assert!(
        postinst.contains("adduser --system --group"),
        "postinst:\n{postinst}"
    );
    assert!(
        postinst.contains("install -d -o maildesk -g maildesk -m 0750 /var/lib/maildesk"),
        "postinst:\n{postinst}"
    );
    // cargo-deb's systemd part: enabled on install, started when systemd runs.
    assert!(
        postinst.contains("deb-systemd-helper enable maildesk.service"),
        "postinst:\n{postinst}"
    );
    let control = std::fs::read_to_string(package.control.join("control")).expect("control");
    let depends = control
        .lines()
        .find_map(|l| l.strip_prefix("Depends: "))
        .unwrap_or_else(|| panic!("no Depends:\n{control}"));
    assert!(depends.contains("adduser"), "{depends}");
    assert!(depends.contains("libc6"), "{depends}");
    for script in ["postinst", "postrm", "prerm"] {
        run(Command::new("sh")
            .arg("-n")
            .arg(package.control.join(script)));
    }
}

/// The unit as installed, with its paths moved into the unpacked tree: systemd-analyze
/// needs ExecStart's binary and the Documentation= man page to exist.
fn unpacked_unit(package: &Package) -> PathBuf {
    let root = package.root.to_string_lossy();
    let unit =
        std::fs::read_to_string(package.root.join("usr/lib/systemd/system/maildesk.service"))
            .expect("unit");
    for line in [
        "Type=notify",
        "User=maildesk",
        "ExecStart=/usr/bin/maildesk --config /etc/maildesk/maildesk.toml run",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "StateDirectory=maildesk",
        "ReadWritePaths=/var/lib/maildesk",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
    ] {
        assert!(unit.lines().any(|l| l == line), "no {line:?} in the unit");
    }
    let moved = unit
        .replace("/usr/bin/maildesk", &format!("{root}/usr/bin/maildesk"))
        .replace("/etc/maildesk/", &format!("{root}/etc/maildesk/"));
    let dir = package.root.parent().expect("dir").join("unit");
    std::fs::create_dir_all(&dir).expect("unit dir");
    let path = dir.join("maildesk.service");
    std::fs::write(&path, moved).expect("write the unit");
    path
}

#[test]
fn unit_passes_systemd_analyze_verify_and_is_hardened() {
    let package = package();
    let unit = unpacked_unit(package);
    let verify = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .env("MANPATH", package.root.join("usr/share/man")));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        common::stderr(&verify)
    );
    assert!(said.trim().is_empty(), "systemd-analyze verify:\n{said}");

    // Exposure on systemd's scale of 0 (locked down) to 10 (unprotected): at most 2.0.
    run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(&unit));
}

#[test]
fn unpacked_binary_accepts_the_shipped_config() {
    let package = package();
    // A copy of the unpacked /etc/maildesk, so that the files the test adds are not taken
    // for the package's; the config stays beside rules/ and templates/, which it names
    // by relative paths.
    let scratch = package.root.parent().expect("dir").join("check");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(scratch.join("var/lib/maildesk")).expect("state dir");
    run(Command::new("cp")
        .arg("-a")
        .arg(package.root.join("etc"))
        .arg(&scratch));
    let etc = scratch.join("etc/maildesk");
    let config = etc.join("maildesk.toml");
    let shipped = std::fs::read_to_string(&config).expect("config");
    // postinst creates the database's directory; here it is the scratch tree's.
    let database = "database = \"/var/lib/maildesk/maildesk.db\"";
    assert!(shipped.contains(database), "{shipped}");
    let shipped = shipped.replace(
        database,
        &format!(
            "database = \"{}/var/lib/maildesk/maildesk.db\"",
            scratch.display()
        ),
    );
    std::fs::write(&config, &shipped).expect("write");
    let check = || {
        run(Command::new(package.root.join("usr/bin/maildesk"))
            .arg("--config")
            .arg(&config)
            .arg("check"))
    };
    let out = check();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("ok (0 mailbox(es))"), "{said}");
    assert!(
        said.contains(&format!("{}: ok", etc.join("templates").display())),
        "{said}"
    );
    assert!(common::stderr(&out).is_empty(), "{}", common::stderr(&out));

    // The commented IMAP example works once uncommented, with its password file.
    let imap = uncomment_first(&shipped, "# [[mailbox]]");
    std::fs::write(etc.join("imap.pass"), "secret\n").expect("password");
    std::fs::write(&config, &imap).expect("write");
    let out = check();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("ok (1 mailbox(es))"), "{said}\n{imap}");
}

/// `text` with the commented block starting at the line `header` uncommented, up to the
/// first line that is only "#".
fn uncomment_first(text: &str, header: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let start = lines
        .iter()
        .position(|l| l == header)
        .unwrap_or_else(|| panic!("no {header:?}"));
    for line in &mut lines[start..] {
        match line.strip_prefix("# ") {
            Some(rest) => *line = rest.to_string(),
            None => break,
        }
    }
    lines.join("\n")
}
