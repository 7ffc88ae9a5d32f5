//! Peak memory of a benchmarked process, read from procfs while it runs.

/// VmHWM (peak resident set) of a running process, in KB, from `/proc/PID/status`.
pub fn high_water_mark_kb(status_file: &str) -> Option<u64> {
    let status = std::fs::read_to_string(status_file).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
