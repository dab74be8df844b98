//! `comptoir-identity`: loads settings, starts telemetry, binds, runs. Logic lives in the library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    // Settings validation reads every key file: a missing or malformed key stops the binary
    // before any port is bound, with a message that names the file and never its content.
    comptoir_platform::service::main::<comptoir_identity::Settings, _, _, _>(
        "identity",
        " Keys are files: see dev/identity-keys.sh.",
        comptoir_identity::run,
    )
}
