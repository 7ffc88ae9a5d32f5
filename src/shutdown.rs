//! Stopping within a bound. SIGTERM asks every task to finish what it is doing; a task
//! that is stuck (a server that accepts but never answers, a timer of minutes) must not
//! hold the stop longer than [`GRACE`]. Abandoning work is always safe: a transaction
//! commits whole or not at all, and a source acknowledges only what was committed.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How long work in progress may go on after the stop was asked for. Together with the
/// few seconds of logging out and joining, a stop stays under the 10 s that systemd's
/// `TimeoutStopSec` and operators expect.
pub const GRACE: Duration = Duration::from_secs(5);

/// Completes [`GRACE`] after `stop` was cancelled: race it against work that would
/// rather finish than be dropped (a commit, an SMTP transaction).
pub async fn grace_over(stop: &CancellationToken) {
    stop.cancelled().await;
    tokio::time::sleep(GRACE).await;
}
