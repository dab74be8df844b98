//! A message published before the broker stops is delivered after it starts again.
//!
//! Runs a private standalone (its own data directory and ports) through the same launcher as
//! the local platform, so stopping it disturbs no other test.

use std::time::Duration;

use comptoir_events::admin::PulsarAdmin;
use comptoir_testkit::standalone::Standalone;
use futures::TryStreamExt;
use pulsar::consumer::{ConsumerOptions, InitialPosition};
use pulsar::{Consumer, Pulsar, SubType, TokioExecutor};

async fn subscribe(
    pulsar: &Pulsar<TokioExecutor>,
    topic: &str,
) -> Consumer<Vec<u8>, TokioExecutor> {
    pulsar
        .consumer()
        .with_topic(topic)
        .with_subscription("restart-test")
        .with_subscription_type(SubType::Exclusive)
        .with_options(ConsumerOptions::default().with_initial_position(InitialPosition::Earliest))
        .build()
        .await
        .expect("subscribe")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_published_before_a_restart_is_delivered_after_it() {
    let broker = tokio::task::spawn_blocking(Standalone::start)
        .await
        .expect("join")
        .expect("start a private standalone");
    let admin = PulsarAdmin::new(broker.admin_url(), None);
    admin
        .ensure_namespace("comptoir/restart")
        .await
        .expect("namespace");
    let topic = "persistent://comptoir/restart/events";
    let payload = format!("before-restart-{}", comptoir_testkit::unique_suffix());

    {
        let pulsar = Pulsar::builder(broker.url().as_str(), TokioExecutor)
            .build()
            .await
            .expect("connect");
        // The durable subscription exists before the message: that is what keeps it.
        let mut consumer = subscribe(&pulsar, topic).await;
        let mut producer = pulsar
            .producer()
            .with_topic(topic)
            .build()
            .await
            .expect("producer");
        producer
            .send_non_blocking(payload.clone())
            .await
            .expect("send")
            .await
            .expect("broker ack");
        consumer.close().await.expect("close consumer");
        producer.close().await.expect("close producer");
    }

    let restart = {
        let b = &broker;
        move || -> anyhow::Result<()> {
            b.stop()?;
            b.restart()
        }
    };
    tokio::task::block_in_place(restart).expect("restart the standalone");

    let pulsar = Pulsar::builder(broker.url().as_str(), TokioExecutor)
        .build()
        .await
        .expect("reconnect");
    let mut consumer = subscribe(&pulsar, topic).await;
    let message = tokio::time::timeout(Duration::from_secs(60), consumer.try_next())
        .await
        .expect("a message within 60 s")
        .expect("stream ok")
        .expect("stream open");
    assert_eq!(String::from_utf8_lossy(&message.payload.data), payload);
    consumer.ack(&message).await.expect("ack");
}
