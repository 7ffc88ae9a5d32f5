//! Telling systemd how the daemon is doing (`Type=notify` in `debian/maildesk.service`):
//! ready once the sources run, stopping when a stop begins, alive while the runtime
//! still turns. Outside systemd (`$NOTIFY_SOCKET` unset) every call does nothing, so the
//! daemon behaves the same in a terminal, in tests and under the service manager.

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

/// The sources are spawned: `systemctl start` returns, and units ordered after maildesk
/// start, only now, not when the process merely exists.
pub fn ready() {
    send(&[NotifyState::Ready]);
}

/// A stop has begun and the round in progress is being finished: systemd shows
/// "deactivating" instead of taking the wait for a hang.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Pings the watchdog at half the interval systemd asked for (`WatchdogSec=`), until
/// `shutdown`. A runtime that stops scheduling tasks stops the pings, and systemd
/// restarts the service. Returns at once when no watchdog is set.
pub async fn watchdog(shutdown: CancellationToken) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let mut ticks = tokio::time::interval(interval / 2);
    tracing::info!(
        interval_ms = interval.as_millis(),
        "systemd watchdog enabled"
    );
    loop {
        tokio::select! {
            _ = ticks.tick() => send(&[NotifyState::Watchdog]),
            _ = shutdown.cancelled() => return,
        }
    }
}

/// A lost notification must not stop the desk: systemd acts on its absence (start
/// timeout, watchdog), which the log line then explains.
fn send(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify systemd");
    }
}
