//! `comptoir-gateway`: loads settings, starts telemetry, binds, runs. Logic lives in the library.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use comptoir_gateway::Settings;
use comptoir_platform::{config, shutdown, telemetry};

const USAGE: &str = "usage: comptoir-gateway [--config FILE]\n\
    Settings come from defaults, then FILE (TOML), then COMPTOIR_GATEWAY__* variables\n\
    (e.g. COMPTOIR_GATEWAY__HTTP__LISTEN=0.0.0.0:8000).";

fn main() -> ExitCode {
    let file = match parse_args(std::env::args().skip(1)) {
        Ok(file) => file,
        Err(message) => {
            eprintln!("comptoir-gateway: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let settings = match config::load("gateway", &Settings::default(), file.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("comptoir-gateway: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("comptoir-gateway: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let _telemetry = match telemetry::init("gateway", &settings.telemetry) {
            Ok(guard) => guard,
            Err(error) => {
                eprintln!("comptoir-gateway: {error}");
                return ExitCode::FAILURE;
            }
        };
        let listener = match tokio::net::TcpListener::bind(settings.http.listen).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(address = %settings.http.listen, %error, "Cannot bind");
                return ExitCode::FAILURE;
            }
        };
        let token = shutdown::CancellationToken::new();
        shutdown::cancel_on_signal(token.clone());
        match comptoir_gateway::run(listener, settings, token).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(
                    error = format!("{error:#}"),
                    "Gateway stopped with an error"
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
