//! The security settings of `serve`: TLS on both listeners, client certificates from the
//! proxies, bearer tokens for the HTTP API, cross-origin access and the gRPC limits per
//! connection. Every one is off by default, so a laptop demo stays plaintext and open; each
//! comes from a flag, a `MESHSCOPE_*` variable or the config file's `[security]` table, in
//! that order.

use std::path::PathBuf;

use anyhow::Context;
use clap::builder::BoolishValueParser;
use meshscope_query::HttpSecurity;
use meshscope_query::auth::{AccessRules, ApiTokens};
use serde::Deserialize;

use crate::tls::{ServerTls, TlsFiles};

/// Concurrent gRPC streams one connection may open. An Envoy opens one per access logger
/// and worker thread, and one for its statistics: tens. The load generators put hundreds of
/// simulated proxies on one connection, hence the headroom.
pub(crate) const DEFAULT_GRPC_MAX_CONCURRENT_STREAMS: u32 = 4096;

#[derive(Debug, clap::Args)]
pub(crate) struct SecurityArgs {
    /// PEM certificate chain for TLS on the gRPC and HTTP listeners (needs --tls-key);
    /// re-read when the file changes
    #[arg(long, env = "MESHSCOPE_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert; re-read when the file changes
    #[arg(long, env = "MESHSCOPE_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// PEM CA whose signed client certificate every gRPC connection must present (the
    /// proxies' mTLS); needs --tls-cert
    #[arg(long, env = "MESHSCOPE_GRPC_CLIENT_CA")]
    grpc_client_ca: Option<PathBuf>,
    /// Refuse a stream whose node claims another identity than its client certificate's
    /// SPIFFE ID (mismatches are always counted and logged); needs --grpc-client-ca
    #[arg(long, env = "MESHSCOPE_STRICT_REPORTER_IDENTITY", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    strict_reporter_identity: Option<bool>,
    /// File of bearer tokens for the HTTP API, one a line: the token, then optionally a
    /// space and a scope, `read` or `sql`
    #[arg(long, env = "MESHSCOPE_API_TOKEN_FILE")]
    api_token_file: Option<PathBuf>,
    /// Serve /metrics without a token when --api-token-file is set
    #[arg(long, env = "MESHSCOPE_METRICS_OPEN", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    metrics_open: Option<bool>,
    /// Origins allowed to call the API from a browser, comma-separated [default: none]
    #[arg(long, env = "MESHSCOPE_CORS_ORIGINS", value_delimiter = ',')]
    cors_origins: Option<Vec<String>>,
    /// Concurrent gRPC streams per connection [default: 4096]
    #[arg(long, env = "MESHSCOPE_GRPC_MAX_CONCURRENT_STREAMS")]
    grpc_max_concurrent_streams: Option<u32>,
}

/// `[security]` in the config file; the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct SecuritySection {
    pub(crate) tls_cert: Option<PathBuf>,
    pub(crate) tls_key: Option<PathBuf>,
    pub(crate) grpc_client_ca: Option<PathBuf>,
    pub(crate) strict_reporter_identity: Option<bool>,
    pub(crate) api_token_file: Option<PathBuf>,
    pub(crate) metrics_open: Option<bool>,
    pub(crate) cors_origins: Option<Vec<String>>,
    pub(crate) grpc_max_concurrent_streams: Option<u32>,
}

/// The merged settings; [`SecuritySettings::server_tls`] and
/// [`SecuritySettings::http_security`] check and load them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SecuritySettings {
    pub(crate) tls_cert: Option<PathBuf>,
    pub(crate) tls_key: Option<PathBuf>,
    pub(crate) grpc_client_ca: Option<PathBuf>,
    pub(crate) strict_reporter_identity: bool,
    pub(crate) api_token_file: Option<PathBuf>,
    pub(crate) metrics_open: bool,
    pub(crate) cors_origins: Vec<String>,
    pub(crate) grpc_max_concurrent_streams: u32,
}

impl Default for SecuritySettings {
    fn default() -> Self {
        Self {
            tls_cert: None,
            tls_key: None,
            grpc_client_ca: None,
            strict_reporter_identity: false,
            api_token_file: None,
            metrics_open: false,
            cors_origins: Vec::new(),
            grpc_max_concurrent_streams: DEFAULT_GRPC_MAX_CONCURRENT_STREAMS,
        }
    }
}

impl SecuritySettings {
    pub(crate) fn resolve(args: SecurityArgs, file: SecuritySection) -> Self {
        Self {
            tls_cert: args.tls_cert.or(file.tls_cert),
            tls_key: args.tls_key.or(file.tls_key),
            grpc_client_ca: args.grpc_client_ca.or(file.grpc_client_ca),
            strict_reporter_identity: args
                .strict_reporter_identity
                .or(file.strict_reporter_identity)
                .unwrap_or(false),
            api_token_file: args.api_token_file.or(file.api_token_file),
            metrics_open: args.metrics_open.or(file.metrics_open).unwrap_or(false),
            cors_origins: args
                .cors_origins
                .or(file.cors_origins)
                .unwrap_or_default()
                .into_iter()
                .map(|origin| origin.trim().to_owned())
                .filter(|origin| !origin.is_empty())
                .collect(),
            grpc_max_concurrent_streams: args
                .grpc_max_concurrent_streams
                .or(file.grpc_max_concurrent_streams)
                .unwrap_or(DEFAULT_GRPC_MAX_CONCURRENT_STREAMS),
        }
    }

    /// Which files TLS is read from, `None` without TLS; an error for a setting that needs
    /// another one missing.
    pub(crate) fn tls_files(&self) -> anyhow::Result<Option<TlsFiles>> {
        let files = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                grpc_client_ca: self.grpc_client_ca.clone(),
            }),
            (Some(_), None) => anyhow::bail!("--tls-cert needs --tls-key"),
            (None, Some(_)) => anyhow::bail!("--tls-key needs --tls-cert"),
            (None, None) => None,
        };
        anyhow::ensure!(
            files.is_some() || self.grpc_client_ca.is_none(),
            "--grpc-client-ca needs --tls-cert and --tls-key"
        );
        anyhow::ensure!(
            self.grpc_client_ca.is_some() || !self.strict_reporter_identity,
            "--strict-reporter-identity needs --grpc-client-ca: without client certificates \
             there is nothing to check a reporter against"
        );
        Ok(files)
    }

    /// The TLS configurations of both listeners, read from their files; `None` without TLS.
    pub(crate) fn server_tls(&self) -> anyhow::Result<Option<ServerTls>> {
        self.tls_files()?
            .map(|files| ServerTls::load(&files).context("loading the TLS files"))
            .transpose()
    }

    /// The HTTP API's tokens and cross-origin rules, the token file read.
    pub(crate) fn http_security(&self) -> anyhow::Result<HttpSecurity> {
        let tokens = self
            .api_token_file
            .as_deref()
            .map(ApiTokens::from_file)
            .transpose()?;
        let cors = meshscope_query::headers::cors_layer(&self.cors_origins)
            .map_err(|error| anyhow::anyhow!("in the CORS origins: {error}"))?;
        Ok(HttpSecurity {
            access: AccessRules {
                tokens,
                metrics_open: self.metrics_open,
            },
            cors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FileConfig;

    fn settings(file: &str) -> SecuritySettings {
        let args = SecurityArgs {
            tls_cert: None,
            tls_key: None,
            grpc_client_ca: None,
            strict_reporter_identity: None,
            api_token_file: None,
            metrics_open: None,
            cors_origins: None,
            grpc_max_concurrent_streams: None,
        };
        SecuritySettings::resolve(args, FileConfig::parse(file).unwrap().security)
    }

    #[test]
    fn everything_is_off_by_default() {
        let defaults = settings("");
        assert_eq!(defaults.tls_files().unwrap(), None);
        assert!(!defaults.strict_reporter_identity);
        assert!(!defaults.metrics_open);
        assert!(defaults.cors_origins.is_empty());
        assert_eq!(
            defaults.grpc_max_concurrent_streams,
            DEFAULT_GRPC_MAX_CONCURRENT_STREAMS
        );
        let http = defaults.http_security().unwrap();
        assert!(http.access.tokens.is_none());
        assert!(http.cors.is_none());
    }

    #[test]
    fn the_file_sets_every_setting() {
        let from_file = settings(
            "[security]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\ngrpc_client_ca = \"ca.pem\"\n\
             strict_reporter_identity = true\nmetrics_open = true\n\
             cors_origins = [\"https://a.example\"]\ngrpc_max_concurrent_streams = 8\n",
        );
        assert_eq!(
            from_file.tls_files().unwrap(),
            Some(TlsFiles {
                cert: "c.pem".into(),
                key: "k.pem".into(),
                grpc_client_ca: Some("ca.pem".into()),
            })
        );
        assert!(from_file.strict_reporter_identity);
        assert!(from_file.metrics_open);
        assert_eq!(from_file.cors_origins, ["https://a.example"]);
        assert_eq!(from_file.grpc_max_concurrent_streams, 8);
        assert!(from_file.http_security().unwrap().cors.is_some());
    }

    #[test]
    fn settings_missing_what_they_need_are_errors() {
        for (file, needs) in [
            ("[security]\ntls_cert = \"c.pem\"\n", "--tls-key"),
            ("[security]\ntls_key = \"k.pem\"\n", "--tls-cert"),
            ("[security]\ngrpc_client_ca = \"ca.pem\"\n", "--tls-cert"),
            (
                "[security]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\nstrict_reporter_identity = true\n",
                "--grpc-client-ca",
            ),
        ] {
            let error = settings(file).tls_files().unwrap_err().to_string();
            assert!(error.contains(needs), "{file}: {error}");
        }
        assert!(FileConfig::parse("[security]\ntls_crt = \"c.pem\"\n").is_err());
    }
}
