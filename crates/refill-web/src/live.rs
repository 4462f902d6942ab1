//! Live updates: a broadcast channel fed by writes in this process and by a short poll of the store's
//! change counter (`screen_changes`), so screens served by other processes see changes within a poll
//! interval. Browsers listen with server-sent events on `/events`; requests there never count as a
//! person's activity (see `auth::is_live_update_path`).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use refill_store::accounts::{self, ScreenChange};
use tokio::sync::broadcast;

use crate::AppState;

/// The in-process fan-out of changes.
#[derive(Debug, Clone)]
pub struct LiveFeed {
    sender: broadcast::Sender<ScreenChange>,
    /// The highest change number already sent, so the poller does not repeat in-process changes.
    highest_sent: Arc<AtomicI64>,
}

impl Default for LiveFeed {
    fn default() -> Self {
        LiveFeed::new()
    }
}

impl LiveFeed {
    pub fn new() -> LiveFeed {
        let (sender, _) = broadcast::channel(1024);
        LiveFeed { sender, highest_sent: Arc::new(AtomicI64::new(0)) }
    }

    /// Send a change now (called after the write that made it has committed).
    pub fn publish(&self, change: ScreenChange) {
        self.highest_sent.fetch_max(change.seq, Ordering::SeqCst);
        // No receivers is fine: nobody is watching.
        let _ = self.sender.send(change);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ScreenChange> {
        self.sender.subscribe()
    }

    pub fn highest_sent(&self) -> i64 {
        self.highest_sent.load(Ordering::SeqCst)
    }
}

/// Poll the change counter forever, publishing changes made by other processes.
pub async fn poll_changes(state: AppState) {
    let mut seen = match accounts::latest_screen_change(&state.store).await {
        Ok(seq) => seq,
        Err(error) => {
            tracing::warn!(%error, "could not read the screen change counter; live updates start from zero");
            0
        }
    };
    state.live.highest_sent.fetch_max(seen, Ordering::SeqCst);
    let mut interval = tokio::time::interval(state.settings.live_poll_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let latest = match accounts::latest_screen_change(&state.store).await {
            Ok(latest) => latest,
            Err(error) => {
                tracing::warn!(%error, "screen change poll failed");
                continue;
            }
        };
        if latest <= seen {
            continue;
        }
        match accounts::screen_changes_after(&state.store, seen, 500).await {
            Ok(changes) => {
                for change in changes {
                    seen = seen.max(change.seq);
                    if change.seq > state.live.highest_sent() {
                        state.live.publish(change);
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "screen change read failed"),
        }
    }
}

/// `GET /events`: server-sent events, one `change` event per change (`{"seq", "patient_id", "kind"}`).
pub async fn events(State(state): State<AppState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = state.live.subscribe();
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        let data = match receiver.recv().await {
            Ok(change) => serde_json::json!({
                "seq": change.seq,
                "patient_id": change.patient_id,
                "kind": change.kind,
            })
            .to_string(),
            // Fell behind: tell the page to refresh everything.
            Err(broadcast::error::RecvError::Lagged(_)) => r#"{"seq":0,"patient_id":null,"kind":"many"}"#.to_string(),
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(Event::default().event("change").data(data)), receiver))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
