//! The topology as code, applied to the real broker: every policy and grant reads back as
//! declared, and applying twice changes nothing.

use comptoir_events::admin::PulsarAdmin;
use comptoir_events::topology::{COMPTOIR, Topology, apply};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topology_applies_idempotently_and_reads_back() {
    let admin = PulsarAdmin::new(comptoir_testkit::pulsar_admin_url(), None);
    let tenant = format!("comptoir-t-{}", comptoir_testkit::unique_suffix());
    let topology = Topology::parse(COMPTOIR, Some(&tenant)).expect("valid topology");

    apply(&admin, &topology).await.expect("first apply");
    apply(&admin, &topology)
        .await
        .expect("second apply is a no-op");

    for ns in &topology.namespaces {
        let retention = admin
            .policy(&ns.path, "retention")
            .await
            .expect("retention");
        assert_eq!(
            retention["retentionTimeInMinutes"], ns.retention_minutes,
            "{}",
            ns.path
        );
        assert_eq!(
            retention["retentionSizeInMB"], ns.retention_size_mb,
            "{}",
            ns.path
        );
        let ttl = admin.policy(&ns.path, "messageTTL").await.expect("ttl");
        assert_eq!(ttl, json!(ns.message_ttl_seconds), "{}", ns.path);
        let dedup = admin
            .policy(&ns.path, "deduplication")
            .await
            .expect("dedup");
        assert_eq!(dedup, json!(ns.deduplication), "{}", ns.path);
        let quota = admin
            .policy(&ns.path, "backlogQuotaMap")
            .await
            .expect("quota");
        assert_eq!(
            quota["destination_storage"]["limitSize"],
            ns.backlog_quota_mb * 1024 * 1024,
            "{}: {quota}",
            ns.path
        );
        assert_eq!(
            quota["destination_storage"]["policy"],
            "producer_request_hold"
        );
        let permissions = admin
            .policy(&ns.path, "permissions")
            .await
            .expect("permissions");
        for (role, actions) in &ns.permissions {
            let mut granted: Vec<String> = serde_json::from_value(permissions[role].clone())
                .unwrap_or_else(|_| panic!("{role} has no grant on {}: {permissions}", ns.path));
            granted.sort();
            assert_eq!(&granted, actions, "{role} on {}", ns.path);
        }
    }

    let orders = topology
        .namespaces
        .iter()
        .find(|n| n.path.ends_with("/orders"))
        .expect("orders namespace");
    let url = format!(
        "{}admin/v2/persistent/{}/order-events/partitions",
        comptoir_testkit::pulsar_admin_url(),
        orders.path
    );
    let metadata: serde_json::Value = reqwest::get(url)
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(metadata["partitions"], 4);

    admin.delete_tenant(&tenant).await.expect("clean up");
}
