//! `comptoir-xtask bench-producer`: our Pulsar producer's throughput and publish latency, to
//! set beside pulsar-perf on the same broker in the same run (`dev/bench-pulsar.sh`).
//!
//! Sends are pipelined (a bounded number in flight, each awaited for its receipt) with batching
//! on, the way the outbox relay publishes; awaiting each send before the next is what makes
//! Rust producers look slow in public reports (pulsar-rs #193).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use pulsar::producer::ProducerOptions;
use pulsar::{Pulsar, TokioExecutor};
use tokio::sync::Mutex;

/// Parsed `bench-producer` arguments.
#[derive(Debug)]
pub struct ProducerBench {
    pub url: String,
    pub topic: String,
    pub messages: u64,
    pub size: usize,
    pub in_flight: usize,
    pub batch_messages: u32,
}

impl ProducerBench {
    pub fn parse(args: &[&str]) -> anyhow::Result<Self> {
        let mut bench = Self {
            url: "pulsar://127.0.0.1:6650".to_owned(),
            topic: String::new(),
            messages: 200_000,
            size: 1024,
            in_flight: 2_000,
            batch_messages: 1_000,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            match *flag {
                "--url" => bench.url = (*value).to_owned(),
                "--topic" => bench.topic = (*value).to_owned(),
                "--messages" => bench.messages = value.parse().context("--messages")?,
                "--size" => bench.size = value.parse().context("--size")?,
                "--in-flight" => bench.in_flight = value.parse().context("--in-flight")?,
                "--batch" => bench.batch_messages = value.parse().context("--batch")?,
                other => anyhow::bail!("unknown flag {other}"),
            }
        }
        anyhow::ensure!(!bench.topic.is_empty(), "--topic is required");
        anyhow::ensure!(
            bench.in_flight > 0 && bench.messages > 0,
            "counts must be positive"
        );
        Ok(bench)
    }

    /// Runs the benchmark and prints one line: `messages msgs_per_s p50_ms p99_ms`.
    pub async fn run(&self) -> anyhow::Result<()> {
        let pulsar = Pulsar::builder(&self.url, TokioExecutor)
            .build()
            .await
            .context("connect")?;
        let mut producer = pulsar
            .producer()
            .with_topic(&self.topic)
            .with_options(ProducerOptions {
                batch_size: Some(self.batch_messages),
                batch_byte_size: Some(128 * 1024),
                batch_timeout: Some(Duration::from_millis(1)),
                ..Default::default()
            })
            .build()
            .await
            .context("producer")?;
        let payload = vec![b'x'; self.size];
        let histogram = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
        let mut pending = FuturesUnordered::new();
        let started = Instant::now();
        for _ in 0..self.messages {
            if pending.len() >= self.in_flight
                && let Some(result) = pending.next().await
            {
                result?;
            }
            let sent_at = Instant::now();
            let receipt = producer.send_non_blocking(payload.clone()).await?;
            let histogram = Arc::clone(&histogram);
            pending.push(async move {
                receipt.await?;
                let micros = sent_at.elapsed().as_micros() as u64;
                histogram.lock().await.record(micros.max(1))?;
                anyhow::Ok(())
            });
        }
        while let Some(result) = pending.next().await {
            result?;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let h = histogram.lock().await;
        println!(
            "{} {:.0} {:.3} {:.3}",
            self.messages,
            self.messages as f64 / elapsed,
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0
        );
        producer.close().await?;
        Ok(())
    }
}

/// `bench-pipeline`: the outbox pipeline end to end on the local platform — a change commits
/// its event to the outbox, the relay publishes it, Key_Shared consumers apply it through their
/// inbox — measured as events/s at full speed and insert-to-effect latency at a fixed rate.
#[derive(Debug)]
pub struct PipelineBench {
    pub pg_admin_url: String,
    pub pulsar_url: String,
    pub pulsar_admin_url: String,
    pub backlog: u64,
    pub burst: u64,
    pub rate: u64,
    pub seconds: u64,
    pub writers: usize,
    pub consumers: usize,
}

/// Records the insert-to-effect latency of every applied event.
struct Measure {
    applied: Arc<std::sync::atomic::AtomicU64>,
    latencies: Arc<Mutex<Histogram<u64>>>,
}

impl comptoir_events::consumer::Handler<ProductChanged> for Measure {
    fn handle<'a>(
        &'a self,
        tx: &'a deadpool_postgres::Transaction<'a>,
        event: &'a CloudEvent<ProductChanged>,
    ) -> futures::future::BoxFuture<'a, Result<(), comptoir_events::consumer::HandlerError>> {
        Box::pin(async move {
            tx.execute(
                "INSERT INTO effects (event_id, product_id) VALUES ($1, $2)",
                &[&event.id, &event.data.product_id],
            )
            .await?;
            let micros = (time::OffsetDateTime::now_utc() - event.time)
                .whole_microseconds()
                .max(1) as u64;
            self.latencies.lock().await.record(micros)?;
            self.applied
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        })
    }
}

use comptoir_events::CloudEvent;
use comptoir_events::contracts::catalog::ProductChanged;

impl PipelineBench {
    pub fn parse(args: &[&str]) -> anyhow::Result<Self> {
        let mut bench = Self {
            pg_admin_url: std::env::var("COMPTOIR_PG_ADMIN_URL").unwrap_or_default(),
            pulsar_url: "pulsar://127.0.0.1:6650".to_owned(),
            pulsar_admin_url: "http://127.0.0.1:8080".to_owned(),
            backlog: 20_000,
            burst: 20_000,
            rate: 1_000,
            seconds: 10,
            writers: 8,
            consumers: 4,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            match *flag {
                "--pulsar-url" => bench.pulsar_url = (*value).to_owned(),
                "--pulsar-admin-url" => bench.pulsar_admin_url = (*value).to_owned(),
                "--backlog" => bench.backlog = value.parse().context("--backlog")?,
                "--burst" => bench.burst = value.parse().context("--burst")?,
                "--rate" => bench.rate = value.parse().context("--rate")?,
                "--seconds" => bench.seconds = value.parse().context("--seconds")?,
                "--writers" => bench.writers = value.parse().context("--writers")?,
                "--consumers" => bench.consumers = value.parse().context("--consumers")?,
                other => anyhow::bail!("unknown flag {other}"),
            }
        }
        anyhow::ensure!(
            !bench.pg_admin_url.is_empty(),
            "COMPTOIR_PG_ADMIN_URL must be set (dev/postgres.sh admin-url)"
        );
        anyhow::ensure!(
            bench.writers > 0 && bench.consumers > 0 && bench.rate > 0,
            "counts must be positive"
        );
        Ok(bench)
    }

    pub async fn run(&self) -> anyhow::Result<()> {
        use std::str::FromStr;
        use std::sync::atomic::Ordering;

        // A database of its own, recreated each run, with the tables a service would have.
        let name = "bench_pipeline";
        let admin_config = comptoir_store::tokio_postgres::Config::from_str(&self.pg_admin_url)?;
        let (admin, connection) = admin_config
            .connect(comptoir_store::tokio_postgres::NoTls)
            .await?;
        tokio::spawn(connection);
        comptoir_store::provision::drop_service_database(&admin, name).await?;
        let password = uuid::Uuid::new_v4().simple().to_string();
        comptoir_store::provision::ensure_service_database(&admin, name, &password).await?;
        let dir = tempfile::tempdir()?;
        let password_file = dir.path().join("pw");
        std::fs::write(&password_file, &password)?;
        let host = match admin_config.get_hosts().first() {
            Some(comptoir_store::tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".to_owned(),
        };
        let settings = comptoir_store::DatabaseSettings {
            host,
            port: admin_config.get_ports().first().copied().unwrap_or(5432),
            name: name.to_owned(),
            user: name.to_owned(),
            password_file: Some(password_file),
            pool_size: self.writers + self.consumers + 2,
            ..comptoir_store::DatabaseSettings::default()
        };
        let pool = comptoir_store::connect(&settings)?;
        pool.get()
            .await?
            .batch_execute(&format!(
                "{}\n{}\nCREATE TABLE effects (event_id uuid PRIMARY KEY, product_id uuid NOT NULL);",
                comptoir_events::outbox::OUTBOX_TABLE_SQL,
                comptoir_events::consumer::INBOX_TABLE_SQL
            ))
            .await?;

        let admin_api = comptoir_events::admin::PulsarAdmin::new(
            url::Url::parse(&self.pulsar_admin_url)?,
            None,
        );
        admin_api
            .ensure_namespace("comptoir-bench/pipeline")
            .await?;
        let topic = format!(
            "persistent://comptoir-bench/pipeline/run-{}",
            uuid::Uuid::now_v7().simple()
        );
        let pulsar = Pulsar::builder(&self.pulsar_url, TokioExecutor)
            .build()
            .await?;

        let stop = tokio_util::sync::CancellationToken::new();
        let applied = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let latencies = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
        let config = comptoir_events::consumer::ConsumerConfig::new(&topic, "bench");
        for _ in 0..self.consumers {
            let consumer = comptoir_events::consumer::EventConsumer::new(
                pool.clone(),
                pulsar.clone(),
                config.clone(),
                Measure {
                    applied: Arc::clone(&applied),
                    latencies: Arc::clone(&latencies),
                },
            );
            tokio::spawn(consumer.run(stop.clone()));
        }
        // Every consumer is subscribed before the first event is written.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let stats = admin_api.topic_stats(&topic).await.unwrap_or_default();
            let connected = stats["subscriptions"]["bench"]["consumers"]
                .as_array()
                .map_or(0, Vec::len);
            if connected >= self.consumers {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "consumers did not subscribe: {stats}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Phase 0: the pipeline's own capacity. A backlog is written to the outbox before the
        // relay starts (many events per transaction, so writing is not what is measured),
        // then relay, broker and consumers drain it.
        let mut written = 0;
        while written < self.backlog {
            let chunk = (self.backlog - written).min(1_000);
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            for _ in 0..chunk {
                enqueue_one(&tx, &topic).await?;
            }
            tx.commit().await?;
            written += chunk;
        }
        let started = Instant::now();
        // The relay connects on its own, as in the services, so its sends do not share a TCP
        // connection with the consumers' acks (see `Relay::connect`).
        let relay_settings = comptoir_events::pulsar::PulsarSettings {
            url: url::Url::parse(&self.pulsar_url)?,
            ..comptoir_events::pulsar::PulsarSettings::default()
        };
        let relay =
            comptoir_events::outbox::Relay::connect(pool.clone(), &relay_settings, "bench-relay")
                .await?
                .listen_on(settings.clone());
        let relay_task = tokio::spawn(relay.run(stop.clone()));
        wait_applied(&applied, self.backlog, Duration::from_secs(600)).await?;
        let drain_rate = self.backlog as f64 / started.elapsed().as_secs_f64();
        let base = applied.load(Ordering::Relaxed);

        // Phase 1: as fast as the writers can commit.
        let started = Instant::now();
        let per_writer = self.burst / self.writers as u64;
        let mut writers = Vec::new();
        for _ in 0..self.writers {
            let pool = pool.clone();
            let topic = topic.clone();
            writers.push(tokio::spawn(async move {
                for _ in 0..per_writer {
                    write_one(&pool, &topic).await?;
                }
                anyhow::Ok(())
            }));
        }
        for writer in writers {
            writer.await??;
        }
        let total = per_writer * self.writers as u64;
        wait_applied(&applied, base + total, Duration::from_secs(600)).await?;
        let burst_rate = total as f64 / started.elapsed().as_secs_f64();
        latencies.lock().await.reset();

        // Phase 2: a steady rate, paced by a timer.
        let mut ticker = tokio::time::interval(Duration::from_secs(1) / self.rate as u32);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let steady = self.rate * self.seconds;
        let before = applied.load(Ordering::Relaxed);
        let mut inflight = FuturesUnordered::new();
        for _ in 0..steady {
            ticker.tick().await;
            let pool = pool.clone();
            let topic = topic.clone();
            inflight.push(tokio::spawn(async move { write_one(&pool, &topic).await }));
            while let Some(done) = futures::FutureExt::now_or_never(inflight.next()).flatten() {
                done??;
            }
        }
        while let Some(done) = inflight.next().await {
            done??;
        }
        wait_applied(&applied, before + steady, Duration::from_secs(600)).await?;
        let h = latencies.lock().await;
        println!("| phase | events | result |");
        println!("|---|---:|---|");
        println!(
            "| drain a {}-event outbox backlog (relay → broker → {} consumers) | {} | {drain_rate:.0} events/s |",
            self.backlog, self.consumers, self.backlog
        );
        println!(
            "| burst ({} writers, {} consumers) | {total} | {burst_rate:.0} events/s |",
            self.writers, self.consumers
        );
        println!(
            "| steady {} events/s for {} s | {steady} | insert-to-effect p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms |",
            self.rate,
            self.seconds,
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0
        );
        stop.cancel();
        let _ = relay_task.await;
        Ok(())
    }
}

/// One business transaction: the change (here only its event) committed with its outbox row.
async fn write_one(pool: &deadpool_postgres::Pool, topic: &str) -> anyhow::Result<()> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    enqueue_one(&tx, topic).await?;
    tx.commit().await?;
    Ok(())
}

/// One event into the outbox through `tx`.
async fn enqueue_one(tx: &deadpool_postgres::Transaction<'_>, topic: &str) -> anyhow::Result<()> {
    let data = ProductChanged {
        product_id: uuid::Uuid::now_v7(),
        ..ProductChanged::sample()
    };
    let event = CloudEvent::new("/comptoir/bench", data.product_id.to_string(), data);
    comptoir_events::outbox::enqueue(tx, topic, &event).await?;
    Ok(())
}

async fn wait_applied(
    applied: &std::sync::atomic::AtomicU64,
    target: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while applied.load(std::sync::atomic::Ordering::Relaxed) < target {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {target} events applied",
            applied.load(std::sync::atomic::Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}
