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

/// Runs the service binary `comptoir-<service>`: `[--config FILE] [--check-config]`, settings
/// from defaults, FILE and `COMPTOIR_<SERVICE>__*`, then `run(listener, settings, shutdown)`
/// until SIGTERM or Ctrl-C. With `--check-config` it stops after loading and validating the
/// settings (secret files included) and says so: exit 0 when they are valid, 2 otherwise. The
/// fleet's checks run it against the environment the k3s ConfigMaps carry.
/// `usage_note` ends the usage text (say where keys come from, for instance).
pub fn main<S, F, Fut, E>(service: &'static str, usage_note: &str, run: F) -> ExitCode
where
    S: ServiceSettings,
    F: FnOnce(TcpListener, S, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let binary = format!("comptoir-{service}");
    let Args { file, check_only } = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            let upper = service.to_ascii_uppercase();
            eprintln!(
                "{binary}: {message}\nusage: {binary} [--config FILE] [--check-config]\n\
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
    if check_only {
        println!("{binary}: configuration is valid");
        return ExitCode::SUCCESS;
    }
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

/// The command line: an optional settings file, and whether to stop after checking settings.
#[derive(Debug, Default, PartialEq, Eq)]
struct Args {
    file: Option<PathBuf>,
    check_only: bool,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args::default();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => match args.next() {
                Some(path) => parsed.file = Some(PathBuf::from(path)),
                None => return Err("--config needs a file".to_owned()),
            },
            "--check-config" => parsed.check_only = true,
            "-h" | "--help" => return Err("help requested".to_owned()),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok(parsed)
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
    fn only_a_config_file_and_the_check_flag_are_accepted() {
        assert_eq!(parse_args(args(&[])), Ok(Args::default()));
        assert_eq!(
            parse_args(args(&["--config", "/etc/c.toml"])),
            Ok(Args {
                file: Some(PathBuf::from("/etc/c.toml")),
                check_only: false
            })
        );
        assert_eq!(
            parse_args(args(&["--check-config", "--config", "/etc/c.toml"])),
            Ok(Args {
                file: Some(PathBuf::from("/etc/c.toml")),
                check_only: true
            })
        );
        assert!(parse_args(args(&["--config"])).is_err());
        assert!(parse_args(args(&["--help"])).is_err());
        assert!(parse_args(args(&["serve"])).is_err());
    }
}
