//! `comptoir-catalog`: loads settings, starts telemetry, binds, runs. Logic lives in the library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    comptoir_platform::service::main::<comptoir_catalog::Settings, _, _, _>(
        "catalog",
        "",
        comptoir_catalog::run,
    )
}
