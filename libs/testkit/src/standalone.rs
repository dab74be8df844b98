//! A private Apache Pulsar standalone for tests that stop and restart the broker, or that need
//! a secured one, driven through the same launcher as the local platform (`dev/pulsar.sh`).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};
use comptoir_events::admin::{AdminSettings, PulsarAdmin};
use comptoir_events::pulsar::PulsarSettings;
use url::Url;

use crate::{free_port, repo_root};

/// A standalone broker with its own data directory and ports. Killed when dropped.
///
/// [`Standalone::start`] gives an open broker on plaintext ports; [`Standalone::start_secure`]
/// one with TLS listeners only, token authentication and namespace authorization
/// (`COMPTOIR_PULSAR_SECURE=1`). [`Standalone::url`] and [`Standalone::admin_url`] return the
/// listeners of the instance's mode.
#[derive(Debug)]
pub struct Standalone {
    dir: tempfile::TempDir,
    secure: bool,
    pub broker_port: u16,
    pub http_port: u16,
    pub tls_port: u16,
    pub https_port: u16,
    zk_port: u16,
    bookie_port: u16,
}

impl Standalone {
    /// Starts a new open instance (no authentication, plaintext) and waits until it is healthy.
    pub fn start() -> anyhow::Result<Self> {
        Self::launch(false)
    }

    /// Starts a new secured instance and waits until it is healthy: `pulsar+ssl://` and
    /// `https://` only, with a fresh CA ([`Standalone::ca_file`]) and a token per role
    /// ([`Standalone::token_file`]): `admin` (superuser), each role of the Comptoir topology,
    /// and `outsider`, granted nothing. The topology itself is not applied.
    pub fn start_secure() -> anyhow::Result<Self> {
        Self::launch(true)
    }

    fn launch(secure: bool) -> anyhow::Result<Self> {
        let instance = Self {
            dir: tempfile::tempdir()?,
            secure,
            broker_port: free_port(),
            http_port: free_port(),
            tls_port: free_port(),
            https_port: free_port(),
            zk_port: free_port(),
            bookie_port: free_port(),
        };
        instance.run("start")?;
        Ok(instance)
    }

    /// Binary protocol URL: `pulsar+ssl://127.0.0.1:<tls port>` when secure, else `pulsar://`.
    pub fn url(&self) -> Url {
        let url = if self.secure {
            format!("pulsar+ssl://127.0.0.1:{}", self.tls_port)
        } else {
            format!("pulsar://127.0.0.1:{}", self.broker_port)
        };
        Url::parse(&url).expect("valid URL")
    }

    /// Admin REST URL: `https://127.0.0.1:<https port>` when secure, else `http://`.
    pub fn admin_url(&self) -> Url {
        let url = if self.secure {
            format!("https://127.0.0.1:{}", self.https_port)
        } else {
            format!("http://127.0.0.1:{}", self.http_port)
        };
        Url::parse(&url).expect("valid URL")
    }

    /// The CA that signed the broker's certificate (secure instances).
    pub fn ca_file(&self) -> PathBuf {
        self.secure_dir().join("ca.crt")
    }

    /// The token of `role` (secure instances): `admin`, a topology role, or `outsider`.
    pub fn token_file(&self, role: &str) -> PathBuf {
        self.secure_dir().join("tokens").join(format!("{role}.jwt"))
    }

    /// What a service of `role` publishing into `namespace` would configure: this broker's
    /// URL, the role's token and the CA (secure instances).
    pub fn pulsar_settings(&self, role: &str, namespace: &str) -> PulsarSettings {
        PulsarSettings {
            url: self.url(),
            namespace: namespace.to_owned(),
            token_file: self.secure.then(|| self.token_file(role)),
            ca_file: self.secure.then(|| self.ca_file()),
        }
    }

    /// Admin API client; on a secure instance as `admin` over https, trusting its CA.
    pub fn admin(&self) -> anyhow::Result<PulsarAdmin> {
        let settings = AdminSettings {
            url: self.admin_url(),
            token_file: self.secure.then(|| self.token_file("admin")),
            ca_file: self.secure.then(|| self.ca_file()),
        };
        PulsarAdmin::from_settings(&settings).context("cannot build the admin client")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    fn secure_dir(&self) -> PathBuf {
        assert!(
            self.secure,
            "only a Standalone::start_secure() instance has a CA and tokens"
        );
        self.dir.path().join("secure")
    }

    /// Graceful stop (SIGTERM, then SIGKILL after a minute).
    pub fn stop(&self) -> anyhow::Result<()> {
        self.run("stop")
    }

    /// Starts the stopped instance again on the same data, ports and mode.
    pub fn restart(&self) -> anyhow::Result<()> {
        self.run("start")
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&self) -> anyhow::Result<()> {
        self.run("kill")
    }

    fn run(&self, verb: &str) -> anyhow::Result<()> {
        let output = Command::new(repo_root().join("dev/pulsar.sh"))
            .arg(verb)
            .env("COMPTOIR_PULSAR_DIR", self.dir.path())
            .env(
                "COMPTOIR_PULSAR_SECURE",
                if self.secure { "1" } else { "0" },
            )
            .env("COMPTOIR_PULSAR_PORT", self.broker_port.to_string())
            .env("COMPTOIR_PULSAR_HTTP_PORT", self.http_port.to_string())
            .env("COMPTOIR_PULSAR_TLS_PORT", self.tls_port.to_string())
            .env("COMPTOIR_PULSAR_HTTPS_PORT", self.https_port.to_string())
            .env("COMPTOIR_PULSAR_ZK_PORT", self.zk_port.to_string())
            .env("COMPTOIR_PULSAR_BOOKIE_PORT", self.bookie_port.to_string())
            .output()
            .with_context(|| format!("cannot run dev/pulsar.sh {verb}"))?;
        if !output.status.success() {
            bail!(
                "dev/pulsar.sh {verb} failed: {}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.run("kill");
    }
}
