//! Delivering queued mail: the file transport (the embedded default) or an SMTP relay.
//!
//! Each mail's bytes, Message-ID included, were fixed when it was queued, so a mail sent
//! again after a crash between the transport's acceptance and our commit is the same mail.

use chrono::{DateTime, Duration, Utc};
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio_util::sync::CancellationToken;

use crate::config::{Outgoing, Security, TransportKind};
use crate::store::outbox::PendingMail;
use crate::store::outgoing::GivenUp;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("outgoing transport: {0}")]
    Setup(String),
}

pub enum Transport {
    File(AsyncFileTransport<Tokio1Executor>),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

impl Transport {
    pub fn from_config(out: &Outgoing) -> Result<Transport, TransportError> {
        let setup = |e: &dyn std::fmt::Display| TransportError::Setup(e.to_string());
        match out.transport {
            TransportKind::File => {
                let dir = out
                    .dir
                    .as_ref()
                    .ok_or_else(|| setup(&"file transport needs `dir`"))?;
                std::fs::create_dir_all(dir.get_ref()).map_err(|e| {
                    setup(&format!("cannot create {}: {e}", dir.get_ref().display()))
                })?;
                Ok(Transport::File(AsyncFileTransport::new(dir.get_ref())))
            }
            TransportKind::Smtp => {
                let host = out
                    .host
                    .as_ref()
                    .ok_or_else(|| setup(&"smtp transport needs `host`"))?
                    .get_ref();
                let builder = match out.security.unwrap_or(Security::Starttls) {
                    Security::Tls => {
                        AsyncSmtpTransport::<Tokio1Executor>::relay(host).map_err(|e| setup(&e))?
                    }
                    Security::Starttls => {
                        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                            .map_err(|e| setup(&e))?
                    }
                    // The config allows plain text only towards loopback.
                    Security::Plain => {
                        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                    }
                };
                let mut builder = builder.timeout(Some(std::time::Duration::from_secs(30)));
                if let Some(port) = out.port {
                    builder = builder.port(port);
                }
                if let Some(user) = &out.user {
                    let password = out
                        .password()
                        .read()
                        .map_err(|e| setup(&format!("cannot read the SMTP password: {e}")))?
                        .ok_or_else(|| setup(&"the SMTP password is not set"))?;
                    builder = builder.credentials(Credentials::new(user.clone(), password));
                }
                Ok(Transport::Smtp(builder.build()))
            }
        }
    }

    async fn send(&self, mail: &PendingMail) -> Result<(), SendError> {
        let permanent = |message: String| SendError {
            message,
            permanent: true,
        };
        let from = mail
            .envelope_from
            .parse()
            .map_err(|e| permanent(format!("bad sender {}: {e}", mail.envelope_from)))?;
        let to = mail
            .recipient
            .parse()
            .map_err(|e| permanent(format!("bad recipient {}: {e}", mail.recipient)))?;
        let envelope = Envelope::new(Some(from), vec![to]).map_err(|e| permanent(e.to_string()))?;
        match self {
            Transport::File(t) => t
                .send_raw(&envelope, &mail.raw)
                .await
                .map(drop)
                .map_err(|e| SendError {
                    message: e.to_string(),
                    permanent: false,
                }),
            Transport::Smtp(t) => t
                .send_raw(&envelope, &mail.raw)
                .await
                .map(drop)
                .map_err(|e| SendError {
                    // 5xx: the server refuses this mail for good; retrying cannot help.
                    permanent: e.is_permanent(),
                    message: e.to_string(),
                }),
        }
    }
}

/// Why a delivery attempt failed.
#[derive(Debug)]
struct SendError {
    message: String,
    permanent: bool,
}

#[derive(Debug, Default, Clone)]
pub struct Delivery {
    pub sent: usize,
    pub deferred: usize,
    /// Given up: refused for good, or too old. Those of a ticket, for staff alerts.
    pub given_up: Vec<GivenUp>,
}

/// Wait before attempt `attempts + 1`: 1 min, doubling, at most 1 h.
pub fn retry_delay(attempts: u32) -> Duration {
    Duration::minutes(1i64 << attempts.min(6)).min(Duration::hours(1))
}

/// Sends every mail that is due. A failure is tried again later, unless the server
/// refused the mail for good or it has waited longer than `max_age`: then it is given up.
/// Once `stop` is cancelled no new mail is started, and the one being sent gets
/// [`GRACE`](crate::shutdown::GRACE) to finish; a mail abandoned then stays due.
pub async fn deliver_due(
    store: &mut Store,
    transport: &Transport,
    now: DateTime<Utc>,
    max_age: Duration,
    stop: &CancellationToken,
) -> Result<Delivery, StoreError> {
    let mut delivery = Delivery::default();
    // A page at a time: memory stays small however long the queue. Every mail leaves the
    // due set when tried (sent, or retried later), so the loop ends.
    while !stop.is_cancelled() {
        let page = store.due_mail(now, 100)?;
        if page.is_empty() {
            break;
        }
        for mail in page {
            if stop.is_cancelled() {
                break;
            }
            let result = tokio::select! {
                result = transport.send(&mail) => result,
                _ = crate::shutdown::grace_over(stop) => {
                    tracing::warn!(outbox = mail.id, to = %mail.recipient, "stopping: abandoned a delivery that did not finish in time; the mail stays queued");
                    break;
                }
            };
            match result {
                Ok(()) => {
                    store.mark_sent(&mail, Utc::now())?;
                    delivery.sent += 1;
                    tracing::info!(
                        outbox = mail.id,
                        ticket = mail.ticket,
                        message_id = mail.message_id.as_deref(),
                        recipient = %mail.recipient,
                        "sent mail"
                    );
                }
                Err(SendError { message, permanent }) => {
                    let too_old = now - mail.queued_at > max_age;
                    if permanent || too_old {
                        let why = if permanent {
                            message
                        } else {
                            format!(
                                "{message} (still undelivered after {} hours)",
                                max_age.num_hours()
                            )
                        };
                        store.mark_failed(&mail, &why, Utc::now())?;
                        delivery.given_up.push(GivenUp {
                            outbox: mail.id,
                            ticket: mail.ticket,
                            recipient: mail.recipient.clone(),
                            message_id: mail.message_id.clone(),
                            error: why.clone(),
                        });
                        tracing::error!(
                            outbox = mail.id,
                            ticket = mail.ticket,
                            message_id = mail.message_id.as_deref(),
                            recipient = %mail.recipient,
                            reason = %why,
                            "delivery given up; ticket flagged for staff"
                        );
                    } else {
                        let retry_at = Utc::now() + retry_delay(mail.attempts);
                        store.mark_retry(&mail, &message, retry_at)?;
                        delivery.deferred += 1;
                        tracing::warn!(outbox = mail.id, to = %mail.recipient, error = %message, %retry_at, "delivery failed, will retry");
                    }
                }
            }
        }
    }
    Ok(delivery)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_up_to_an_hour() {
        assert_eq!(retry_delay(0), Duration::minutes(1));
        assert_eq!(retry_delay(3), Duration::minutes(8));
        assert_eq!(retry_delay(30), Duration::hours(1));
    }
}
