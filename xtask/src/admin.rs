//! How the commands reach Pulsar's admin API. The URL is each command's argument; the token
//! and the CA of a secured broker come from flags, or else from the environment, so that a
//! deployment sets them once for every command:
//!
//! ```text
//! --pulsar-admin-token-file FILE   COMPTOIR_PULSAR_ADMIN_TOKEN_FILE   superuser token
//! --pulsar-ca-file FILE            COMPTOIR_PULSAR_CA_FILE            CA of https:// URLs
//! ```
//! Secrets are only ever paths: a token on the command line would show in the process list.

use std::path::PathBuf;

use anyhow::{Context, bail};
use comptoir_events::admin::{AdminSettings, PulsarAdmin};
use url::Url;

const TOKEN_FLAG: &str = "--pulsar-admin-token-file";
const TOKEN_ENV: &str = "COMPTOIR_PULSAR_ADMIN_TOKEN_FILE";
const CA_FLAG: &str = "--pulsar-ca-file";
const CA_ENV: &str = "COMPTOIR_PULSAR_CA_FILE";

/// The admin credentials given to this run.
#[derive(Debug, Default)]
pub struct AdminAccess {
    token_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
}

impl AdminAccess {
    /// Takes the admin flags (`--flag FILE` or `--flag=FILE`, anywhere) out of `args`; what is
    /// not given falls back on the environment. Returns the other arguments in order.
    pub fn extract(args: &[String]) -> anyhow::Result<(Self, Vec<String>)> {
        Self::extract_with(args, |name| std::env::var_os(name).map(PathBuf::from))
    }

    fn extract_with(
        args: &[String],
        env: impl Fn(&str) -> Option<PathBuf>,
    ) -> anyhow::Result<(Self, Vec<String>)> {
        let mut access = Self::default();
        let mut rest = Vec::with_capacity(args.len());
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag, Some(value.to_owned())),
                None => (arg.as_str(), None),
            };
            let slot = match flag {
                TOKEN_FLAG => &mut access.token_file,
                CA_FLAG => &mut access.ca_file,
                _ => {
                    rest.push(arg.clone());
                    continue;
                }
            };
            let value = match inline {
                Some(value) => value,
                None => match args.next() {
                    Some(value) => value.clone(),
                    None => bail!("{flag} needs a file"),
                },
            };
            if value.is_empty() {
                bail!("{flag} needs a file");
            }
            *slot = Some(PathBuf::from(value));
        }
        access.token_file = access.token_file.or_else(|| env(TOKEN_ENV));
        access.ca_file = access.ca_file.or_else(|| env(CA_ENV));
        Ok((access, rest))
    }

    /// The token file given, for a broker client acting with the same role.
    pub fn token_file(&self) -> Option<&std::path::Path> {
        self.token_file.as_deref()
    }

    /// The CA file given, for a broker client trusting the same CA.
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        self.ca_file.as_deref()
    }

    /// A client of the admin API at `url` with these credentials.
    pub fn client(&self, url: &str) -> anyhow::Result<PulsarAdmin> {
        let settings = AdminSettings {
            url: Url::parse(url).with_context(|| format!("bad admin URL {url:?}"))?,
            token_file: self.token_file.clone(),
            ca_file: self.ca_file.clone(),
        };
        PulsarAdmin::from_settings(&settings).context("cannot set up the Pulsar admin client")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn flags_are_taken_out_wherever_they_are_and_win_over_the_environment() {
        let args = strings(&[
            "provision-topology",
            "--pulsar-ca-file",
            "/ca.crt",
            "https://b:8443",
            "--pulsar-admin-token-file=/admin.jwt",
            "topology.toml",
        ]);
        let env = |name: &str| Some(PathBuf::from(format!("/env/{name}")));
        let (access, rest) = AdminAccess::extract_with(&args, env).expect("valid");
        assert_eq!(
            rest,
            ["provision-topology", "https://b:8443", "topology.toml"]
        );
        assert_eq!(access.ca_file, Some(PathBuf::from("/ca.crt")));
        assert_eq!(access.token_file, Some(PathBuf::from("/admin.jwt")));
    }

    #[test]
    fn the_environment_fills_in_missing_flags() {
        let args = strings(&["provision-pulsar", "http://b:8080", "t/n"]);
        let env = |name: &str| (name == TOKEN_ENV).then(|| PathBuf::from("/run/token"));
        let (access, rest) = AdminAccess::extract_with(&args, env).expect("valid");
        assert_eq!(rest, args);
        assert_eq!(access.token_file, Some(PathBuf::from("/run/token")));
        assert_eq!(access.ca_file, None);
    }

    #[test]
    fn a_flag_without_a_file_is_refused() {
        for args in [
            strings(&["provision-pulsar", "--pulsar-ca-file"]),
            strings(&["provision-pulsar", "--pulsar-admin-token-file="]),
        ] {
            let error = AdminAccess::extract_with(&args, |_| None).expect_err("refused");
            assert!(error.to_string().contains("needs a file"), "{error}");
        }
    }

    #[test]
    fn a_missing_token_file_is_named_in_the_error() {
        let access = AdminAccess {
            token_file: Some(PathBuf::from("/nonexistent/admin.jwt")),
            ca_file: None,
        };
        let error = access
            .client("https://127.0.0.1:8443")
            .expect_err("refused");
        assert!(
            format!("{error:#}").contains("/nonexistent/admin.jwt"),
            "{error:#}"
        );
        assert!(AdminAccess::default().client("not a url").is_err());
    }
}
