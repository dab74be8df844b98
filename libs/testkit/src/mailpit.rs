//! [`Mailpit`]: a real SMTP server for tests, with the HTTP API that reads what it received.
//! The binary comes from `COMPTOIR_MAILPIT` or `PATH` (`dev/bootstrap.sh` builds it into
//! `$COMPTOIR_CACHE/bin`); each instance listens on free ports and keeps its mails in a
//! temporary directory.
//!
//! Plaintext by default, as the dev platform runs it. [`Mailpit::builder`] starts it as a
//! remote relay would be: STARTTLS required or implicit TLS, with a certificate issued by a
//! [`crate::tls::TestCa`], and/or SMTP authentication (the plaintext PLAIN and LOGIN mechanisms are then
//! refused before TLS: Mailpit's `--smtp-auth-allow-insecure` is never set).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::tls::Issued;
use crate::{free_port, wait_for};

/// A Mailpit process: an SMTP server on `smtp_port`, its API on `api`.
pub struct Mailpit {
    pub smtp_port: u16,
    pub api: String,
    child: Child,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

/// How Mailpit's SMTP server speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailpitTls {
    /// Plaintext greeting; `STARTTLS` required before any mail (`--smtp-require-starttls`).
    Starttls,
    /// TLS from the first byte (`--smtp-require-tls`), port 465 style.
    Implicit,
}

/// A Mailpit to start: plaintext and open by default.
#[derive(Debug, Clone, Default)]
pub struct MailpitBuilder {
    tls: Option<(MailpitTls, Issued)>,
    auth: Option<(String, String)>,
}

impl MailpitBuilder {
    /// STARTTLS required, presenting `certificate` (issued for `localhost` and `127.0.0.1`,
    /// say).
    pub fn starttls(mut self, certificate: &Issued) -> Self {
        self.tls = Some((MailpitTls::Starttls, certificate.clone()));
        self
    }

    /// Implicit TLS, presenting `certificate`.
    pub fn implicit_tls(mut self, certificate: &Issued) -> Self {
        self.tls = Some((MailpitTls::Implicit, certificate.clone()));
        self
    }

    /// SMTP authentication required: only `username` with `password` may send (offered over
    /// TLS only).
    pub fn auth(mut self, username: &str, password: &str) -> Self {
        assert!(
            !username.contains(':') && !password.contains('\n'),
            "Mailpit's password file has one `user:password` per line"
        );
        self.auth = Some((username.to_owned(), password.to_owned()));
        self
    }

    /// Starts it on a free SMTP port.
    pub async fn start(self) -> Mailpit {
        self.start_on(free_port()).await
    }

    /// Starts it with its SMTP server on `smtp_port`, its data in a temporary directory.
    pub async fn start_on(self, smtp_port: u16) -> Mailpit {
        let dir = tempfile::tempdir().expect("tempdir");
        let api_port = free_port();
        let mut command = Command::new(mailpit_binary());
        command
            .arg("--smtp")
            .arg(format!("127.0.0.1:{smtp_port}"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{api_port}"))
            .arg("--database")
            .arg(dir.path().join("mailpit.db"))
            .args(["--disable-version-check", "--quiet"]);
        if let Some((mode, certificate)) = &self.tls {
            let cert = dir.path().join("smtp-cert.pem");
            let key = dir.path().join("smtp-key.pem");
            std::fs::write(&cert, &certificate.cert_pem).expect("write the certificate");
            crate::write_secret(&key, certificate.key_pem.as_bytes());
            command
                .arg("--smtp-tls-cert")
                .arg(&cert)
                .arg("--smtp-tls-key")
                .arg(&key)
                .arg(match mode {
                    MailpitTls::Starttls => "--smtp-require-starttls",
                    MailpitTls::Implicit => "--smtp-require-tls",
                });
        }
        if let Some((username, password)) = &self.auth {
            // One `user:password` per line; Mailpit takes plaintext passwords as well as
            // hashed ones.
            let file = dir.path().join("smtp-auth");
            crate::write_secret(&file, format!("{username}:{password}\n").as_bytes());
            command.arg("--smtp-auth-file").arg(&file);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start mailpit");
        let mailpit = Mailpit {
            smtp_port,
            api: format!("http://127.0.0.1:{api_port}"),
            child,
            _dir: dir,
            http: reqwest::Client::new(),
        };
        let http = mailpit.http.clone();
        let url = format!("{}/readyz", mailpit.api);
        wait_for("mailpit to be ready", Duration::from_secs(30), || {
            let request = http.get(&url).send();
            async move { request.await.ok().filter(|r| r.status() == 200).map(drop) }
        })
        .await
        .expect("mailpit ready");
        // The API answering does not say the SMTP side listens yet.
        wait_for(
            "mailpit's SMTP port",
            Duration::from_secs(30),
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", smtp_port))
                    .await
                    .ok()
                    .map(drop)
            },
        )
        .await
        .expect("mailpit SMTP ready");
        mailpit
    }
}

/// A message as Mailpit's list shows it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub id: String,
    pub to: Vec<String>,
    pub subject: String,
}

fn mailpit_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("COMPTOIR_MAILPIT") {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("mailpit"))
        .find(|candidate| candidate.is_file())
        .expect("mailpit not found: set COMPTOIR_MAILPIT or put it on PATH")
}

impl Mailpit {
    /// Starts Mailpit, plaintext and open, on a free SMTP port.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// Starts Mailpit, plaintext and open, with its SMTP server on `smtp_port`.
    pub async fn start_on(smtp_port: u16) -> Self {
        Self::builder().start_on(smtp_port).await
    }

    /// A Mailpit with TLS and/or authentication.
    pub fn builder() -> MailpitBuilder {
        MailpitBuilder::default()
    }

    /// Every message received, newest first.
    pub async fn messages(&self) -> Vec<Mail> {
        let body: Value = self
            .http
            .get(format!("{}/api/v1/messages", self.api))
            .send()
            .await
            .expect("mailpit messages")
            .json()
            .await
            .expect("mailpit json");
        body["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| Mail {
                id: m["ID"].as_str().expect("ID").to_owned(),
                to: m["To"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t["Address"].as_str().map(str::to_owned))
                    .collect(),
                subject: m["Subject"].as_str().unwrap_or_default().to_owned(),
            })
            .collect()
    }

    /// One message in full (`Text`, `From`, `To`, `Subject`, `MessageID`...).
    pub async fn message(&self, id: &str) -> Value {
        self.http
            .get(format!("{}/api/v1/message/{id}", self.api))
            .send()
            .await
            .expect("mailpit message")
            .json()
            .await
            .expect("mailpit json")
    }

    /// Waits for `count` messages and returns them.
    pub async fn wait_for_messages(&self, count: usize) -> Vec<Mail> {
        wait_for(
            &format!("{count} message(s) in mailpit"),
            Duration::from_secs(30),
            || async {
                let messages = self.messages().await;
                (messages.len() >= count).then_some(messages)
            },
        )
        .await
        .expect("messages")
    }
}

impl std::fmt::Debug for Mailpit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailpit")
            .field("smtp_port", &self.smtp_port)
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

impl Drop for Mailpit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
