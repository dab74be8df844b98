//! `comptoir-loadtest`: see the library's documentation and loadtest/README.md.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") && !args.iter().any(|a| a == "--") {
        println!("{}", comptoir_loadtest::USAGE);
        return ExitCode::SUCCESS;
    }
    let options = match comptoir_loadtest::Options::parse(&args) {
        Ok(options) => options,
        Err(error) => {
            eprintln!(
                "comptoir-loadtest: {error:#}\n\n{}",
                comptoir_loadtest::USAGE
            );
            return ExitCode::from(2);
        }
    };
    match comptoir_loadtest::run(options).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("comptoir-loadtest: an SLO rule failed (above)");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("comptoir-loadtest: {error:#}");
            ExitCode::FAILURE
        }
    }
}
