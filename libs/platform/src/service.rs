//! The `main` every service binary shares: arguments, settings, runtime, telemetry, bind, run.
//!
//! A service's `main.rs` is one call to [`main`] with its name and its library's `run`; the
//! exit code says what happened: 0 after a clean stop, 2 for bad arguments or settings (before
//! any port is bound), 1 when the service could not start or stopped with an error.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;

use crate::config::{self, HttpSettings, TelemetrySettings, Validate};
use crate::shutdown::{self, CancellationToken};
use crate::telemetry;

/// What [`main`] needs to know of a service's settings.
pub trait ServiceSettings: Serialize + DeserializeOwned + Validate + Default {
    fn http(&self) -> &HttpSettings;
    fn telemetry(&self) -> &TelemetrySettings;
}

/// Runs the service binary `comptoir-<service>`: `[--config FILE]`, settings from defaults,
/// FILE and `COMPTOIR_<SERVICE>__*`, then `run(listener, settings, shutdown)` until SIGTERM or
/// Ctrl-C. `usage_note` ends the usage text (say where keys come from, for instance).
pub fn main<S, F, Fut, E>(service: &'static str, usage_note: &str, run: F) -> ExitCode
where
    S: ServiceSettings,
    F: FnOnce(TcpListener, S, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let binary = format!("comptoir-{service}");
    let file = match parse_args(std::env::args().skip(1)) {
        Ok(file) => file,
        Err(message) => {
            let upper = service.to_ascii_uppercase();
            eprintln!(
                "{binary}: {message}\nusage: {binary} [--config FILE]\n\
                 Settings come from defaults, then FILE (TOML), then COMPTOIR_{upper}__* \
                 variables\n(e.g. COMPTOIR_{upper}__HTTP__LISTEN=0.0.0.0:8080).{usage_note}"
            );
            return ExitCode::from(2);
        }
    };
    // Validation runs inside `load` (key files read included): bad settings stop here, before
    // any port is bound, with a message naming the key and never a secret's content.
    let settings: S = match config::load(service, &S::default(), file.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("{binary}: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{binary}: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let _telemetry = match telemetry::init(service, settings.telemetry()) {
            Ok(guard) => guard,
            Err(error) => {
                eprintln!("{binary}: {error}");
                return ExitCode::FAILURE;
            }
        };
        let address = settings.http().listen;
        let listener = match TcpListener::bind(address).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(%address, %error, "Cannot bind");
                return ExitCode::FAILURE;
            }
        };
        let token = CancellationToken::new();
        shutdown::cancel_on_signal(token.clone());
        match run(listener, settings, token).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(
                    service,
                    error = format!("{error:#}"),
                    "Service stopped with an error"
                );
                ExitCode::FAILURE
            }
        }
    })
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<PathBuf>, String> {
    let mut file = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => match args.next() {
                Some(path) => file = Some(PathBuf::from(path)),
                None => return Err("--config needs a file".to_owned()),
            },
            "-h" | "--help" => return Err("help requested".to_owned()),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> impl Iterator<Item = String> {
        list.iter()
            .map(|s| (*s).to_owned())
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn only_a_config_file_is_accepted() {
        assert_eq!(parse_args(args(&[])), Ok(None));
        assert_eq!(
            parse_args(args(&["--config", "/etc/c.toml"])),
            Ok(Some(PathBuf::from("/etc/c.toml")))
        );
        assert!(parse_args(args(&["--config"])).is_err());
        assert!(parse_args(args(&["--help"])).is_err());
        assert!(parse_args(args(&["serve"])).is_err());
    }
}
