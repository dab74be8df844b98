//! `comptoir-payments`: loads settings, starts telemetry, binds, runs. Logic lives in the library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    comptoir_platform::service::main::<comptoir_payments::Settings, _, _, _>(
        "payments",
        "",
        comptoir_payments::run,
    )
}
