//! A short-lived cache of what many queue screens show at once: today's tallies and the first page of
//! each filter. Every desk and wall display reloads the same first page after every change, so one
//! load serves them all.
//!
//! An entry is used only while nothing has changed since it was loaded: it remembers the clinic date
//! and the newest screen change this process had published (`LiveFeed::highest_sent`) when its load
//! started, and any later change (a staff action here, or one from another process picked up by the
//! live poller) makes it stale. Writes that announce no screen change (the daily run in the jobs
//! process) are bounded by age: an entry older than the live poll interval is loaded again, so the
//! screen is never staler than the live updates already are. Deeper pages are read by one person at a
//! time and always load fresh. The rows kept are the queue's masked rows (the queue never shows Part 2
//! facts to anyone), so one entry is right for every viewer; each view is still audited per request.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use refill_store::screens::{QueueFilter, QueueTallies};

use crate::WebError;
use crate::pages::queue::RowView;

/// What an entry was loaded against: the clinic day and the newest screen change published by then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    pub clinic_date: NaiveDate,
    pub change_seq: i64,
}

#[derive(Debug)]
struct Entry<T> {
    freshness: Freshness,
    loaded_at: Instant,
    value: T,
}

/// One cached value. The async lock makes concurrent misses wait for one load instead of each
/// running the same queries (fifty screens refresh at once after every change).
#[derive(Debug)]
struct Slot<T>(tokio::sync::Mutex<Option<Entry<T>>>);

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot(tokio::sync::Mutex::new(None))
    }
}

impl<T: Clone> Slot<T> {
    async fn get_or_load<F, Fut>(&self, freshness: Freshness, max_age: Duration, load: F) -> Result<T, WebError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, WebError>>,
    {
        let mut entry = self.0.lock().await;
        if let Some(cached) = entry.as_ref()
            && cached.freshness == freshness
            && cached.loaded_at.elapsed() < max_age
        {
            return Ok(cached.value.clone());
        }
        // The age counts from before the queries: what they read is at least this old.
        let started = Instant::now();
        let value = load().await?;
        *entry = Some(Entry { freshness, loaded_at: started, value: value.clone() });
        Ok(value)
    }
}

/// The first page of one filter, at one page length (the screen asks for one more row than it shows).
type FirstPageKey = (QueueFilter, i64);

/// The rows of one first page, shared by every request that shows it.
type PageSlot = Arc<Slot<Arc<Vec<RowView>>>>;

/// The cache kept in `AppState`. Cheap to share (`Arc`).
#[derive(Debug, Default)]
pub struct QueueCache {
    tallies: Slot<QueueTallies>,
    first_pages: Mutex<HashMap<FirstPageKey, PageSlot>>,
}

impl QueueCache {
    /// Today's tallies, loaded by `load` unless an entry is still fresh.
    pub async fn tallies<F, Fut>(
        &self,
        freshness: Freshness,
        max_age: Duration,
        load: F,
    ) -> Result<QueueTallies, WebError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<QueueTallies, WebError>>,
    {
        self.tallies.get_or_load(freshness, max_age, load).await
    }

    /// The first page of `filter` (`limit` rows), loaded by `load` unless an entry is still fresh.
    pub async fn first_page<F, Fut>(
        &self,
        filter: QueueFilter,
        limit: i64,
        freshness: Freshness,
        max_age: Duration,
        load: F,
    ) -> Result<Arc<Vec<RowView>>, WebError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Arc<Vec<RowView>>, WebError>>,
    {
        // At most one slot per filter and page length: the map stays as small as the set of filters.
        let slot = {
            let mut slots = self.first_pages.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(slots.entry((filter, limit)).or_default())
        };
        slot.get_or_load(freshness, max_age, load).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(change_seq: i64) -> Freshness {
        Freshness { clinic_date: NaiveDate::from_ymd_opt(2026, 12, 1).expect("date"), change_seq }
    }

    fn tallies(open: i64) -> QueueTallies {
        QueueTallies { open: Some(open), ..QueueTallies::default() }
    }

    #[tokio::test]
    async fn an_entry_serves_until_a_change_or_its_age_makes_it_stale() {
        let cache = QueueCache::default();
        let long = Duration::from_secs(3600);
        let first = cache.tallies(fresh(5), long, || async { Ok(tallies(1)) }).await.expect("load");
        assert_eq!(first.open, Some(1));
        let again = cache.tallies(fresh(5), long, || async { Ok(tallies(2)) }).await.expect("cached");
        assert_eq!(again.open, Some(1), "nothing changed: the cached tallies serve");
        let changed = cache.tallies(fresh(6), long, || async { Ok(tallies(3)) }).await.expect("reload");
        assert_eq!(changed.open, Some(3), "a newer screen change makes the entry stale");
        let next_day = Freshness { clinic_date: NaiveDate::from_ymd_opt(2026, 12, 2).expect("date"), change_seq: 6 };
        let tomorrow = cache.tallies(next_day, long, || async { Ok(tallies(4)) }).await.expect("reload");
        assert_eq!(tomorrow.open, Some(4), "a new clinic day makes the entry stale");
        let aged = cache.tallies(next_day, Duration::ZERO, || async { Ok(tallies(5)) }).await.expect("reload");
        assert_eq!(aged.open, Some(5), "an entry older than the poll interval is loaded again");
    }

    #[tokio::test]
    async fn a_failed_load_keeps_nothing_and_each_filter_has_its_own_page() {
        let cache = QueueCache::default();
        let long = Duration::from_secs(3600);
        let failed = cache
            .first_page(QueueFilter::Open, 101, fresh(1), long, || async { Err(WebError::Internal("down".into())) })
            .await;
        assert!(failed.is_err());
        let open = cache
            .first_page(QueueFilter::Open, 101, fresh(1), long, || async { Ok(Arc::new(Vec::new())) })
            .await
            .expect("load");
        assert!(open.is_empty());
        let loaded_done = std::cell::Cell::new(false);
        cache
            .first_page(QueueFilter::Done, 101, fresh(1), long, || async {
                loaded_done.set(true);
                Ok(Arc::new(Vec::new()))
            })
            .await
            .expect("load");
        assert!(loaded_done.get(), "another filter does not share the open page's entry");
    }
}
