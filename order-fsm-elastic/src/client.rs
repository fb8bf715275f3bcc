//! The HTTP client: transport construction, raw requests and error classification.

use bytes::Bytes;
use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_TYPE};
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::http::Method;
use elasticsearch::Elasticsearch;
use serde_json::Value;

use crate::config::{Auth, ElasticConfig, Tls};
use crate::ElasticError;

/// A client for one cluster plus the configuration it was built from.
#[derive(Clone, Debug)]
pub(crate) struct Client {
    es: Elasticsearch,
    pub(crate) config: ElasticConfig,
}

/// A response body with its status.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Bytes,
}

impl Reply {
    pub(crate) fn json(&self, operation: &'static str) -> Result<Value, ElasticError> {
        serde_json::from_slice(&self.body).map_err(|e| ElasticError::decode(operation, e))
    }

    /// `Err(Http)` unless the status is 2xx.
    pub(crate) fn ok(self, operation: &'static str) -> Result<Self, ElasticError> {
        if (200..300).contains(&self.status) {
            Ok(self)
        } else {
            Err(self.into_error(operation))
        }
    }

    pub(crate) fn into_error(self, operation: &'static str) -> ElasticError {
        let text = String::from_utf8_lossy(&self.body);
        let body: String = text.chars().take(512).collect();
        ElasticError::Http {
            operation,
            status: self.status,
            body,
        }
    }
}

fn credentials(auth: &Auth) -> Credentials {
    match auth {
        Auth::Basic { username, password } => {
            Credentials::Basic(username.clone(), password.clone())
        }
        Auth::ApiKey(key) => match key.split_once(':') {
            Some((id, secret)) => Credentials::ApiKey(id.to_owned(), secret.to_owned()),
            None => Credentials::EncodedApiKey(key.clone()),
        },
    }
}

impl Client {
    pub(crate) fn new(config: ElasticConfig) -> Result<Self, ElasticError> {
        config.validate()?;
        let url = elasticsearch::http::Url::parse(&config.url)
            .map_err(|e| ElasticError::Config(format!("url `{}`: {e}", config.url)))?;
        let mut builder = TransportBuilder::new(SingleNodeConnectionPool::new(url))
            .timeout(config.request_timeout)
            .enable_meta_header(false);
        if !config.use_system_proxy {
            builder = builder.disable_proxy();
        }
        if let Some(auth) = &config.auth {
            builder = builder.auth(credentials(auth));
        }
        builder = match &config.tls {
            Tls::SystemRoots => builder,
            Tls::Insecure => builder.cert_validation(CertificateValidation::None),
            Tls::CaCertificate(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    ElasticError::Config(format!("CA certificate {}: {e}", path.display()))
                })?;
                let cert = Certificate::from_pem(&pem).map_err(|e| {
                    ElasticError::Config(format!("CA certificate {}: {e}", path.display()))
                })?;
                builder.cert_validation(CertificateValidation::Full(cert))
            }
        };
        let transport = builder
            .build()
            .map_err(|e| ElasticError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            es: Elasticsearch::new(transport),
            config,
        })
    }

    fn unreachable(&self, source: elasticsearch::Error) -> ElasticError {
        ElasticError::Unreachable {
            url: self.config.url.clone(),
            source: std::sync::Arc::new(source),
        }
    }

    /// Sends one request and reads the whole body; transport failures are
    /// [`ElasticError::Unreachable`], any status is returned as is.
    pub(crate) async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        ndjson: bool,
    ) -> Result<Reply, ElasticError> {
        let mut headers = HeaderMap::new();
        if ndjson {
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
        }
        let response = self
            .es
            .send(method, path, headers, None::<&()>, body, None)
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = response.status_code().as_u16();
        let body = response.bytes().await.map_err(|e| self.unreachable(e))?;
        Ok(Reply { status, body })
    }

    /// A JSON request whose reply must be 2xx JSON.
    pub(crate) async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        operation: &'static str,
    ) -> Result<Value, ElasticError> {
        let body = body
            .map(|b| serde_json::to_vec(b).map(Bytes::from))
            .transpose()
            .map_err(|e| ElasticError::decode(operation, e))?;
        self.request(method, path, body, false)
            .await?
            .ok(operation)?
            .json(operation)
    }

    /// Checks that the server answers as an Elasticsearch-compatible one.
    pub(crate) async fn ping(&self) -> Result<(), ElasticError> {
        let info = self.json(Method::Get, "/", None, "ping").await?;
        if info.get("version").is_none() {
            return Err(ElasticError::decode(
                "ping",
                "the root endpoint has no `version`: not an Elasticsearch-compatible server",
            ));
        }
        Ok(())
    }

    /// Creates `index` with `body` (settings and mappings) unless it exists.
    pub(crate) async fn ensure_index(&self, index: &str, body: &Value) -> Result<(), ElasticError> {
        let bytes = Bytes::from(
            serde_json::to_vec(body).map_err(|e| ElasticError::decode("create index", e))?,
        );
        let reply = self
            .request(Method::Put, &format!("/{index}"), Some(bytes), false)
            .await?;
        if (200..300).contains(&reply.status) {
            return Ok(());
        }
        let exists = reply.status == 400
            && reply
                .json("create index")
                .ok()
                .and_then(|v| v["error"]["type"].as_str().map(str::to_owned))
                .is_some_and(|t| t == "resource_already_exists_exception");
        if exists {
            Ok(())
        } else {
            Err(reply.into_error("create index"))
        }
    }
}
