//! `comptoir-xtask bench-checkout`: checkouts through the gateway, from the request to the
//! order's `confirmed`, on a running platform (`dev/up`), and the write transactions one
//! checkout costs PostgreSQL (so `dev/bench-checkout.sh` can run pgbench with as many).
//!
//! Each simulated shopper is a real customer (registered and signed in through the gateway):
//! it puts a product in its cart, checks out with a fresh `Idempotency-Key` and reads its
//! order until the saga ends, as a storefront does: each read names the version it holds
//! (`If-None-Match`) and asks to wait for the next (`Prefer: wait=4`), so orders answers when
//! the order changes, one request in flight per shopper. Without `--rate`, `--shoppers` shoppers loop (closed loop: the
//! saturation rate). With `--rate R`, checkouts start on a fixed schedule of R per second
//! (open loop) and each latency is measured from the checkout's scheduled start, so a slow
//! platform cannot hide behind a slower schedule (no coordinated omission).
//!
//! Write transactions are counted from PostgreSQL's transaction ids: only a transaction that
//! writes is given one, so the growth of `txid_current()` over the run, less the idle growth
//! measured over the same time before it, divided by the checkouts, is what one checkout
//! writes (the platform's background work included).

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};

/// Parsed `bench-checkout` arguments.
#[derive(Debug)]
pub struct CheckoutBench {
    gateway: String,
    inventory_token_file: PathBuf,
    shoppers: usize,
    seconds: u64,
    rate: Option<f64>,
    pg_admin_url: String,
}

#[derive(Debug, Default)]
struct Tally {
    confirmed: u64,
    cancelled: u64,
    failed: u64,
}

const PASSWORD: &str = "bench shopper passphrase 2026";

impl CheckoutBench {
    pub fn parse(args: &[&str]) -> anyhow::Result<Self> {
        let mut bench = Self {
            gateway: "http://127.0.0.1:8000".to_owned(),
            inventory_token_file: PathBuf::new(),
            shoppers: 16,
            seconds: 30,
            rate: None,
            pg_admin_url: std::env::var("COMPTOIR_PG_ADMIN_URL").unwrap_or_default(),
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            match *flag {
                "--gateway" => bench.gateway = (*value).to_owned(),
                "--inventory-token-file" => bench.inventory_token_file = PathBuf::from(value),
                "--shoppers" => bench.shoppers = value.parse().context("--shoppers")?,
                "--seconds" => bench.seconds = value.parse().context("--seconds")?,
                "--rate" => bench.rate = Some(value.parse().context("--rate")?),
                other => bail!("unknown flag {other}"),
            }
        }
        anyhow::ensure!(
            !bench.inventory_token_file.as_os_str().is_empty(),
            "--inventory-token-file is required (to top up the stock)"
        );
        anyhow::ensure!(
            !bench.pg_admin_url.is_empty(),
            "COMPTOIR_PG_ADMIN_URL is not set"
        );
        anyhow::ensure!(
            bench.shoppers > 0 && bench.seconds > 0,
            "counts must be positive"
        );
        if let Some(rate) = bench.rate {
            anyhow::ensure!(rate > 0.0, "--rate must be positive");
        }
        Ok(bench)
    }

    /// Runs the benchmark and prints one line of `key=value` results.
    pub async fn run(self) -> anyhow::Result<()> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .build()?;
        let products = self.products(&http).await?;
        let shoppers = self.shoppers(&http).await?;
        let pg = admin(&self.pg_admin_url).await?;

        // The idle write rate, over as long as the run, then the run.
        let idle_before = xid(&pg).await?;
        let idle_window = Duration::from_secs(self.seconds.min(10));
        tokio::time::sleep(idle_window).await;
        let idle_rate = (xid(&pg).await? - idle_before) as f64 / idle_window.as_secs_f64();

        let latencies = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let run = Run {
            http,
            gateway: self.gateway.clone(),
            products: Arc::new(products),
            latencies: Arc::clone(&latencies),
            tally: Arc::clone(&tally),
        };
        let before = xid(&pg).await?;
        let started = Instant::now();
        let deadline = started + Duration::from_secs(self.seconds);
        match self.rate {
            None => run.closed_loop(shoppers, deadline).await,
            Some(rate) => run.open_loop(shoppers, deadline, rate).await,
        }
        let elapsed = started.elapsed().as_secs_f64();
        let writes = (xid(&pg).await? - before) as f64 - idle_rate * elapsed;
        let tally = tally.lock().await;
        let latencies = latencies.lock().await;
        let done = tally.confirmed + tally.cancelled;
        let ms = |q: f64| latencies.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "checkouts={done} confirmed={} cancelled={} failed={} seconds={elapsed:.1} \
             checkouts_per_s={:.1} p50_ms={:.1} p99_ms={:.1} max_ms={:.1} \
             write_tx_per_checkout={:.1} idle_write_tx_per_s={idle_rate:.1}",
            tally.confirmed,
            tally.cancelled,
            tally.failed,
            done as f64 / elapsed,
            ms(0.5),
            ms(0.99),
            latencies.max() as f64 / 1000.0,
            if done > 0 { writes / done as f64 } else { 0.0 },
        );
        Ok(())
    }

    /// Active priced demo products (a free one cannot be ordered alone), each topped up so
    /// the run never runs out of stock.
    async fn products(&self, http: &reqwest::Client) -> anyhow::Result<Vec<String>> {
        let page: Value = http
            .get(format!("{}/v1/products?limit=20", self.gateway))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let ids: Vec<String> = page["items"]
            .as_array()
            .context("no product list")?
            .iter()
            .filter(|p| p["price_cents"].as_i64().is_some_and(|price| price > 0))
            .filter_map(|p| p["id"].as_str().map(str::to_owned))
            .collect();
        anyhow::ensure!(
            !ids.is_empty(),
            "no products: start the platform with dev/up"
        );
        let token = std::fs::read_to_string(&self.inventory_token_file)
            .with_context(|| format!("cannot read {}", self.inventory_token_file.display()))?;
        for id in &ids {
            http.post(format!("{}/v1/admin/stock/{id}/adjustments", self.gateway))
                .bearer_auth(token.trim())
                .json(&json!({ "delta": 1_000_000, "reason": "bench-checkout top-up" }))
                .send()
                .await?
                .error_for_status()
                .context("cannot top up the stock")?;
        }
        Ok(ids)
    }

    /// Registers and signs in the shoppers; returns their access tokens.
    async fn shoppers(&self, http: &reqwest::Client) -> anyhow::Result<Vec<String>> {
        let run = uuid::Uuid::new_v4().simple().to_string();
        let mut tokens = Vec::with_capacity(self.shoppers);
        for i in 0..self.shoppers {
            let email = format!("bench-{}-{i}@bench.example", &run[..8]);
            http.post(format!("{}/v1/customers", self.gateway))
                .json(&json!({ "email": email, "password": PASSWORD, "name": "Bench Shopper" }))
                .send()
                .await?
                .error_for_status()
                .context("registration")?;
            let session: Value = http
                .post(format!("{}/v1/sessions", self.gateway))
                .json(&json!({ "email": email, "password": PASSWORD }))
                .send()
                .await?
                .error_for_status()
                .context("sign-in (raise identity's login limits for a benchmark)")?
                .json()
                .await?;
            tokens.push(
                session["access_token"]
                    .as_str()
                    .context("no access token")?
                    .to_owned(),
            );
        }
        Ok(tokens)
    }
}

#[derive(Clone)]
struct Run {
    http: reqwest::Client,
    gateway: String,
    products: Arc<Vec<String>>,
    latencies: Arc<Mutex<Histogram<u64>>>,
    tally: Arc<Mutex<Tally>>,
}

impl Run {
    async fn closed_loop(&self, shoppers: Vec<String>, deadline: Instant) {
        let tasks: Vec<_> = shoppers
            .into_iter()
            .enumerate()
            .map(|(i, token)| {
                let run = self.clone();
                tokio::spawn(async move {
                    let mut n = i;
                    while Instant::now() < deadline {
                        run.checkout(&token, n, Instant::now()).await;
                        n += 1;
                    }
                })
            })
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    }

    async fn open_loop(&self, shoppers: Vec<String>, deadline: Instant, rate: f64) {
        // Idle shoppers wait in a queue; a checkout due now takes the next one (waiting for one
        // counts in its latency: the schedule does not slow down when the platform does).
        let (idle_tx, idle_rx) = mpsc::unbounded_channel();
        for token in shoppers {
            let _ = idle_tx.send(token);
        }
        let idle_rx = Arc::new(Mutex::new(idle_rx));
        let period = Duration::from_secs_f64(1.0 / rate);
        let start = Instant::now();
        let mut tasks = Vec::new();
        let mut n = 0usize;
        loop {
            let due = start + period.mul_f64(n as f64);
            if due >= deadline {
                break;
            }
            tokio::time::sleep_until(due.into()).await;
            let run = self.clone();
            let idle_rx = Arc::clone(&idle_rx);
            let idle_tx = idle_tx.clone();
            tasks.push(tokio::spawn(async move {
                let token = idle_rx.lock().await.recv().await;
                if let Some(token) = token {
                    run.checkout(&token, n, due).await;
                    let _ = idle_tx.send(token);
                }
            }));
            n += 1;
        }
        for task in tasks {
            let _ = task.await;
        }
    }

    /// One checkout, from `since` to the end of its saga.
    async fn checkout(&self, token: &str, n: usize, since: Instant) {
        let outcome = self.checkout_inner(token, n).await;
        let mut tally = self.tally.lock().await;
        match outcome {
            Ok(status) => {
                if status == "confirmed" {
                    tally.confirmed += 1;
                } else {
                    tally.cancelled += 1;
                }
                let micros = since.elapsed().as_micros() as u64;
                let _ = self.latencies.lock().await.record(micros.max(1));
            }
            Err(error) => {
                tally.failed += 1;
                if tally.failed <= 3 {
                    eprintln!("bench-checkout: a checkout failed: {error:#}");
                }
                drop(tally);
                // A refusal (429, 503) answers fast: do not turn it into a tight loop.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    async fn checkout_inner(&self, token: &str, n: usize) -> anyhow::Result<String> {
        let product = &self.products[n % self.products.len()];
        self.http
            .put(format!("{}/v1/cart/lines/{product}", self.gateway))
            .bearer_auth(token)
            .json(&json!({ "quantity": 1 }))
            .send()
            .await?
            .error_for_status()?;
        let order: Value = self
            .http
            .post(format!("{}/v1/orders", self.gateway))
            .bearer_auth(token)
            .header("idempotency-key", uuid::Uuid::new_v4().to_string())
            .json(&json!({ "payment_token": "tok_success" }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = order["id"].as_str().context("no order id")?.to_owned();
        let url = format!("{}/v1/orders/{id}", self.gateway);
        let mut seen: Option<reqwest::header::HeaderValue> = None;
        loop {
            let mut request = self
                .http
                .get(&url)
                .bearer_auth(token)
                .header("prefer", "wait=4");
            if let Some(tag) = &seen {
                request = request.header(reqwest::header::IF_NONE_MATCH, tag.clone());
            }
            let response = request.send().await?.error_for_status()?;
            if response.status() == reqwest::StatusCode::NOT_MODIFIED {
                continue;
            }
            seen = response.headers().get(reqwest::header::ETAG).cloned();
            let order: Value = response.json().await?;
            match order["status"].as_str() {
                Some(status @ ("confirmed" | "cancelled")) => return Ok(status.to_owned()),
                Some(_) => {}
                None => bail!("no status in {order}"),
            }
        }
    }
}

async fn admin(url: &str) -> anyhow::Result<comptoir_store::tokio_postgres::Client> {
    let config = comptoir_store::tokio_postgres::Config::from_str(url)
        .context("the admin URL is not a PostgreSQL URL")?;
    let (client, connection) = config
        .connect(comptoir_store::tokio_postgres::NoTls)
        .await
        .context("cannot connect as administrator")?;
    tokio::spawn(connection);
    Ok(client)
}

/// The next transaction id (taking one: a constant 1 per call, within the noise).
async fn xid(client: &comptoir_store::tokio_postgres::Client) -> anyhow::Result<i64> {
    Ok(client.query_one("SELECT txid_current()", &[]).await?.get(0))
}
