//! `comptoir-xtask`: idempotent provisioning, the same commands locally and in production.
//!
//! ```text
//! comptoir-xtask provision-db <admin-url> <name> <password-file>
//!     role <name> (LOGIN only) and database <name> owned by it, reachable by no other role
//! comptoir-xtask provision-pulsar <admin-http-url> <tenant/namespace>...
//!     tenant and bare namespaces, unless they exist (tests)
//! comptoir-xtask provision-topology <admin-http-url> [FILE]
//!     the whole Pulsar topology (libs/events/topology/comptoir.toml unless FILE): tenant,
//!     namespaces, retention, TTL, backlog quotas, deduplication, grants, partitioned topics
//! comptoir-xtask bench-producer --topic T [--url U] [--messages N] [--size BYTES]
//!     [--in-flight N] [--batch N]
//!     our producer's msgs/s and publish latency (see dev/bench-pulsar.sh)
//! comptoir-xtask bench-pipeline [--backlog N] [--burst N] [--rate R] [--seconds S] [--writers W]
//!     [--consumers C]
//!     outbox → relay → Pulsar → inbox consumers: events/s and insert-to-effect latency
//!     (needs COMPTOIR_PG_ADMIN_URL; see docs/performance.md)
//! comptoir-xtask bench-checkout --inventory-token-file F [--gateway URL] [--shoppers N]
//!     [--seconds S] [--rate R]
//!     checkouts through the gateway to `confirmed`: checkouts/s, p50/p99, write transactions
//!     per checkout (needs COMPTOIR_PG_ADMIN_URL and dev/up; see dev/bench-checkout.sh)
//! comptoir-xtask dlq list|inspect|replay|discard ...
//!     dead letters: pending counts, contents, replay to the original topic (see dlq.rs)
//! ```
//! The admin URL of PostgreSQL may also come from `COMPTOIR_PG_ADMIN_URL` (pass `-`), so it
//! does not show in the process list. A secured broker's admin token and CA are given with
//! `--pulsar-admin-token-file FILE` and `--pulsar-ca-file FILE` to any command, or with
//! `COMPTOIR_PULSAR_ADMIN_TOKEN_FILE` and `COMPTOIR_PULSAR_CA_FILE` (see `admin.rs`).
#![forbid(unsafe_code)]

mod admin;
mod bench;
mod checkout;
mod dlq;

use std::path::Path;
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::{Context, bail};
use comptoir_platform::secret::read_secret_file;

const USAGE: &str = "usage:\n  comptoir-xtask provision-db <admin-url|-> <name> <password-file>\n  \
                     comptoir-xtask provision-pulsar <admin-http-url> <tenant/namespace>...\n  \
                     comptoir-xtask provision-topology <admin-http-url> [FILE]\n  \
                     comptoir-xtask bench-producer --topic T [--url U] [--messages N] [--size B]\n  \
                     comptoir-xtask bench-pipeline [--backlog N] [--burst N] [--rate R] [--seconds S]\n  \
                     comptoir-xtask bench-checkout --inventory-token-file F [--gateway U] [--shoppers N] [--seconds S] [--rate R]\n  \
                     comptoir-xtask dlq list <admin-url> <tenant/namespace>...\n  \
                     comptoir-xtask dlq inspect <admin-url> <dlq-topic> [--limit N]\n  \
                     comptoir-xtask dlq replay|discard <admin-url> <pulsar-url> <dlq-topic> (--all | --id ID...)\n\
                     Pulsar admin access: [--pulsar-admin-token-file F] [--pulsar-ca-file F]";

fn main() -> ExitCode {
    // Warnings and errors of the libraries (relay, consumers) to stderr; RUST_LOG to see more.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("comptoir-xtask: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("comptoir-xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(args: &[String]) -> anyhow::Result<()> {
    let (pulsar_admin, args) = admin::AdminAccess::extract(args)?;
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["provision-db", url, name, password_file] => {
            provision_db(url, name, Path::new(password_file)).await
        }
        ["provision-pulsar", url, namespaces @ ..] if !namespaces.is_empty() => {
            provision_pulsar(&pulsar_admin, url, namespaces).await
        }
        ["provision-topology", url] => provision_topology(&pulsar_admin, url, None).await,
        ["provision-topology", url, file] => {
            provision_topology(&pulsar_admin, url, Some(Path::new(file))).await
        }
        ["bench-producer", rest @ ..] => bench::ProducerBench::parse(rest)?.run().await,
        ["bench-pipeline", rest @ ..] => bench::PipelineBench::parse(rest)?.run().await,
        ["bench-checkout", rest @ ..] => checkout::CheckoutBench::parse(rest)?.run().await,
        ["dlq", rest @ ..] => dlq::run(&pulsar_admin, rest).await,
        _ => bail!("{USAGE}"),
    }
}

async fn provision_db(url: &str, name: &str, password_file: &Path) -> anyhow::Result<()> {
    let url = if url == "-" {
        std::env::var("COMPTOIR_PG_ADMIN_URL").context("COMPTOIR_PG_ADMIN_URL is not set")?
    } else {
        url.to_owned()
    };
    let password = read_secret_file(password_file)?;
    let config = comptoir_store::tokio_postgres::Config::from_str(&url)
        .context("the admin URL is not a PostgreSQL URL")?;
    let (client, connection) = config
        .connect(comptoir_store::tokio_postgres::NoTls)
        .await
        .context("cannot connect as administrator")?;
    tokio::spawn(connection);
    comptoir_store::provision::ensure_service_database(&client, name, password.expose())
        .await
        .with_context(|| format!("cannot provision database {name}"))?;
    eprintln!("comptoir-xtask: database and role {name} ready");
    Ok(())
}

async fn provision_pulsar(
    access: &admin::AdminAccess,
    url: &str,
    namespaces: &[&str],
) -> anyhow::Result<()> {
    let admin = access.client(url)?;
    for namespace in namespaces {
        if let Err(problem) = comptoir_events::pulsar::check_namespace(namespace) {
            bail!("the namespace {problem}");
        }
        admin.ensure_namespace(namespace).await?;
        eprintln!("comptoir-xtask: namespace {namespace} ready");
    }
    Ok(())
}

async fn provision_topology(
    access: &admin::AdminAccess,
    url: &str,
    file: Option<&Path>,
) -> anyhow::Result<()> {
    let text = match file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        None => comptoir_events::topology::COMPTOIR.to_owned(),
    };
    let topology = comptoir_events::topology::Topology::parse(&text, None)?;
    let admin = access.client(url)?;
    comptoir_events::topology::apply(&admin, &topology).await?;
    eprintln!(
        "comptoir-xtask: topology applied: tenant {}, {} namespaces",
        topology.tenant,
        topology.namespaces.len()
    );
    Ok(())
}
