//! The shoppers' read path: the pages of the catalogue they read (product listings and
//! searches, the category list) kept in memory, ready to send, and dropped the moment the
//! catalogue changes.
//!
//! Browsing is most of what shoppers do, and the catalogue changes a few times a day, so a
//! page is computed once by the same SQL as before ([`crate::repo`]) and then served from
//! memory with a strong `ETag` (a hash of its bytes): a client that sends it back in
//! `If-None-Match` gets `304 Not Modified` and no body.
//!
//! **Freshness.** Every write to `products` or `categories` notifies the channel
//! `catalog_changed` in its own transaction (a statement trigger, migration V4), so the
//! notification is delivered when, and only if, the change commits. The listener
//! ([`PageCache::run_listener`], a dedicated connection) then drops every page. The
//! documented bound (docs/performance.md) is therefore the notification's delivery: a few
//! milliseconds locally; the test `a_price_change_is_served_within_the_bound` holds it to one
//! second. At worst, when the listening connection dies without a word (a partition), two
//! [`HEARTBEAT`]s. Two races are closed:
//! - a page computed from the state before a commit but stored after that commit's
//!   notification was handled: each page is stored only if no notification arrived since its
//!   query began (a generation counter), so it is never stored;
//! - a notification lost with the listening connection: while the listener is not connected,
//!   nothing is served from memory or stored (every request reads the database), and on
//!   reconnection every page is dropped.
//!
//! [`CACHE_CONTROL`] makes browsers revalidate their copy on each use, which the `ETag` makes
//! cheap, and lets the gateway's shared cache answer for one second: through the gateway the
//! bound is one second more.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use comptoir_platform::Problem;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use tokio_util::sync::CancellationToken;

/// The channel the catalogue's triggers notify (migration V4).
pub const CHANNEL: &str = "catalog_changed";

/// How often the listening connection proves it is alive: a connection lost silently stops
/// the pages being served within twice this.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);

/// Clients revalidate on every use (`max-age=0, must-revalidate`: cheap with the ETag); a shared
/// cache — the gateway's (services/gateway/src/cache.rs) — may answer for one second
/// (`s-maxage=1`), which adds at most that second to the freshness bound through it.
pub const CACHE_CONTROL: &str = "public, max-age=0, s-maxage=1, must-revalidate";

/// What a page is the answer to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PageKey {
    /// A listing of products, by its validated filter.
    Products(crate::repo::ProductFilter),
    /// Every category.
    Categories,
}

/// A page ready to send: its JSON body and the `ETag` of those bytes.
#[derive(Debug)]
pub struct Page {
    body: Bytes,
    etag: HeaderValue,
}

impl Page {
    /// The page of `value`'s JSON.
    pub fn of<T: serde::Serialize>(value: &T) -> Result<Self, Problem> {
        let body = Bytes::from(serde_json::to_vec(value).map_err(|error| {
            tracing::error!(%error, "Cannot serialise a page");
            Problem::internal()
        })?);
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut hasher);
        let etag = HeaderValue::from_str(&format!("\"{:016x}\"", hasher.finish()))
            .expect("a quoted hex string is a header value");
        Ok(Self { body, etag })
    }

    /// `304` when `request` already holds this page (`If-None-Match` with its tag, or `*`),
    /// else `200` with the body; both with the `ETag` and [`CACHE_CONTROL`].
    pub fn respond(&self, request: &HeaderMap) -> Response {
        let headers = [
            (header::ETAG, self.etag.clone()),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(CACHE_CONTROL),
            ),
        ];
        if comptoir_platform::etag::none_match(request, &self.etag) {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        let mut response = (StatusCode::OK, headers, Body::from(self.body.clone())).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// The pages in memory. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct PageCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Bumped by every notification and every (re)connection of the listener.
    generation: AtomicU64,
    /// Whether the listener is connected: pages are served and stored only then.
    live: AtomicBool,
    /// Off: every request reads the database (settings `read_cache.enabled`).
    enabled: bool,
    max_pages: usize,
    pages: Mutex<HashMap<PageKey, Arc<Page>>>,
}

/// Where a page came from, for the `catalog_pages_total{result}` counter.
fn count(result: &'static str) {
    metrics::counter!("catalog_pages_total", "result" => result).increment(1);
}

impl PageCache {
    /// An empty cache, not live until [`Self::run_listener`] has connected.
    pub fn new(enabled: bool, max_pages: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                generation: AtomicU64::new(0),
                live: AtomicBool::new(false),
                enabled,
                max_pages,
                pages: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The page for `key`: from memory when the cache is live and holds it, else computed by
    /// `compute` (the database) and kept when nothing changed meanwhile.
    pub async fn page<E, F>(&self, key: PageKey, compute: F) -> Result<Arc<Page>, E>
    where
        F: Future<Output = Result<Page, E>>,
    {
        let inner = &self.inner;
        if !inner.enabled {
            return compute.await.map(Arc::new);
        }
        // Read before the query: a notification during the query bumps it, and the page is
        // then not kept (it may predate the change).
        let generation = inner.generation.load(Ordering::Acquire);
        let live = inner.live.load(Ordering::Acquire);
        if live && let Some(page) = self.lock().get(&key) {
            count("memory");
            return Ok(Arc::clone(page));
        }
        let page = Arc::new(compute.await?);
        if !live {
            count("database-listener-down");
            return Ok(page);
        }
        count("database");
        let mut pages = self.lock();
        // Checked under the lock that `invalidate` takes: no notification can slip between.
        if inner.live.load(Ordering::Acquire)
            && inner.generation.load(Ordering::Acquire) == generation
        {
            if pages.len() >= inner.max_pages {
                // Rare (the catalogue's pages are few); simpler than an LRU and never stale.
                pages.clear();
            }
            pages.insert(key, Arc::clone(&page));
        }
        Ok(page)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PageKey, Arc<Page>>> {
        // A panic while holding it leaves a map of whole pages: still usable.
        self.inner.pages.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops every page; `live` says whether new ones may be served and kept.
    fn invalidate(&self, live: bool) {
        let mut pages = self.lock();
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        self.inner.live.store(live, Ordering::Release);
        pages.clear();
        metrics::gauge!("catalog_pages_live").set(if live { 1.0 } else { 0.0 });
    }

    /// Listens to `catalog_changed` until `shutdown`: drops every page on each notification,
    /// goes live on each connection, stops serving from memory while disconnected.
    pub async fn run_listener(
        self,
        settings: comptoir_store::DatabaseSettings,
        shutdown: CancellationToken,
    ) {
        if !self.inner.enabled {
            return;
        }
        comptoir_store::keep_listening(
            settings,
            CHANNEL,
            HEARTBEAT,
            shutdown,
            |event| match event {
                comptoir_store::Listening::Connected | comptoir_store::Listening::Notified(_) => {
                    self.invalidate(true);
                }
                comptoir_store::Listening::Lost => self.invalidate(false),
            },
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(offset: i64) -> PageKey {
        PageKey::Products(crate::repo::ProductFilter {
            limit: 20,
            offset,
            ..Default::default()
        })
    }

    async fn page_of(cache: &PageCache, key: PageKey, value: u32) -> Arc<Page> {
        cache
            .page(key, async move { Page::of(&value) })
            .await
            .expect("json")
    }

    #[tokio::test]
    async fn nothing_is_kept_until_the_listener_is_connected() {
        let cache = PageCache::new(true, 10);
        page_of(&cache, key(0), 1).await;
        assert_eq!(&page_of(&cache, key(0), 2).await.body[..], b"2");
        cache.invalidate(true);
        page_of(&cache, key(0), 3).await;
        assert_eq!(&page_of(&cache, key(0), 4).await.body[..], b"3");
    }

    #[tokio::test]
    async fn a_notification_drops_every_page_and_losing_the_listener_stops_the_cache() {
        let cache = PageCache::new(true, 10);
        cache.invalidate(true);
        page_of(&cache, key(0), 1).await;
        cache.invalidate(true);
        assert_eq!(&page_of(&cache, key(0), 2).await.body[..], b"2");
        cache.invalidate(false);
        assert_eq!(&page_of(&cache, key(0), 3).await.body[..], b"3");
        assert_eq!(&page_of(&cache, key(0), 4).await.body[..], b"4");
    }

    #[tokio::test]
    async fn a_page_computed_across_a_change_is_not_kept() {
        let cache = PageCache::new(true, 10);
        cache.invalidate(true);
        let during = cache.clone();
        let stale = cache
            .page(key(0), async move {
                // The change commits and is notified while this query runs.
                during.invalidate(true);
                Page::of(&1)
            })
            .await
            .expect("json");
        assert_eq!(&stale.body[..], b"1");
        assert_eq!(&page_of(&cache, key(0), 2).await.body[..], b"2");
    }

    #[tokio::test]
    async fn a_full_cache_starts_over_instead_of_growing() {
        let cache = PageCache::new(true, 2);
        cache.invalidate(true);
        for offset in 0..3 {
            page_of(&cache, key(offset), 1).await;
        }
        assert_eq!(cache.lock().len(), 1);
    }

    #[test]
    fn if_none_match_with_the_tag_weak_or_star_is_not_modified() {
        let page = Page::of(&serde_json::json!({"a": 1})).expect("json");
        let tag = page.etag.to_str().expect("ascii").to_owned();
        for sent in [
            tag.clone(),
            format!("W/{tag}"),
            "*".to_owned(),
            format!("\"x\", {tag}"),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(header::IF_NONE_MATCH, sent.parse().expect("value"));
            assert_eq!(
                page.respond(&headers).status(),
                StatusCode::NOT_MODIFIED,
                "{sent}"
            );
        }
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, "\"other\"".parse().expect("value"));
        let response = page.respond(&headers);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::ETAG], page.etag);
        assert_eq!(response.headers()[header::CACHE_CONTROL], CACHE_CONTROL);
    }
}
