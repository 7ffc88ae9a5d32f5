//! An IMAP mailbox as a source, exactly once.
//!
//! Per mailbox the database keeps UIDVALIDITY and the highest UID committed, written in
//! the same transaction as the messages. Mail is fetched by UID with `BODY.PEEK[]` (never
//! by sequence number, never marking it read), stored, and only then moved to the
//! processed folder or flagged `\Seen`. After a crash, messages at or below the cursor
//! still in the folder were committed but not acknowledged: they are acknowledged, not
//! stored again. Messages above it are fetched again; the content hash recognises any
//! that were stored in a batch whose cursor did not commit (it always commits with them).

mod connect;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_imap::extensions::idle::IdleResponse;
use async_imap::imap_proto::{Response, Status};
use async_imap::types::UnsolicitedResponse;
use chrono::Utc;
use futures::TryStreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use connect::{Endpoint, Session, connect};

use super::{SourceMessage, Totals};
use crate::config::{self, AfterProcessing, InitialSync, Role, Security};
use crate::daemon::health::MailboxState;
use crate::metrics::{self, DeskState, Stored};
use crate::pipeline::{CursorAdvance, Outcome, Pipeline, Prepared, Reader};
use crate::store::StoreError;
use crate::store::cursors::Cursor;

#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("login refused: {0}")]
    Login(String),
    #[error("IMAP: {0}")]
    Imap(#[from] async_imap::error::Error),
    #[error("no answer from the server while {0}")]
    Timeout(&'static str),
    #[error("{0}")]
    Protocol(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal: {0}")]
    Internal(String),
}

/// One configured IMAP mailbox, ready to watch.
#[derive(Debug, Clone)]
pub struct ImapMailbox {
    pub name: String,
    pub role: Role,
    pub endpoint: Endpoint,
    pub folder: String,
    pub after: AfterProcessing,
    pub processed_folder: String,
    pub initial_sync: InitialSync,
    pub max_message_bytes: u64,
    pub batch_size: usize,
}

impl ImapMailbox {
    /// Reads the password now, so that a missing secret is reported at start.
    pub fn from_config(m: &config::Mailbox) -> Result<ImapMailbox, ImapError> {
        let name = m.name.get_ref().clone();
        let missing = |what: &str| ImapError::Protocol(format!("mailbox {name}: {what}"));
        let security = m.security.unwrap_or(Security::Tls);
        let password = m
            .password()
            .read()
            .map_err(|e| missing(&format!("cannot read the password: {e}")))?
            .ok_or_else(|| missing("the password is not set"))?;
        Ok(ImapMailbox {
            endpoint: Endpoint {
                host: m
                    .host
                    .as_ref()
                    .ok_or_else(|| missing("no host"))?
                    .get_ref()
                    .clone(),
                port: m
                    .port
                    .unwrap_or(if security == Security::Tls { 993 } else { 143 }),
                security,
                ca_file: m.ca_file.as_ref().map(|f| f.get_ref().clone()),
                auth: m.auth,
                user: m.user.clone().ok_or_else(|| missing("no user"))?,
                password,
            },
            name,
            role: m.role,
            folder: m.folder.clone(),
            after: m.after,
            processed_folder: m.processed_folder.clone(),
            initial_sync: m.initial_sync,
            max_message_bytes: m.max_message_bytes,
            batch_size: m.batch_size.max(1) as usize,
        })
    }
}

/// The pipeline a mailbox task stores through; SQLite work runs on the blocking pool.
pub type SharedPipeline = Arc<Mutex<Pipeline>>;

/// How the watcher waits and whom it tells about new outgoing mail.
#[derive(Clone)]
pub struct Watch {
    pub shutdown: CancellationToken,
    /// Handle what is waiting, then return instead of waiting for more.
    pub once: bool,
    /// Used when the server has no IDLE.
    pub poll: Duration,
    /// Woken when a commit queued outgoing mail.
    pub outbox: Arc<Notify>,
    /// Where each mailbox reports its state (connection, last sync, last error).
    pub status: DeskState,
}

/// IDLE is re-issued well before the 29 minutes after which servers may drop it (RFC 2177).
const IDLE_RENEW: Duration = Duration::from_secs(25 * 60);
/// No single command may hang longer than this (a half-open connection never answers).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// How often a long sync reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Watches `mailbox` until shutdown; with `once`, until it is caught up. A failing server
/// is retried with backoff forever (with `once`, the first failure is returned).
pub async fn watch(
    mailbox: ImapMailbox,
    pipeline: SharedPipeline,
    watch: Watch,
) -> Result<Totals, ImapError> {
    let mut totals = Totals::default();
    let mut failures = 0u32;
    loop {
        // A session ends by itself soon after the stop (between batches, out of IDLE); one
        // stuck in a command that never returns is dropped once the grace is over.
        let result = tokio::select! {
            result = session(&mailbox, &pipeline, &watch, &mut failures, &mut totals) => result,
            _ = crate::shutdown::grace_over(&watch.shutdown) => {
                tracing::warn!(mailbox = %mailbox.name, "stopping: abandoned an IMAP command that did not finish in time; nothing uncommitted was acknowledged");
                return Ok(totals);
            }
        };
        match result {
            Ok(()) => return Ok(totals),
            Err(error) if watch.once => return Err(error),
            Err(error) => {
                failures += 1;
                let retry_in = super::backoff::delay(failures);
                let text = error.to_string();
                watch
                    .status
                    .mailbox_failed(&mailbox.name, MailboxState::Reconnecting, &text);
                tracing::warn!(mailbox = %mailbox.name, %error, failures, ?retry_in, "IMAP session failed; reconnecting");
                tokio::select! {
                    _ = tokio::time::sleep(retry_in) => {}
                    _ = watch.shutdown.cancelled() => return Ok(totals),
                }
            }
        }
    }
}

/// The features of the server that change how we talk to it.
struct Server {
    idle: bool,
    moves: bool,
    uidplus: bool,
}

/// One connection, from login to logout.
async fn session(
    mailbox: &ImapMailbox,
    pipeline: &SharedPipeline,
    watch: &Watch,
    failures: &mut u32,
    totals: &mut Totals,
) -> Result<(), ImapError> {
    let mut session = connect(&mailbox.endpoint).await?;
    *failures = 0;
    let caps = timed("asking for capabilities", session.capabilities()).await?;
    let server = Server {
        idle: caps.has_str("IDLE"),
        moves: caps.has_str("MOVE"),
        uidplus: caps.has_str("UIDPLUS"),
    };
    if mailbox.after == AfterProcessing::Move {
        ensure_folder(&mut session, &mailbox.processed_folder).await?;
    }
    let selected = timed("selecting the folder", session.select(&mailbox.folder)).await?;
    let uidvalidity = selected
        .uid_validity
        .ok_or_else(|| ImapError::Protocol(format!("{} has no UIDVALIDITY", mailbox.folder)))?;
    let uid_next = selected.uid_next.unwrap_or(1);
    let mut cursor = establish_cursor(mailbox, pipeline, uidvalidity, uid_next).await?;
    watch
        .status
        .mailbox_state(&mailbox.name, MailboxState::Connected);
    tracing::info!(mailbox = %mailbox.name, uidvalidity, last_uid = cursor.last_uid, idle = server.idle, "watching mailbox");
    loop {
        let again = catch_up(
            &mut session,
            mailbox,
            pipeline,
            &server,
            &mut cursor,
            watch,
            totals,
        )
        .await?;
        watch
            .status
            .mailbox_synced(&mailbox.name, MailboxState::Idle);
        if watch.once || watch.shutdown.is_cancelled() {
            break;
        }
        if again {
            continue;
        }
        session = wait_for_mail(session, &server, watch).await?;
        if watch.shutdown.is_cancelled() {
            break;
        }
    }
    // A failed logout loses nothing: everything is committed and acknowledged.
    let _ = tokio::time::timeout(Duration::from_secs(5), session.logout()).await;
    Ok(())
}

/// The cursor to continue from: the stored one, or a new one at the first contact or
/// after the server changed UIDVALIDITY (then every message there is read again as
/// history: stored ones are recognised, none is answered).
async fn establish_cursor(
    mailbox: &ImapMailbox,
    pipeline: &SharedPipeline,
    uidvalidity: u32,
    uid_next: u32,
) -> Result<Cursor, ImapError> {
    let name = mailbox.name.clone();
    let initial_sync = mailbox.initial_sync;
    blocking(pipeline, move |p| {
        let store = p.store();
        let fresh = |first_uid, last_uid, history_below| Cursor { uidvalidity, last_uid, first_uid, history_below };
        let cursor = match store.cursor(&name)? {
            Some(c) if c.uidvalidity == uidvalidity => return Ok(c),
            Some(old) => {
                tracing::warn!(mailbox = %name, old = old.uidvalidity, new = uidvalidity,
                    "UIDVALIDITY changed: reading the folder again; messages already stored are recognised, none is answered");
                fresh(1, 0, uid_next)
            }
            None => {
                tracing::info!(mailbox = %name, ?initial_sync, existing_below_uid = uid_next, "first contact with this mailbox");
                match initial_sync {
                    InitialSync::ImportSilently => fresh(1, 0, uid_next),
                    InitialSync::SkipExisting => fresh(uid_next, uid_next.saturating_sub(1), 0),
                    InitialSync::Process => fresh(1, 0, 0),
                }
            }
        };
        store.reset_cursor(&name, cursor, Utc::now())?;
        Ok(cursor)
    })
    .await
}

/// Acknowledges what was committed but not acknowledged, then stores and acknowledges
/// every new message, batch by batch. While one batch commits, the next is fetched and
/// parsed. Returns whether to look again before idling: mail may have arrived while it
/// worked, and the server announces it only once, during whatever command was running.
async fn catch_up(
    session: &mut Session,
    mailbox: &ImapMailbox,
    pipeline: &SharedPipeline,
    server: &Server,
    cursor: &mut Cursor,
    watch: &Watch,
    totals: &mut Totals,
) -> Result<bool, ImapError> {
    if cursor.last_uid >= cursor.first_uid {
        let unseen = if mailbox.after == AfterProcessing::Seen {
            " UNSEEN"
        } else {
            ""
        };
        let query = format!("UID {}:{}{unseen}", cursor.first_uid, cursor.last_uid);
        let leftover = search(session, &query, |uid| {
            uid >= cursor.first_uid && uid <= cursor.last_uid
        })
        .await?;
        if !leftover.is_empty() {
            acknowledge(session, mailbox, server, &leftover).await?;
            tracing::info!(mailbox = %mailbox.name, count = leftover.len(), "acknowledged messages committed before a restart");
        }
    }
    let (new, announced) = list_new(session, cursor).await?;
    if new.is_empty() {
        return Ok(announced);
    }
    watch
        .status
        .mailbox_state(&mailbox.name, MailboxState::Syncing);
    let reader = blocking(pipeline, |p| Ok(p.reader())).await?;
    let started = Instant::now();
    let mut reported = Instant::now();
    let mut done = 0;
    let mut committing: Option<Batch> = None;
    for chunk in batches(&new, mailbox.batch_size, mailbox.max_message_bytes) {
        let fetching = Instant::now();
        let fetched = match fetch(session, mailbox, chunk, cursor).await {
            Ok(fetched) => fetched,
            Err(error) => return Err(abandon(committing, error).await),
        };
        let last_uid = chunk.last().map_or(cursor.last_uid, |(uid, _)| *uid);
        let reading = read(&reader, fetched, last_uid, fetching);
        // Batch N+1 starts committing before batch N is acknowledged on the server: the
        // two overlap, and N is acknowledged only after its own commit. N+1 commits only
        // after N did: the cursor must never pass uncommitted messages.
        let settled = match committing.take() {
            Some(batch) => settle(batch, cursor, watch, totals).await?,
            None => Vec::new(),
        };
        committing = Some(commit(pipeline, mailbox, cursor.uidvalidity, reading));
        if let Err(error) = acknowledge(session, mailbox, server, &settled).await {
            return Err(abandon(committing, error).await);
        }
        done += chunk.len();
        if reported.elapsed() >= PROGRESS_EVERY {
            let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
            tracing::info!(mailbox = %mailbox.name, done, total = new.len(), rate = format!("{rate:.0}/s"), "syncing");
            reported = Instant::now();
        }
        if watch.shutdown.is_cancelled() {
            break;
        }
    }
    if let Some(batch) = committing.take() {
        let settled = settle(batch, cursor, watch, totals).await?;
        acknowledge(session, mailbox, server, &settled).await?;
    }
    if new.len() > mailbox.batch_size {
        let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
        tracing::info!(mailbox = %mailbox.name, done, rate = format!("{rate:.0}/s"), "caught up");
    }
    Ok(true)
}

/// At most this many bytes of mail are fetched into one batch (one more batch is being
/// committed meanwhile): memory stays bounded whatever the messages' sizes.
const BATCH_BYTES: u64 = 32 * 1024 * 1024;
/// What an over-limit message weighs in a batch: only its header is fetched.
const HEADER_ALLOWANCE: u64 = 64 * 1024;

/// Splits `listed` (UID, size) into batches of at most `max_count` messages and
/// [`BATCH_BYTES`] bytes; a message larger than that travels alone.
fn batches(listed: &[(u32, u64)], max_count: usize, max_message_bytes: u64) -> Vec<&[(u32, u64)]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, (_, size)) in listed.iter().enumerate() {
        let weight = if *size > max_message_bytes {
            HEADER_ALLOWANCE
        } else {
            *size
        };
        let full = i - start >= max_count.max(1) || (i > start && bytes + weight > BATCH_BYTES);
        if full {
            out.push(&listed[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += weight;
    }
    if start < listed.len() {
        out.push(&listed[start..]);
    }
    out
}

/// A fetched batch being parsed and hashed on the blocking pool: that needs no database,
/// so it runs on another core while the previous batch commits.
struct Reading {
    uids: Vec<u32>,
    last_uid: u32,
    /// When its fetch began: the start of its messages' ingest latency.
    fetching: Instant,
    prepared: tokio::task::JoinHandle<Vec<Prepared>>,
}

fn read(
    reader: &Reader,
    fetched: Vec<(u32, SourceMessage)>,
    last_uid: u32,
    fetching: Instant,
) -> Reading {
    let (uids, messages): (Vec<u32>, Vec<SourceMessage>) = fetched.into_iter().unzip();
    let reader = reader.clone();
    let prepared = tokio::task::spawn_blocking(move || {
        messages
            .into_iter()
            .map(|message| reader.prepare(message))
            .collect()
    });
    Reading {
        uids,
        last_uid,
        fetching,
        prepared,
    }
}

/// A batch whose transaction is running on the blocking pool.
struct Batch {
    uids: Vec<u32>,
    last_uid: u32,
    outcomes: tokio::task::JoinHandle<Result<Vec<Outcome>, ImapError>>,
}

fn commit(
    pipeline: &SharedPipeline,
    mailbox: &ImapMailbox,
    uidvalidity: u32,
    reading: Reading,
) -> Batch {
    let Reading {
        uids,
        last_uid,
        fetching,
        prepared,
    } = reading;
    let name = mailbox.name.clone();
    let pipeline = Arc::clone(pipeline);
    let outcomes = tokio::spawn(async move {
        let prepared = prepared
            .await
            .map_err(|e| ImapError::Internal(e.to_string()))?;
        blocking(&pipeline, move |p| {
            let advance = CursorAdvance {
                mailbox: &name,
                uidvalidity,
                last_uid,
            };
            match p.ingest_batch(&prepared, Some(advance), Utc::now()) {
                Ok(outcomes) => {
                    metrics::ingested(&name, fetching.elapsed(), outcomes.len());
                    Ok(outcomes)
                }
                Err(error) => {
                    metrics::messages(&name, Stored::Failed, prepared.len());
                    Err(error.into())
                }
            }
        })
        .await
    });
    Batch {
        uids,
        last_uid,
        outcomes,
    }
}

/// Waits for a batch's commit; returns the UIDs now safe to acknowledge on the server.
async fn settle(
    batch: Batch,
    cursor: &mut Cursor,
    watch: &Watch,
    totals: &mut Totals,
) -> Result<Vec<u32>, ImapError> {
    let outcomes = batch
        .outcomes
        .await
        .map_err(|e| ImapError::Internal(e.to_string()))??;
    cursor.last_uid = batch.last_uid;
    let mut queued = 0;
    for outcome in &outcomes {
        match outcome {
            Outcome::Stored { queued: q, .. } => {
                totals.stored += 1;
                queued += q;
            }
            Outcome::AlreadyStored => totals.already_stored += 1,
        }
    }
    if queued > 0 {
        watch.outbox.notify_one();
    }
    Ok(batch.uids)
}

/// Ends a session on `error`. A batch in flight still commits: wait for it, so that no
/// write outlives the session (its messages are acknowledged by the next session).
async fn abandon(committing: Option<Batch>, error: ImapError) -> ImapError {
    if let Some(batch) = committing {
        let _ = batch.outcomes.await;
    }
    error
}

/// UIDs matching `query` and `keep`, ascending.
async fn search(
    session: &mut Session,
    query: &str,
    keep: impl Fn(u32) -> bool,
) -> Result<Vec<u32>, ImapError> {
    let found = timed("searching", session.uid_search(query)).await?;
    drain(session);
    let mut uids: Vec<u32> = found.into_iter().filter(|uid| keep(*uid)).collect();
    uids.sort_unstable();
    Ok(uids)
}

/// Every message above the cursor with its size, ascending, in one round trip.
/// (`UID n:*` always includes the highest UID, even below `n`: such is dropped.)
/// Also says whether new mail was announced meanwhile (see [`drain`]): it may be missing
/// from the list.
async fn list_new(
    session: &mut Session,
    cursor: &Cursor,
) -> Result<(Vec<(u32, u64)>, bool), ImapError> {
    let set = format!("{}:*", cursor.last_uid + 1);
    let (mut new, announced) = fetch_map(session, &set, "(UID RFC822.SIZE)", |f| {
        let (uid, size) = (f.uid?, u64::from(f.size?));
        (uid > cursor.last_uid && uid >= cursor.first_uid).then_some((uid, size))
    })
    .await?;
    new.sort_unstable();
    Ok((new, announced))
}

/// The messages of `listed` (UID, size), oldest first: whole when within the size limit,
/// else the header only. A UID gone meanwhile (expunged by someone else) is skipped.
async fn fetch(
    session: &mut Session,
    mailbox: &ImapMailbox,
    listed: &[(u32, u64)],
    cursor: &Cursor,
) -> Result<Vec<(u32, SourceMessage)>, ImapError> {
    let sizes: HashMap<u32, u64> = listed.iter().copied().collect();
    let (whole, large): (Vec<u32>, Vec<u32>) = listed
        .iter()
        .map(|(uid, _)| *uid)
        .partition(|uid| sizes[uid] <= mailbox.max_message_bytes);
    let mut out = Vec::with_capacity(listed.len());
    for (set, items, oversize) in [
        (&whole, "(UID BODY.PEEK[])", false),
        (&large, "(UID BODY.PEEK[HEADER])", true),
    ] {
        if set.is_empty() {
            continue;
        }
        // Mail announced now is found by the next listing, which follows every batch.
        let (parts, _) = fetch_map(session, &uid_set(set), items, |f| {
            let uid = f.uid.filter(|uid| sizes.contains_key(uid))?;
            let part = if oversize { f.header() } else { f.body() };
            Some((uid, part.map(<[u8]>::to_vec)))
        })
        .await?;
        for (uid, raw) in parts {
            let raw = raw.ok_or_else(|| {
                ImapError::Protocol(format!("UID {uid}: the server sent no content"))
            })?;
            if oversize {
                tracing::warn!(mailbox = %mailbox.name, uid, size = sizes[&uid], limit = mailbox.max_message_bytes, "message over the size limit: storing its header only");
            }
            let message = SourceMessage {
                mailbox: mailbox.name.clone(),
                role: mailbox.role,
                key: format!("{}/{uid}", cursor.uidvalidity),
                raw,
                oversize: oversize.then(|| sizes[&uid]),
                history: uid < cursor.history_below,
            };
            out.push((uid, message));
        }
    }
    out.sort_by_key(|(uid, _)| *uid);
    Ok(out)
}

/// `UID FETCH`, each response turned into plain data as it arrives: a `Fetch` keeps the
/// read buffer it came in alive, so holding thousands of them would hold megabytes.
async fn fetch_map<T>(
    session: &mut Session,
    set: &str,
    items: &str,
    mut keep: impl FnMut(&async_imap::types::Fetch) -> Option<T>,
) -> Result<(Vec<T>, bool), ImapError> {
    let mut out = Vec::new();
    timed("fetching", async {
        let mut responses = session.uid_fetch(set, items).await?;
        while let Some(fetch) = responses.try_next().await? {
            out.extend(keep(&fetch));
        }
        Ok(())
    })
    .await?;
    let announced = drain(session);
    Ok((out, announced))
}

/// Moves or flags stored messages, as configured.
async fn acknowledge(
    session: &mut Session,
    mailbox: &ImapMailbox,
    server: &Server,
    uids: &[u32],
) -> Result<(), ImapError> {
    if uids.is_empty() {
        return Ok(());
    }
    let set = uid_set(uids);
    let folder = mailbox.processed_folder.as_str();
    match mailbox.after {
        AfterProcessing::Seen => store_flags(session, &set, "+FLAGS.SILENT (\\Seen)").await?,
        AfterProcessing::Move if server.moves => {
            timed("moving", session.uid_mv(&set, folder)).await?
        }
        AfterProcessing::Move => {
            timed("copying", session.uid_copy(&set, folder)).await?;
            store_flags(session, &set, "+FLAGS.SILENT (\\Deleted)").await?;
            if server.uidplus {
                timed("expunging", async {
                    session
                        .uid_expunge(&set)
                        .await?
                        .try_collect::<Vec<_>>()
                        .await
                })
                .await?;
            } else {
                timed("expunging", async {
                    session.expunge().await?.try_collect::<Vec<_>>().await
                })
                .await?;
            }
        }
    }
    drain(session);
    Ok(())
}

async fn store_flags(session: &mut Session, set: &str, change: &str) -> Result<(), ImapError> {
    timed("storing flags", async {
        session
            .uid_store(set, change)
            .await?
            .try_collect::<Vec<_>>()
            .await
    })
    .await?;
    Ok(())
}

/// Creates `folder` unless it exists. Names are compared exactly against the full folder
/// list: a LIST pattern would treat `%` and `*` in the name as wildcards (and async-imap
/// sends it unquoted, so a name with a space would never match).
async fn ensure_folder(session: &mut Session, folder: &str) -> Result<(), ImapError> {
    let names: Vec<String> = timed("listing folders", async {
        let mut names = Vec::new();
        let mut listed = session.list(Some(""), Some("*")).await?;
        while let Some(name) = listed.try_next().await? {
            names.push(name.name().to_string());
        }
        Ok(names)
    })
    .await?;
    drain(session);
    if !names.iter().any(|name| name == folder) {
        timed("creating the processed folder", session.create(folder)).await?;
        tracing::info!(folder, "created folder for processed mail");
    }
    Ok(())
}

/// Waits for new mail: IDLE until the server reports something (renewed every 25
/// minutes), or a poll interval; either ends early at shutdown.
async fn wait_for_mail(
    mut session: Session,
    server: &Server,
    watch: &Watch,
) -> Result<Session, ImapError> {
    if !server.idle {
        tokio::select! {
            _ = tokio::time::sleep(watch.poll) => {}
            _ = watch.shutdown.cancelled() => {}
        }
        timed("NOOP", session.noop()).await?;
        return Ok(session);
    }
    let mut idle = session.idle();
    timed("starting IDLE", idle.init()).await?;
    let (wait, stop) = idle.wait_with_timeout(IDLE_RENEW);
    let response = tokio::select! {
        response = wait => Some(response?),
        _ = watch.shutdown.cancelled() => None,
    };
    drop(stop);
    if let Some(IdleResponse::NewData(data)) = &response
        && matches!(
            data.parsed(),
            Response::Data {
                status: Status::Bye,
                ..
            }
        )
    {
        return Err(ImapError::Protocol(
            "the server is closing the connection (BYE)".into(),
        ));
    }
    let mut session = tokio::time::timeout(COMMAND_TIMEOUT, idle.done())
        .await
        .map_err(|_| ImapError::Timeout("ending IDLE"))??;
    drain(&mut session);
    Ok(session)
}

/// Empties the channel of untagged responses so that it never fills up; says whether one
/// of them announced new mail (EXISTS, RECENT). The server announces a message once: one
/// that arrived during a command is not announced again by a later IDLE, so the caller
/// must look again instead of idling.
fn drain(session: &mut Session) -> bool {
    let mut announced = false;
    while let Ok(response) = session.unsolicited_responses.try_recv() {
        announced |= matches!(
            response,
            UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_)
        );
    }
    announced
}

async fn timed<T>(
    what: &'static str,
    command: impl Future<Output = Result<T, async_imap::error::Error>>,
) -> Result<T, ImapError> {
    match tokio::time::timeout(COMMAND_TIMEOUT, command).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(ImapError::Timeout(what)),
    }
}

/// Runs store work on the blocking pool with the mailbox's pipeline.
async fn blocking<T: Send + 'static>(
    pipeline: &SharedPipeline,
    work: impl FnOnce(&mut Pipeline) -> Result<T, ImapError> + Send + 'static,
) -> Result<T, ImapError> {
    let pipeline = Arc::clone(pipeline);
    tokio::task::spawn_blocking(move || {
        let mut guard = pipeline
            .lock()
            .map_err(|_| ImapError::Internal("a previous store operation panicked".into()))?;
        work(&mut guard)
    })
    .await
    .map_err(|e| ImapError::Internal(e.to_string()))?
}

/// `1:3,5,7:8` for 1, 2, 3, 5, 7, 8 (ascending input).
fn uid_set(uids: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = uids.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::uid_set;

    #[test]
    fn batches_are_bounded_by_count_and_bytes() {
        const MB: u64 = 1024 * 1024;
        let listed: Vec<(u32, u64)> = (1..=10).map(|uid| (uid, 1000)).collect();
        let sizes: Vec<usize> = super::batches(&listed, 4, 25 * MB)
            .iter()
            .map(|b| b.len())
            .collect();
        assert_eq!(sizes, vec![4, 4, 2]);
        // 10 MB each: three fit in 32 MB; a 40 MB one (under the limit) travels alone; an
        // over-limit one weighs only its header.
        let listed = [
            (1, 10 * MB),
            (2, 10 * MB),
            (3, 10 * MB),
            (4, 10 * MB),
            (5, 40 * MB),
            (6, 90 * MB),
            (7, 1),
        ];
        let batches: Vec<Vec<u32>> = super::batches(&listed, 500, 50 * MB)
            .iter()
            .map(|b| b.iter().map(|(uid, _)| *uid).collect())
            .collect();
        assert_eq!(batches, vec![vec![1, 2, 3], vec![4], vec![5], vec![6, 7]]);
        assert!(super::batches(&[], 500, MB).is_empty());
    }

    #[test]
    fn uid_sets_compress_runs() {
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(uid_set(&[4]), "4");
        assert_eq!(uid_set(&[]), "");
    }
}
