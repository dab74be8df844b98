//! Idempotent provisioning of Pulsar tenants and namespaces over the admin REST API
//! (`/admin/v2`). Creating something that exists is success, so the same calls serve the
//! local platform, the tests and production.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use url::Url;

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
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
#[derive(Debug, Clone)]
pub struct PulsarAdmin {
    base: Url,
    http: reqwest::Client,
    token: Option<String>,
}

impl PulsarAdmin {
    /// `base` is the broker's web service URL, e.g. `http://127.0.0.1:8080`.
    pub fn new(base: Url, token: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Self { base, http, token }
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
