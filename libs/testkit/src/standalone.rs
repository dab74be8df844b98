//! A private Apache Pulsar standalone for tests that stop and restart the broker, driven
//! through the same launcher as the local platform (`dev/pulsar.sh`).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};
use url::Url;

use crate::{free_port, repo_root};

/// A standalone broker with its own data directory and ports. Killed when dropped.
#[derive(Debug)]
pub struct Standalone {
    dir: tempfile::TempDir,
    pub broker_port: u16,
    pub http_port: u16,
    zk_port: u16,
    bookie_port: u16,
}

impl Standalone {
    /// Starts a new instance and waits until it is healthy.
    pub fn start() -> anyhow::Result<Self> {
        let instance = Self {
            dir: tempfile::tempdir()?,
            broker_port: free_port(),
            http_port: free_port(),
            zk_port: free_port(),
            bookie_port: free_port(),
        };
        instance.run("start")?;
        Ok(instance)
    }

    pub fn url(&self) -> Url {
        Url::parse(&format!("pulsar://127.0.0.1:{}", self.broker_port)).expect("valid URL")
    }

    pub fn admin_url(&self) -> Url {
        Url::parse(&format!("http://127.0.0.1:{}", self.http_port)).expect("valid URL")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// Graceful stop (SIGTERM, then SIGKILL after a minute).
    pub fn stop(&self) -> anyhow::Result<()> {
        self.run("stop")
    }

    /// Starts the stopped instance again on the same data and ports.
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
            .env("COMPTOIR_PULSAR_PORT", self.broker_port.to_string())
            .env("COMPTOIR_PULSAR_HTTP_PORT", self.http_port.to_string())
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
