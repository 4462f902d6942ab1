//! Audit events for views, written with group commit: each request hands its event to one writer task
//! and waits until the transaction holding it has committed, so a page is never shown unaudited (fail
//! closed), while fifty concurrent views share one commit (and one fsync) instead of queueing for fifty.

use refill_store::{AuditEvent, Store};
use tokio::sync::{mpsc, oneshot};

use crate::WebError;

type Pending = (AuditEvent, oneshot::Sender<Result<(), String>>);

/// The handle requests use. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ViewAudit {
    sender: Option<mpsc::Sender<Pending>>,
    store: Store,
}

/// At most this many events go into one transaction.
const MAX_BATCH: usize = 256;

impl ViewAudit {
    /// Start the writer task on the current tokio runtime (without one, each view commits alone).
    pub fn start(store: Store) -> ViewAudit {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return ViewAudit { sender: None, store };
        };
        let (sender, receiver) = mpsc::channel::<Pending>(4096);
        runtime.spawn(write_batches(store.clone(), receiver));
        ViewAudit { sender: Some(sender), store }
    }

    /// Record one view; returns once it is committed.
    pub async fn record(&self, event: AuditEvent) -> Result<(), WebError> {
        let Some(sender) = &self.sender else {
            self.store.record_view(&event).await?;
            return Ok(());
        };
        let (done, committed) = oneshot::channel();
        sender.send((event, done)).await.map_err(|_| WebError::Internal("the audit writer stopped".into()))?;
        committed
            .await
            .map_err(|_| WebError::Internal("the audit writer stopped".into()))?
            .map_err(|error| WebError::Internal(format!("audit write failed: {error}")))
    }
}

async fn write_batches(store: Store, mut receiver: mpsc::Receiver<Pending>) {
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let result = commit(&store, &batch).await.map_err(|error| error.to_string());
        if let Err(error) = &result {
            tracing::error!(%error, events = batch.len(), "view audit batch failed; the views are refused");
        }
        for (_, done) in batch {
            let _ = done.send(result.clone());
        }
    }
}

async fn commit(store: &Store, batch: &[Pending]) -> Result<(), refill_store::StoreError> {
    let mut tx = store.begin().await?;
    for (event, _) in batch {
        store.append_audit(&mut tx, event).await?;
    }
    tx.commit().await
}
