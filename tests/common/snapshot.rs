//! Snapshot files: expected command output kept in `tests/snapshots/`.

use std::path::Path;

use super::REPO;

/// Compares with `tests/snapshots/<name>.txt`, or writes it when UPDATE_SNAPSHOTS=1.
pub fn snapshot(name: &str, actual: &str) {
    let file = Path::new(REPO)
        .join("tests/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_SNAPSHOTS=1 to write it",
            file.display()
        )
    });
    if expected == actual {
        return;
    }
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let first = (0..e.len().max(a.len()))
        .find(|&i| e.get(i) != a.get(i))
        .unwrap_or(0);
    panic!(
        "{} differs from the output, first at line {}:\n  expected: {:?}\n  actual:   {:?}\n\nwhole output:\n{actual}\n(UPDATE_SNAPSHOTS=1 rewrites the snapshot; read the diff before keeping it)",
        file.display(),
        first + 1,
        e.get(first),
        a.get(first)
    );
}
