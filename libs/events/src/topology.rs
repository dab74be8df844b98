//! The Pulsar topology as code: tenant, a namespace per bounded context, their policies and
//! who may produce and consume, read from a TOML file (`libs/events/topology/comptoir.toml`)
//! and applied idempotently through the admin API by [`apply`].

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::admin::{AdminError, PulsarAdmin};

/// The topology shipped with this crate.
pub const COMPTOIR: &str = include_str!("../topology/comptoir.toml");

/// Policies a namespace gets unless it overrides them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub retention_minutes: i64,
    pub retention_size_mb: i64,
    pub message_ttl_seconds: i64,
    pub backlog_quota_mb: i64,
    pub deduplication: bool,
}

/// A partitioned topic to create up front (non-partitioned ones are created on first use).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionedTopic {
    pub name: String,
    pub partitions: u32,
}

/// One namespace as written in the file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceSpec {
    pub name: String,
    #[serde(default)]
    pub producers: Vec<String>,
    #[serde(default)]
    pub consumers: Vec<String>,
    #[serde(default)]
    pub partitioned_topics: Vec<PartitionedTopic>,
    pub retention_minutes: Option<i64>,
    pub retention_size_mb: Option<i64>,
    pub message_ttl_seconds: Option<i64>,
    pub backlog_quota_mb: Option<i64>,
    pub deduplication: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tenant: String,
    defaults: Defaults,
    namespaces: Vec<NamespaceSpec>,
}

/// A namespace with every policy resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// `tenant/name`.
    pub path: String,
    pub retention_minutes: i64,
    pub retention_size_mb: i64,
    pub message_ttl_seconds: i64,
    pub backlog_quota_mb: i64,
    pub deduplication: bool,
    /// Role → actions (`produce`, `consume`), sorted.
    pub permissions: BTreeMap<String, Vec<String>>,
    pub partitioned_topics: Vec<PartitionedTopic>,
}

/// A validated topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub tenant: String,
    pub namespaces: Vec<Namespace>,
}

/// Why a topology file is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("the topology file is not valid TOML of the expected shape")]
    Parse(#[from] toml::de::Error),
    #[error("invalid topology:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

impl Topology {
    /// Parses and validates a topology; `tenant` overrides the file's tenant (tests use a
    /// tenant of their own).
    pub fn parse(text: &str, tenant: Option<&str>) -> Result<Self, TopologyError> {
        let file: File = toml::from_str(text)?;
        let tenant = tenant.unwrap_or(&file.tenant).to_owned();
        let d = &file.defaults;
        let mut problems = Vec::new();
        if !valid_name(&tenant) {
            problems.push(format!(
                "tenant {tenant:?} must be lowercase letters, digits, '-'"
            ));
        }
        let mut namespaces = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for spec in file.namespaces {
            let name = &spec.name;
            if !valid_name(name) {
                problems.push(format!(
                    "namespace {name:?} must be lowercase letters, digits, '-'"
                ));
            }
            if !seen.insert(name.clone()) {
                problems.push(format!("namespace {name:?} is declared twice"));
            }
            let ns = Namespace {
                path: format!("{tenant}/{name}"),
                retention_minutes: spec.retention_minutes.unwrap_or(d.retention_minutes),
                retention_size_mb: spec.retention_size_mb.unwrap_or(d.retention_size_mb),
                message_ttl_seconds: spec.message_ttl_seconds.unwrap_or(d.message_ttl_seconds),
                backlog_quota_mb: spec.backlog_quota_mb.unwrap_or(d.backlog_quota_mb),
                deduplication: spec.deduplication.unwrap_or(d.deduplication),
                permissions: permissions(&spec.producers, &spec.consumers),
                partitioned_topics: spec.partitioned_topics,
            };
            if ns.retention_size_mb >= 0 && ns.retention_size_mb <= ns.backlog_quota_mb {
                problems.push(format!(
                    "namespace {name:?}: retention_size_mb ({}) must exceed backlog_quota_mb ({})",
                    ns.retention_size_mb, ns.backlog_quota_mb
                ));
            }
            if ns.message_ttl_seconds < 0 || ns.retention_minutes < -1 {
                problems.push(format!("namespace {name:?}: negative TTL or retention"));
            }
            for topic in &ns.partitioned_topics {
                if !valid_name(&topic.name) || !(1..=128).contains(&topic.partitions) {
                    problems.push(format!(
                        "namespace {name:?}: topic {:?} needs a valid name and 1–128 partitions",
                        topic.name
                    ));
                }
            }
            namespaces.push(ns);
        }
        if problems.is_empty() {
            Ok(Self { tenant, namespaces })
        } else {
            Err(TopologyError::Invalid(problems))
        }
    }
}

fn permissions(producers: &[String], consumers: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for role in producers {
        map.entry(role.clone())
            .or_default()
            .push("produce".to_owned());
    }
    for role in consumers {
        map.entry(role.clone())
            .or_default()
            .push("consume".to_owned());
    }
    for actions in map.values_mut() {
        actions.sort();
        actions.dedup();
    }
    map
}

/// Applies `topology`: creates what is missing and sets every policy to the declared value.
/// Roles not declared keep whatever grants they had: removing a grant is a deliberate act
/// (`pulsar-admin namespaces revoke-permission`), not a side effect of a file edit.
pub async fn apply(admin: &PulsarAdmin, topology: &Topology) -> Result<(), AdminError> {
    admin.ensure_tenant(&topology.tenant).await?;
    for ns in &topology.namespaces {
        admin.ensure_namespace(&ns.path).await?;
        // Backlog quota before retention: Pulsar checks retention size against the quota.
        admin
            .set_policy(
                &ns.path,
                "backlogQuota?backlogQuotaType=destination_storage",
                serde_json::json!({
                    "limitSize": ns.backlog_quota_mb * 1024 * 1024,
                    "limitTime": -1,
                    "policy": "producer_request_hold"
                }),
            )
            .await?;
        admin
            .set_policy(
                &ns.path,
                "retention",
                serde_json::json!({
                    "retentionTimeInMinutes": ns.retention_minutes,
                    "retentionSizeInMB": ns.retention_size_mb
                }),
            )
            .await?;
        admin
            .set_policy(
                &ns.path,
                "messageTTL",
                serde_json::json!(ns.message_ttl_seconds),
            )
            .await?;
        admin
            .set_policy(
                &ns.path,
                "deduplication",
                serde_json::json!(ns.deduplication),
            )
            .await?;
        for (role, actions) in &ns.permissions {
            admin
                .set_policy(
                    &ns.path,
                    &format!("permissions/{role}"),
                    serde_json::json!(actions),
                )
                .await?;
        }
        for topic in &ns.partitioned_topics {
            admin
                .ensure_partitioned_topic(&format!("{}/{}", ns.path, topic.name), topic.partitions)
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_topology_is_valid_and_covers_every_context() {
        let t = Topology::parse(COMPTOIR, None).expect("valid");
        assert_eq!(t.tenant, "comptoir");
        let names: Vec<_> = t.namespaces.iter().map(|n| n.path.as_str()).collect();
        for context in [
            "catalog",
            "identity",
            "orders",
            "inventory",
            "payments",
            "notifications",
            "analytics",
        ] {
            assert!(
                names.contains(&format!("comptoir/{context}").as_str()),
                "{context} missing"
            );
        }
        let catalog = &t.namespaces[0];
        assert_eq!(catalog.permissions["catalog"], ["produce"]);
        assert_eq!(catalog.permissions["orders"], ["consume"]);
        assert!(t.namespaces.iter().all(|n| n.deduplication));
    }

    #[test]
    fn bad_topologies_are_refused_with_every_reason() {
        let text = r#"
            tenant = "Comptoir"
            [defaults]
            retention_minutes = 10
            retention_size_mb = 10
            message_ttl_seconds = 60
            backlog_quota_mb = 100
            deduplication = true
            [[namespaces]]
            name = "a"
            [[namespaces]]
            name = "a"
            partitioned_topics = [{ name = "t", partitions = 0 }]
        "#;
        let err = Topology::parse(text, None)
            .expect_err("invalid")
            .to_string();
        for needle in ["tenant", "declared twice", "must exceed", "partitions"] {
            assert!(err.contains(needle), "{needle:?} not in {err}");
        }
        assert!(Topology::parse("tenant = 1", None).is_err());
        assert!(
            Topology::parse(
                &COMPTOIR.replace("deduplication = true", "dedup = true"),
                None
            )
            .is_err()
        );
    }
}
