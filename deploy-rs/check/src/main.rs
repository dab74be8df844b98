//! `comptoir-deploy-check < nodes.json`: reads the flake's deploy-rs node set (the `deploy`
//! output as JSON, each profile `path` a placeholder store path, since nothing is built here)
//! and checks it the way the `deploy` binary of the same deploy-rs release will read it.
//!
//! 1. Every node deserialises into `deploy::data::Node`, and the whole set into
//!    `deploy::data::Data`: the field names and types deploy-rs expects (a timeout is a u16,
//!    not a string; `groups` is a string or a list).
//! 2. What serde cannot say, because deploy-rs accepts it silently or only fails mid-rollout:
//!    - keys deploy-rs does not know: its types flatten the generic settings into nodes and
//!      profiles, so they cannot deny unknown fields, and a typo such as `magicRollbak` would
//!      quietly leave the default in force;
//!    - every node has a `system` profile deployed as root to the NixOS system profile, with
//!      a store path;
//!    - host names are unique (two nodes on one address would deploy one machine twice);
//!    - `sshUser` is set (deploy-rs falls back to whoever runs it), `magicRollback` and
//!      `autoRollback` are on and both timeouts are set, after deploy-rs's own merge (profile
//!      over node over top level);
//!    - every node has groups (the `deploy` wrapper and `deploy --groups` select by them), and
//!      `profilesOrder` names existing profiles.
//!
//! Prints one line per problem on stderr and exits 1 when there is any, 2 when the input is
//! not JSON.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::ExitCode;

use deploy::data::{Data, GenericSettings, Node};
use serde_json::Value;

/// The generic settings deploy-rs 1.0.0 reads at the top level, in nodes and in profiles
/// (`deploy::data::GenericSettings`).
const GENERIC_KEYS: &[&str] = &[
    "sshUser",
    "user",
    "sshOpts",
    "fastConnection",
    "autoRollback",
    "confirmTimeout",
    "activationTimeout",
    "tempPath",
    "magicRollback",
    "sudo",
    "remoteBuild",
    "interactiveSudo",
    "groups",
];
/// `NodeSettings`.
const NODE_KEYS: &[&str] = &["hostname", "profiles", "profilesOrder"];
/// `ProfileSettings`. (`drvPath` is deploy-rs's own plumbing, added at evaluation time; a node
/// set should never carry it.)
const PROFILE_KEYS: &[&str] = &["path", "profilePath"];
const TOP_KEYS: &[&str] = &["nodes"];

/// Where deploy-rs puts the `system` profile of user root, and where NixOS boots from.
const SYSTEM_PROFILE: &str = "/nix/var/nix/profiles/system";

/// The settings of one profile after deploy-rs's merge: profile first, then node, then top
/// level (`deploy::make_deploy_data`).
struct Merged<'a>(&'a [&'a GenericSettings]);

impl Merged<'_> {
    fn get<T: Clone>(&self, field: impl Fn(&GenericSettings) -> &Option<T>) -> Option<T> {
        self.0.iter().find_map(|settings| field(settings).clone())
    }
    fn has_groups(&self) -> bool {
        self.0.iter().any(|settings| !settings.groups.is_empty())
    }
}

fn unknown_keys(value: &Value, allowed: &[&[&str]], place: &str, problems: &mut Vec<String>) {
    let Some(object) = value.as_object() else {
        problems.push(format!("{place}: not an object"));
        return;
    };
    for key in object.keys() {
        if !allowed.iter().any(|keys| keys.contains(&key.as_str())) {
            problems.push(format!(
                "{place}: unknown key {key:?} (deploy-rs ignores it silently)"
            ));
        }
    }
}

/// Every problem found in the node set, in a stable order.
fn check(value: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    unknown_keys(value, &[TOP_KEYS, GENERIC_KEYS], "top level", &mut problems);
    let Some(raw_nodes) = value.get("nodes").and_then(Value::as_object) else {
        problems.push("top level: no `nodes` object".to_owned());
        return problems;
    };
    if raw_nodes.is_empty() {
        problems.push("top level: `nodes` is empty".to_owned());
    }

    // Node by node first, so that a type error names its node (serde's message alone does
    // not, through the flattened settings).
    let mut nodes: BTreeMap<&str, Node> = BTreeMap::new();
    for (name, raw) in raw_nodes {
        let place = format!("node {name}");
        unknown_keys(raw, &[NODE_KEYS, GENERIC_KEYS], &place, &mut problems);
        if let Some(profiles) = raw.get("profiles").and_then(Value::as_object) {
            for (profile, raw_profile) in profiles {
                unknown_keys(
                    raw_profile,
                    &[PROFILE_KEYS, GENERIC_KEYS],
                    &format!("{place}, profile {profile}"),
                    &mut problems,
                );
            }
        }
        match serde_json::from_value::<Node>(raw.clone()) {
            Ok(node) => {
                nodes.insert(name, node);
            }
            Err(error) => problems.push(format!("{place}: deploy-rs cannot read it: {error}")),
        }
    }
    // Then the whole set, as `deploy` reads it.
    let data = match serde_json::from_value::<Data>(value.clone()) {
        Ok(data) => data,
        Err(error) => {
            problems.push(format!("deploy-rs cannot read the node set: {error}"));
            return problems;
        }
    };

    let mut hostnames: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, node) in &nodes {
        let place = format!("node {name}");
        let hostname = node.node_settings.hostname.as_str();
        if hostname.trim().is_empty() {
            problems.push(format!("{place}: empty hostname"));
        } else if let Some(other) = hostnames.insert(hostname, name) {
            problems.push(format!(
                "{place}: hostname {hostname:?} is also node {other}'s"
            ));
        }
        for ordered in &node.node_settings.profiles_order {
            if !node.node_settings.profiles.contains_key(ordered) {
                problems.push(format!(
                    "{place}: profilesOrder names {ordered:?}, which is not a profile"
                ));
            }
        }
        let Some(profile) = node.node_settings.profiles.get("system") else {
            problems.push(format!("{place}: no `system` profile"));
            continue;
        };
        let place = format!("{place}, profile system");
        let merged = Merged(&[
            &profile.generic_settings,
            &node.generic_settings,
            &data.generic_settings,
        ]);
        if !profile.profile_settings.path.starts_with("/nix/store/") {
            problems.push(format!(
                "{place}: path {:?} is not a store path",
                profile.profile_settings.path
            ));
        }
        if let Some(path) = &profile.profile_settings.profile_path {
            if path != SYSTEM_PROFILE {
                problems.push(format!(
                    "{place}: profilePath {path:?} is not {SYSTEM_PROFILE}, so the host would \
                     never boot it"
                ));
            }
        }
        match merged.get(|s| &s.user).as_deref() {
            Some("root") => {}
            other => problems.push(format!(
                "{place}: user is {other:?}, not \"root\": only root's `system` profile is the \
                 NixOS system"
            )),
        }
        if merged.get(|s| &s.ssh_user).is_none() {
            problems.push(format!(
                "{place}: no sshUser (deploy-rs would log in as whoever runs it)"
            ));
        }
        if merged.get(|s| &s.magic_rollback) != Some(true) {
            problems.push(format!("{place}: magicRollback is not true"));
        }
        if merged.get(|s| &s.auto_rollback) != Some(true) {
            problems.push(format!("{place}: autoRollback is not true"));
        }
        for (key, timeout) in [
            ("confirmTimeout", merged.get(|s| &s.confirm_timeout)),
            ("activationTimeout", merged.get(|s| &s.activation_timeout)),
        ] {
            match timeout {
                None => problems.push(format!(
                    "{place}: {key} is not set (deploy-rs's default is a guess, ours is a decision)"
                )),
                Some(0) => problems.push(format!("{place}: {key} is 0")),
                Some(_) => {}
            }
        }
        if !merged.has_groups() {
            problems.push(format!("{place}: no groups"));
        }
    }
    problems
}

fn main() -> ExitCode {
    let mut input = String::new();
    if let Err(error) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("comptoir-deploy-check: cannot read stdin: {error}");
        return ExitCode::from(2);
    }
    let value: Value = match serde_json::from_str(&input) {
        Ok(value) => value,
        Err(error) => {
            eprintln!("comptoir-deploy-check: stdin is not JSON: {error}");
            return ExitCode::from(2);
        }
    };
    let problems = check(&value);
    if problems.is_empty() {
        let count = value["nodes"].as_object().map_or(0, serde_json::Map::len);
        println!("comptoir-deploy-check: {count} node(s) read by deploy-rs 1.0.0's types, no problem");
        ExitCode::SUCCESS
    } else {
        for problem in &problems {
            eprintln!("comptoir-deploy-check: {problem}");
        }
        eprintln!("comptoir-deploy-check: {} problem(s)", problems.len());
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(hostname: &str) -> Value {
        json!({
            "hostname": hostname,
            "sshUser": "deploy",
            "user": "root",
            "magicRollback": true,
            "autoRollback": true,
            "confirmTimeout": 60,
            "activationTimeout": 300,
            "groups": ["lab"],
            "profiles": {
                "system": {
                    "user": "root",
                    "path": "/nix/store/00000000000000000000000000000000-placeholder",
                },
            },
        })
    }

    fn set(nodes: &[(&str, Value)]) -> Value {
        let nodes: serde_json::Map<String, Value> = nodes
            .iter()
            .map(|(name, node)| ((*name).to_owned(), node.clone()))
            .collect();
        json!({ "nodes": nodes })
    }

    fn only_problem(value: &Value, needle: &str) {
        let problems = check(value);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains(needle), "{problems:?}");
    }

    #[test]
    fn a_good_set_passes() {
        let problems = check(&set(&[("a", node("10.0.0.1")), ("b", node("10.0.0.2"))]));
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn a_string_timeout_is_refused_naming_the_node() {
        let mut bad = node("10.0.0.1");
        bad["confirmTimeout"] = json!("60");
        let problems = check(&set(&[("a", bad)]));
        assert!(problems.iter().any(|p| p.starts_with("node a: deploy-rs cannot read it")), "{problems:?}");
    }

    #[test]
    fn a_misspelt_setting_is_refused() {
        let mut bad = node("10.0.0.1");
        bad["magicRollbak"] = json!(true);
        only_problem(&set(&[("a", bad)]), "unknown key \"magicRollbak\"");
    }

    #[test]
    fn duplicate_hostnames_are_refused() {
        only_problem(
            &set(&[("a", node("10.0.0.1")), ("b", node("10.0.0.1"))]),
            "is also node a's",
        );
    }

    #[test]
    fn a_node_without_system_profile_is_refused() {
        let mut bad = node("10.0.0.1");
        bad["profiles"] = json!({ "other": { "path": "/nix/store/x" } });
        only_problem(&set(&[("a", bad)]), "no `system` profile");
    }

    #[test]
    fn missing_timeouts_and_rollbacks_are_refused() {
        let mut bad = node("10.0.0.1");
        let object = bad.as_object_mut().expect("object");
        object.remove("activationTimeout");
        only_problem(&set(&[("a", bad.clone())]), "activationTimeout is not set");
        bad["magicRollback"] = json!(false);
        bad["activationTimeout"] = json!(300);
        only_problem(&set(&[("a", bad)]), "magicRollback is not true");
    }

    #[test]
    fn profile_settings_win_over_node_settings() {
        let mut bad = node("10.0.0.1");
        bad["profiles"]["system"]["user"] = json!("deploy");
        only_problem(&set(&[("a", bad)]), "not \"root\"");
    }
}
