//! One webhook's delivery loop: reads its organization's events after its cursor (through the
//! log's index, only the types it subscribes to), POSTs them one at a time in order, and on a
//! failure retries the same event on the schedule before going on — so a receiver that was
//! down gets everything afterwards, in order. After the schedule's last try (24 h) the event is
//! marked failed and the webhook disabled (`webhook.disabled`); enabling it again resumes at
//! that event. A `410 Gone` disables it at once; any other 4xx is final for that event alone.
//!
//! The loop wakes when the log's head moves (new events, or a change to its webhook), when a
//! retry is due, and when the server stops; it ends itself when its webhook is removed.

use std::sync::Arc;
use std::time::Duration;

use events::query::Query;
use events::store::Direction;
use events::{Actor, Recorded};
use projections::webhooks::Webhook;
use tokio::sync::watch;
use tokio::time::Instant;

use super::progress::{Attempt, ProgressFiles, Retry, SAVE_EVERY};
use super::schedule::{Verdict, verdict};
use super::{Live, Sent};
use crate::audit::types::TypeFilter;
use crate::execute::{Command, ExecuteError, execute};
use crate::http::event_view::EventView;
use crate::state::AppState;

/// Events read from the log at a time.
const BATCH: usize = 64;

/// What happened to the event a loop tried.
enum Step {
    /// Delivered, or refused for good: the cursor moves past it.
    Settled,
    /// It will be tried again later (or the webhook was disabled): stop going forward.
    Held,
}

pub struct Loop {
    state: AppState,
    id: String,
    org: String,
    live: Arc<Live>,
    files: ProgressFiles,
    stop: watch::Receiver<bool>,
    /// Whether the cursor moved since the progress file was written, and when that was.
    dirty: bool,
    saved_at: Instant,
}

/// How long a loop with nothing to do sleeps when nothing wakes it (the head moving does).
const IDLE: Duration = Duration::from_secs(3600);

impl Loop {
    pub fn new(
        state: AppState,
        id: String,
        org: String,
        live: Arc<Live>,
        stop: watch::Receiver<bool>,
    ) -> Loop {
        let files = state.webhooks().files().clone();
        Loop {
            state,
            id,
            org,
            live,
            files,
            stop,
            dirty: false,
            saved_at: Instant::now(),
        }
    }

    pub async fn run(mut self) {
        let mut head = self.state.log().watch_head();
        let mut stop = self.stop.clone();
        loop {
            if *stop.borrow() {
                break;
            }
            self.live
                .turns
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some((hook, seen)) = self.config().await else {
                super::Webhooks::forget_off_thread(&self.state, &self.id).await;
                return;
            };
            self.replay_if_asked(&hook).await;
            let wait = if !hook.enabled {
                // Enabling it again is an event: the head moves and wakes the loop.
                Some(IDLE)
            } else if self.retry().is_some() {
                self.retry_due(&hook).await
            } else {
                self.forward(&hook, seen).await
            };
            if self.dirty && self.saved_at.elapsed() >= SAVE_EVERY {
                self.save().await;
            }
            let Some(wait) = wait else {
                continue;
            };
            // Nothing to do now: sleep until the head moves, a retry is due, or the server
            // stops. A moved cursor not yet on disk is written when its time comes.
            let wait = if self.dirty {
                wait.min(SAVE_EVERY)
            } else {
                wait
            };
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => break,
                changed = head.changed() => if changed.is_err() { break },
                _ = tokio::time::sleep(wait) => {}
            }
        }
        self.save().await;
    }

    /// The webhook as the read models have it once they include the log's head (`None`: it
    /// was removed), and the organization's last event those read models include: events
    /// after it are judged by a configuration not known yet.
    async fn config(&self) -> Option<(Webhook, u64)> {
        let head = self.state.log().head();
        let timeout = self.state.settings().read_your_writes_timeout;
        self.state.models().wait_for(head, timeout).await;
        let models = self.state.models().load();
        let org = models.state.org(&self.org);
        Some((org.webhook(&self.id)?.clone(), org.version()))
    }

    /// Whether the webhook is still as `hook` says (not removed, disabled, moved, refiltered
    /// or replayed since): checked before each attempt of a batch.
    fn unchanged(&self, hook: &Webhook) -> bool {
        let models = self.state.models().load();
        models
            .state
            .org(&self.org)
            .webhook(&self.id)
            .is_some_and(|now| {
                now.enabled == hook.enabled
                    && now.url == hook.url
                    && now.event_types == hook.event_types
                    && now.replay == hook.replay
                    && now.rotated_at == hook.rotated_at
            })
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, super::progress::Progress> {
        self.live.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn retry(&self) -> Option<Retry> {
        self.progress().retry.clone()
    }

    /// Writes the progress file (off the async threads: it fsyncs).
    async fn save(&mut self) {
        let snapshot = self.progress().clone();
        match self.files.save_off_thread(&self.id, snapshot).await {
            Ok(()) => {
                self.dirty = false;
                self.saved_at = Instant::now();
            }
            Err(e) => tracing::error!(webhook = %self.id, error = %e, "saving webhook progress"),
        }
    }

    /// A `webhook.replayed` not acted on yet sends the cursor back to its `since_id` — never
    /// forward, so a replay cannot skip what was not delivered yet.
    async fn replay_if_asked(&mut self, hook: &Webhook) {
        let Some((seq, since)) = hook.replay else {
            return;
        };
        {
            let mut p = self.progress();
            if seq <= p.replay_seen {
                return;
            }
            p.replay_seen = seq;
            p.cursor = p.cursor.min(since.saturating_sub(1));
            if p.retry.as_ref().is_some_and(|r| r.event_id >= since) {
                p.retry = None;
            }
        }
        self.save().await;
    }

    /// Tries the held event again if it is due; otherwise how long until it is.
    async fn retry_due(&mut self, hook: &Webhook) -> Option<Duration> {
        let retry = self.retry()?;
        let now = events::now_micros();
        // A new URL is tried at once, not when the old one's next try was due.
        let url_changed = retry.url != hook.url;
        if retry.next_at > now && !url_changed {
            return Some(Duration::from_micros((retry.next_at - now) as u64));
        }
        let log = self.state.log();
        let record = match log.org_record(&self.org, retry.event_id) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(webhook = %self.id, error = %e, "reading the log");
                return Some(Duration::from_secs(1));
            }
        };
        match record {
            Some(r) => {
                let tries = retry.tries.saturating_add(1);
                self.attempt(hook, &r, tries, Some(retry.first_failed_at))
                    .await;
            }
            // Gone past the organization's retention: nothing left to deliver.
            None => {
                let mut p = self.progress();
                p.cursor = p.cursor.max(retry.event_id);
                p.retry = None;
                drop(p);
                self.dirty = true;
            }
        }
        None
    }

    /// Delivers the next events after the cursor, up to `seen` (the organization's last event
    /// the configuration in `hook` is known to cover); `Some(wait)` when there are none.
    async fn forward(&mut self, hook: &Webhook, seen: u64) -> Option<Duration> {
        let cursor = self.progress().cursor;
        // Every append wakes every loop: most find nothing for them, from the index alone.
        let last = match self.state.log().org_last_seq(&self.org) {
            Ok(last) => last.min(seen),
            Err(e) => {
                tracing::warn!(webhook = %self.id, error = %e, "reading the log");
                return Some(Duration::from_secs(1));
            }
        };
        if last <= cursor {
            // Read models behind the log (they timed out): look again soon, not at the next
            // append, which may be an hour away.
            let behind = self
                .state
                .log()
                .org_last_seq(&self.org)
                .is_ok_and(|l| l > seen);
            return Some(if behind { SAVE_EVERY } else { IDLE });
        }
        // Stored in normal form when the webhook was written; empty (every event) parses as
        // the empty filter.
        let query = TypeFilter::parse(&hook.event_types)
            .unwrap_or_default()
            .query()
            .unwrap_or(Query::All);
        let log = self.state.log().clone();
        let org = self.org.clone();
        let read = tokio::task::spawn_blocking(move || {
            let from = (cursor + 1).max(log.org_first(&org)?);
            let batch = log.query_org(&org, &query, from, last, Direction::Forward, BATCH)?;
            Ok::<_, events::Error>((last, batch))
        })
        .await;
        let (last, batch) = match read {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => {
                tracing::warn!(webhook = %self.id, error = %e, "reading the log");
                return Some(Duration::from_secs(1));
            }
            Err(e) => {
                tracing::error!(webhook = %self.id, error = %e, "reading the log");
                return Some(Duration::from_secs(1));
            }
        };
        let full = batch.len() == BATCH;
        for record in &batch {
            // A stop, a removal or a change is acted on between two attempts, not a batch later.
            if *self.stop.borrow() || !self.unchanged(hook) {
                return None;
            }
            if let Step::Held = self.attempt(hook, record, 1, None).await {
                return None;
            }
            if self.dirty && self.saved_at.elapsed() >= SAVE_EVERY {
                self.save().await;
            }
        }
        // Fewer than a batch: every event up to `last` that is not in it was filtered out.
        if !full {
            let mut p = self.progress();
            p.cursor = p.cursor.max(last);
            drop(p);
            self.dirty = true;
        }
        None
    }

    /// One try of `record`, and what it means for the cursor and the retry.
    async fn attempt(
        &mut self,
        hook: &Webhook,
        record: &Recorded,
        try_number: u32,
        first_failed_at: Option<i64>,
    ) -> Step {
        let view = EventView::of(record);
        let seq = view.id;
        let body = match serde_json::to_vec(&view) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(webhook = %self.id, error = %e, "encoding an event");
                return Step::Held;
            }
        };
        let hooks = self.state.webhooks();
        let sent = match hooks.keyring(&self.live, &self.id, hook.rotated_at) {
            Ok(ring) => {
                hooks
                    .send(&hook.url, &ring, &view.event_id, &view.r#type, body)
                    .await
            }
            Err(e) => Sent {
                status: None,
                error: Some(format!("the webhook's secret could not be read: {e}")),
                latency: Duration::ZERO,
                retry_after: None,
                response: String::new(),
            },
        };
        let now = events::now_micros();
        let mut attempt = Attempt {
            event_id: seq,
            message_id: view.event_id.clone(),
            event_type: view.r#type.clone(),
            at: now,
            try_number,
            status: sent.status,
            error: sent.error.clone(),
            latency_micros: sent.latency.as_micros() as u64,
            outcome: String::new(),
            next_retry_at: None,
            response: sent.response.clone(),
        };
        let first = first_failed_at.unwrap_or(now);
        let step = match verdict(sent.status) {
            Verdict::Delivered | Verdict::Reject => {
                attempt.outcome = if sent.status.is_some_and(|s| (200..300).contains(&s)) {
                    "delivered".into()
                } else {
                    "failed".into()
                };
                let mut p = self.progress();
                p.cursor = p.cursor.max(seq);
                p.retry = None;
                drop(p);
                self.dirty = true;
                Step::Settled
            }
            Verdict::Gone => {
                attempt.outcome = "failed".into();
                let why = "the receiver answered 410 Gone".to_owned();
                self.give_up(hook, seq, first, try_number, why).await;
                Step::Held
            }
            Verdict::Retry => {
                let failing_for = Duration::from_micros((now - first).max(0) as u64);
                let next = hooks
                    .schedule()
                    .next(try_number, failing_for, sent.retry_after);
                match next {
                    Some(wait) => {
                        let next_at = now + wait.as_micros() as i64;
                        attempt.outcome = "retrying".into();
                        attempt.next_retry_at = Some(next_at);
                        self.progress().retry = Some(Retry {
                            event_id: seq,
                            tries: try_number,
                            first_failed_at: first,
                            next_at,
                            url: hook.url.clone(),
                        });
                        self.dirty = true;
                    }
                    None => {
                        attempt.outcome = "failed".into();
                        let last = match (&sent.status, &sent.error) {
                            (Some(s), _) => format!("HTTP {s}"),
                            (None, Some(e)) => e.clone(),
                            (None, None) => "no answer".into(),
                        };
                        let hours = hooks.schedule().give_up_after.as_secs_f64() / 3600.0;
                        let why = format!(
                            "no 2xx answer for {hours} hours and {try_number} tries (last: {last})"
                        );
                        self.give_up(hook, seq, first, try_number, why).await;
                    }
                }
                Step::Held
            }
        };
        self.progress().record(attempt);
        if matches!(step, Step::Held) {
            // A retry's schedule, or a disable, must survive a restart.
            self.save().await;
        }
        step
    }

    /// Disables the webhook with `reason`; the cursor stays before `seq`, so enabling it again
    /// delivers `seq` first. If the log refuses, the event is held and tried again in a minute
    /// (when it gives up again, it disables again).
    async fn give_up(&mut self, hook: &Webhook, seq: u64, first: i64, tries: u32, reason: String) {
        let command = Command::new(
            self.org.clone(),
            Actor::system("webhooks: delivery given up"),
            crate::mint::id("req"),
        );
        let (id, enabled_seq) = (self.id.clone(), hook.enabled_seq);
        let disabled = execute(&self.state, command, |org| {
            crate::domain::webhooks::disable(org, &id, enabled_seq, reason.clone(), seq, first)
        })
        .await;
        let mut p = self.progress();
        match disabled {
            // Recorded (NotApplied: durable, only not yet visible).
            Ok(_) | Err(ExecuteError::NotApplied { .. }) => p.retry = None,
            Err(e) => {
                tracing::warn!(webhook = %self.id, error = %e, "could not disable a failing webhook");
                // Past the give-up time, the next failure gives up (and disables) again.
                p.retry = Some(Retry {
                    event_id: seq,
                    tries,
                    first_failed_at: first,
                    next_at: events::now_micros() + 60_000_000,
                    url: hook.url.clone(),
                });
            }
        }
    }
}
