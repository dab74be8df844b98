//! The committed JSON Schemas in docs/events/ match the contracts. Regenerate them with
//! `COMPTOIR_BLESS=1 cargo nextest run -p comptoir-events --test schemas` after a deliberate
//! change (and check it is additive, or a new `.vN` type).

use std::path::PathBuf;

/// Where the committed schemas are, read at run time rather than compiled in: Cargo (and
/// nextest) set `CARGO_MANIFEST_DIR` for the running test, so they are `../../docs/events`
/// from this crate; Bazel does not, and runs the test from its runfiles root, where the
/// `//:event_schemas` data dependency puts them at `docs/events`. A compile-time
/// `env!("CARGO_MANIFEST_DIR")` would name Bazel's compile sandbox, gone by then.
fn schemas_dir() -> PathBuf {
    match std::env::var_os("CARGO_MANIFEST_DIR") {
        Some(manifest_dir) => PathBuf::from(manifest_dir).join("../../docs/events"),
        None => PathBuf::from("docs/events"),
    }
}

#[test]
fn committed_schemas_match_the_contracts() {
    let dir = schemas_dir();
    let bless = std::env::var("COMPTOIR_BLESS").is_ok_and(|v| v == "1");
    let mut stale = Vec::new();
    for (kind, schema) in comptoir_events::contracts::schemas() {
        let path = dir.join(format!("{kind}.json"));
        let expected = serde_json::to_string_pretty(&schema).expect("json") + "\n";
        if bless {
            std::fs::create_dir_all(&dir).expect("mkdir");
            std::fs::write(&path, &expected).expect("write");
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(committed) if committed == expected => {}
            _ => stale.push(path.display().to_string()),
        }
    }
    assert!(
        stale.is_empty(),
        "stale or missing event schemas (regenerate with COMPTOIR_BLESS=1): {stale:?}"
    );
}
