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
