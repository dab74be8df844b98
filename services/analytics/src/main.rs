//! `comptoir-analytics`: loads settings, starts telemetry, binds, runs. Logic lives in the library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    comptoir_platform::service::main::<comptoir_analytics::Settings, _, _, _>(
        "analytics",
        "",
        comptoir_analytics::run,
    )
}
