//! `comptoir-xtask dlq`: the operator's view of dead letters ([`comptoir_events::dlq`]).
//!
//! ```text
//! dlq list    <admin-url> <tenant/namespace>...         dead-letter topics, pending counts
//! dlq inspect <admin-url> <dlq-topic> [--limit N]       pending dead letters as JSON (moves nothing)
//! dlq replay  <admin-url> <pulsar-url> <dlq-topic> (--all | --id ID...)
//! dlq discard <admin-url> <pulsar-url> <dlq-topic> (--all | --id ID...)
//! ```
//! An ID is an event id (from the envelope) or a message id `ledger:entry` (from `inspect`).
//! Replaying and discarding need an explicit selection: nothing is done to "everything" by
//! default. The broker client uses the same admin token and CA as the admin calls.

use std::collections::HashSet;

use anyhow::{Context, bail};
use comptoir_events::dlq::{self, Action, Selection};
use comptoir_events::pulsar::PulsarSettings;
use url::Url;

use crate::admin::AdminAccess;

const USAGE: &str = "comptoir-xtask dlq list <admin-url> <tenant/namespace>...\n  \
                         comptoir-xtask dlq inspect <admin-url> <dlq-topic> [--limit N]\n  \
                         comptoir-xtask dlq replay|discard <admin-url> <pulsar-url> <dlq-topic> (--all | --id ID...)";

pub async fn run(access: &AdminAccess, args: &[&str]) -> anyhow::Result<()> {
    match args {
        ["list", url, namespaces @ ..] if !namespaces.is_empty() => {
            let admin = access.client(url)?;
            println!("{:>8}  topic", "pending");
            for namespace in namespaces {
                for topic in dlq::list(&admin, namespace)
                    .await
                    .with_context(|| format!("cannot list dead letters of {namespace}"))?
                {
                    println!("{:>8}  {}", topic.pending, topic.topic);
                }
            }
            Ok(())
        }
        ["inspect", url, topic, rest @ ..] => {
            let limit = match rest {
                [] => 20,
                ["--limit", n] => n
                    .parse()
                    .with_context(|| format!("--limit wants a number, got {n:?}"))?,
                _ => bail!("usage: {USAGE}"),
            };
            let admin = access.client(url)?;
            let letters = dlq::inspect(&admin, topic, limit)
                .await
                .with_context(|| format!("cannot inspect {topic}"))?;
            println!("{}", serde_json::to_string_pretty(&letters)?);
            Ok(())
        }
        [
            verb @ ("replay" | "discard"),
            url,
            pulsar_url,
            topic,
            rest @ ..,
        ] => {
            let action = if *verb == "replay" {
                Action::Replay
            } else {
                Action::Discard
            };
            let selection = selection(rest)?;
            let admin = access.client(url)?;
            let settings = PulsarSettings {
                url: Url::parse(pulsar_url)
                    .with_context(|| format!("bad Pulsar URL {pulsar_url:?}"))?,
                token_file: access.token_file().map(ToOwned::to_owned),
                ca_file: access.ca_file().map(ToOwned::to_owned),
                ..PulsarSettings::default()
            };
            let pulsar = comptoir_events::pulsar::connect(&settings).await?;
            let outcome = dlq::resolve(&admin, &pulsar, topic, action, &selection)
                .await
                .with_context(|| format!("cannot {verb} dead letters of {topic}"))?;
            println!("{}", serde_json::to_string_pretty(&outcome)?);
            eprintln!(
                "comptoir-xtask: {verb}ed {}, {} still pending",
                outcome.done.len(),
                outcome.kept
            );
            Ok(())
        }
        _ => bail!("usage: {USAGE}"),
    }
}

fn selection(args: &[&str]) -> anyhow::Result<Selection> {
    match args {
        ["--all"] => Ok(Selection::All),
        [] => bail!("say which dead letters: --all, or --id ID (repeatable)"),
        _ => {
            let mut ids = HashSet::new();
            let mut args = args.iter();
            while let Some(arg) = args.next() {
                match (*arg, args.next()) {
                    ("--id", Some(id)) => ids.insert((*id).to_owned()),
                    _ => bail!("expected --all or --id ID..., got {arg:?}"),
                };
            }
            Ok(Selection::Ids(ids))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selection_must_be_explicit() {
        assert!(matches!(selection(&["--all"]), Ok(Selection::All)));
        let Ok(Selection::Ids(ids)) = selection(&["--id", "a", "--id", "12:3"]) else {
            panic!("ids expected");
        };
        assert_eq!(ids, HashSet::from(["a".to_owned(), "12:3".to_owned()]));
        for bad in [&[][..], &["--id"], &["--all", "--id", "x"], &["x"]] {
            assert!(selection(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
