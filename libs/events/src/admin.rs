//! Idempotent provisioning of Pulsar tenants and namespaces over the admin REST API
//! (`/admin/v2`). Creating something that exists is success, so the same calls serve the
//! local platform, the tests and production.
//!
//! A secured broker (token authentication, TLS) is reached with [`AdminSettings`]: the
//! superuser's token file and the CA that signed the broker's certificate.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use url::Url;

/// How a tool reaches the broker's admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// Web service URL: `http://host:8080`, or `https://host:8443` on a secured broker.
    pub url: Url,
    /// File holding a token of a role allowed to administer (a superuser to provision).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// PEM CA bundle that the broker's certificate is verified against for `https://`,
    /// instead of the web PKI roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl AdminSettings {
    /// An open broker's admin API at `url`: no token, web PKI roots.
    pub fn new(url: Url) -> Self {
        Self {
            url,
            token_file: None,
            ca_file: None,
        }
    }
}

/// Why an admin call failed, or the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot read {path}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no usable PEM certificate")]
    Certificate {
        path: PathBuf,
        #[source]
        source: Option<reqwest::Error>,
    },
    #[error("cannot build the HTTP client of the Pulsar admin API")]
    Client(#[source] reqwest::Error),
    #[error("Pulsar admin request to {url} failed")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Pulsar admin {method} {url} answered {status}: {body}")]
    Status {
        method: &'static str,
        url: String,
        status: StatusCode,
        body: String,
    },
}

/// A client of the broker's admin REST API.
#[derive(Clone)]
pub struct PulsarAdmin {
    base: Url,
    http: reqwest::Client,
    token: Option<String>,
}

impl fmt::Debug for PulsarAdmin {
    // The token is a credential: never in a log line or a panic message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PulsarAdmin")
            .field("base", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

fn http_client() -> reqwest::ClientBuilder {
    reqwest::Client::builder().timeout(Duration::from_secs(30))
}

fn read(path: &Path) -> Result<Vec<u8>, AdminError> {
    std::fs::read(path).map_err(|source| AdminError::File {
        path: path.to_owned(),
        source,
    })
}

impl PulsarAdmin {
    /// `base` is the broker's web service URL, e.g. `http://127.0.0.1:8080`; an `https://`
    /// one is verified against the web PKI roots (see [`PulsarAdmin::from_settings`] for a
    /// private CA).
    pub fn new(base: Url, token: Option<String>) -> Self {
        let http = http_client().build().unwrap_or_default();
        Self { base, http, token }
    }

    /// A client as `settings` say: the token read from its file, and for `https://` the
    /// broker's certificate verified against the CA file only, when one is given.
    pub fn from_settings(settings: &AdminSettings) -> Result<Self, AdminError> {
        let token = match &settings.token_file {
            Some(path) => {
                let bytes = read(path)?;
                let token = String::from_utf8_lossy(bytes.trim_ascii()).into_owned();
                Some(token)
            }
            None => None,
        };
        let mut builder = http_client();
        if let Some(path) = &settings.ca_file {
            let certificate_error = |source| AdminError::Certificate {
                path: path.clone(),
                source,
            };
            let certificates = reqwest::Certificate::from_pem_bundle(&read(path)?)
                .map_err(|e| certificate_error(Some(e)))?;
            if certificates.is_empty() {
                return Err(certificate_error(None));
            }
            // A private CA replaces the public roots: nothing else may vouch for the broker.
            builder = builder.tls_built_in_root_certs(false);
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().map_err(AdminError::Client)?;
        Ok(Self {
            base: settings.url.clone(),
            http,
            token,
        })
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/admin/v2/{path}",
            self.base.as_str().trim_end_matches('/')
        )
    }

    /// A request to `/admin/v2/{path}` carrying the token, for calls that need the raw
    /// response (headers, bytes).
    pub(crate) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, self.url(path));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
        ok_if: &[StatusCode],
    ) -> Result<String, AdminError> {
        let url = self.url(path);
        let mut request = self.request(method.clone(), path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|source| AdminError::Http {
            url: url.clone(),
            source,
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() || ok_if.contains(&status) {
            Ok(text)
        } else {
            Err(AdminError::Status {
                method: static_method(&method),
                url,
                status,
                body: text,
            })
        }
    }

    /// Names of the clusters the broker knows (`standalone` locally).
    pub async fn clusters(&self) -> Result<Vec<String>, AdminError> {
        let text = self
            .call(reqwest::Method::GET, "clusters", None, &[])
            .await?;
        Ok(serde_json::from_str(&text).unwrap_or_default())
    }

    /// Whether `tenant` exists.
    pub async fn tenant_exists(&self, tenant: &str) -> Result<bool, AdminError> {
        let path = format!("tenants/{tenant}");
        match self.call(reqwest::Method::GET, &path, None, &[]).await {
            Ok(_) => Ok(true),
            Err(AdminError::Status { status, .. }) if status == StatusCode::NOT_FOUND => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Creates `tenant` allowed on every known cluster, unless it exists.
    pub async fn ensure_tenant(&self, tenant: &str) -> Result<(), AdminError> {
        if self.tenant_exists(tenant).await? {
            return Ok(());
        }
        let clusters = self.clusters().await?;
        let body = json!({ "adminRoles": [], "allowedClusters": clusters });
        let created = self
            .call(
                reqwest::Method::PUT,
                &format!("tenants/{tenant}"),
                Some(body),
                &[StatusCode::CONFLICT],
            )
            .await;
        match created {
            Ok(_) => Ok(()),
            // Two creators racing on a fresh broker: the loser may get a 500 (a metadata
            // version conflict) instead of 409. The tenant existing afterwards is success.
            Err(error) => match self.tenant_exists(tenant).await {
                Ok(true) => Ok(()),
                _ => Err(error),
            },
        }
    }

    /// Creates `tenant/namespace` (and its tenant), unless they exist.
    pub async fn ensure_namespace(&self, namespace: &str) -> Result<(), AdminError> {
        let tenant = namespace.split('/').next().unwrap_or(namespace);
        self.ensure_tenant(tenant).await?;
        self.call(
            reqwest::Method::PUT,
            &format!("namespaces/{namespace}"),
            None,
            &[StatusCode::CONFLICT],
        )
        .await
        .map(drop)
    }

    /// Sets one namespace policy: `POST /admin/v2/namespaces/{namespace}/{policy}` with `body`.
    pub async fn set_policy(
        &self,
        namespace: &str,
        policy: &str,
        body: serde_json::Value,
    ) -> Result<(), AdminError> {
        self.call(
            reqwest::Method::POST,
            &format!("namespaces/{namespace}/{policy}"),
            Some(body),
            &[],
        )
        .await
        .map(drop)
    }

    /// Reads one namespace policy (`GET /admin/v2/namespaces/{namespace}/{policy}`).
    pub async fn policy(
        &self,
        namespace: &str,
        policy: &str,
    ) -> Result<serde_json::Value, AdminError> {
        let text = self
            .call(
                reqwest::Method::GET,
                &format!("namespaces/{namespace}/{policy}"),
                None,
                &[],
            )
            .await?;
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    /// Creates `tenant/namespace/topic` with `partitions` partitions unless it exists.
    /// An existing topic keeps its partition count (Pulsar can only grow it, and that is a
    /// deliberate operation, not a provisioning side effect).
    pub async fn ensure_partitioned_topic(
        &self,
        topic: &str,
        partitions: u32,
    ) -> Result<(), AdminError> {
        self.call(
            reqwest::Method::PUT,
            &format!("persistent/{topic}/partitions"),
            Some(json!(partitions)),
            &[StatusCode::CONFLICT],
        )
        .await
        .map(drop)
    }

    /// Statistics of a persistent topic (`persistent://t/n/x` or `t/n/x`): per subscription,
    /// `msgBacklog` (not yet acknowledged) and `unackedMessages` (delivered, not acknowledged).
    pub async fn topic_stats(&self, topic: &str) -> Result<serde_json::Value, AdminError> {
        let path = topic.trim_start_matches("persistent://");
        let text = self
            .call(
                reqwest::Method::GET,
                &format!("persistent/{path}/stats"),
                None,
                &[],
            )
            .await?;
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    /// Statistics of a partitioned topic, each partition's under `partitions`.
    pub async fn partitioned_topic_stats(
        &self,
        topic: &str,
    ) -> Result<serde_json::Value, AdminError> {
        let path = topic.trim_start_matches("persistent://");
        let text = self
            .call(
                reqwest::Method::GET,
                &format!("persistent/{path}/partitioned-stats?perPartition=true"),
                None,
                &[],
            )
            .await?;
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    /// Deletes a tenant and everything in it (tests clean up with it).
    pub async fn delete_tenant(&self, tenant: &str) -> Result<(), AdminError> {
        self.call(
            reqwest::Method::DELETE,
            &format!("tenants/{tenant}?force=true"),
            None,
            &[StatusCode::NOT_FOUND],
        )
        .await
        .map(drop)
    }

    /// Deletes a namespace and every topic in it (tests clean up with it).
    pub async fn delete_namespace(&self, namespace: &str) -> Result<(), AdminError> {
        self.call(
            reqwest::Method::DELETE,
            &format!("namespaces/{namespace}?force=true"),
            None,
            &[StatusCode::NOT_FOUND],
        )
        .await
        .map(drop)
    }
}

pub(crate) fn static_method(method: &reqwest::Method) -> &'static str {
    match *method {
        reqwest::Method::GET => "GET",
        reqwest::Method::PUT => "PUT",
        reqwest::Method::POST => "POST",
        reqwest::Method::DELETE => "DELETE",
        _ => "request",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AdminSettings {
        AdminSettings::new(Url::parse("https://127.0.0.1:8443").expect("URL"))
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let admin = PulsarAdmin::new(settings().url, Some("eyJ.secret.token".to_owned()));
        let shown = format!("{admin:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
    }

    #[test]
    fn unreadable_or_empty_files_are_named_in_the_error() {
        let missing = AdminSettings {
            token_file: Some(PathBuf::from("/nonexistent/admin.jwt")),
            ..settings()
        };
        let error = PulsarAdmin::from_settings(&missing).expect_err("no token file");
        assert!(
            matches!(&error, AdminError::File { path, .. } if path == Path::new("/nonexistent/admin.jwt"))
        );

        let dir = std::env::temp_dir().join(format!("comptoir-admin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let not_a_ca = dir.join("ca.crt");
        std::fs::write(&not_a_ca, "not a certificate\n").expect("write");
        let bad = AdminSettings {
            ca_file: Some(not_a_ca.clone()),
            ..settings()
        };
        let error = PulsarAdmin::from_settings(&bad).expect_err("no certificate in the CA file");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            matches!(&error, AdminError::Certificate { path, .. } if *path == not_a_ca),
            "{error:?}"
        );
    }

    #[test]
    fn the_token_file_is_read_without_surrounding_whitespace() {
        let dir = std::env::temp_dir().join(format!("comptoir-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("admin.jwt");
        std::fs::write(&file, "  abc.def.ghi\n").expect("write");
        let admin = PulsarAdmin::from_settings(&AdminSettings {
            token_file: Some(file),
            ..settings()
        });
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(admin.expect("valid").token.as_deref(), Some("abc.def.ghi"));
    }
}
