//! Bearer tokens for the HTTP API.
//!
//! A token file holds one token per line, then optionally a space and a scope: `read` (the
//! map, services, edges, proxies) or `sql` (also `POST /api/v1/sql` and the table list,
//! which reach every raw access-log entry kept). A token without a scope has both. Blank
//! lines and lines starting with `#` are skipped.
//!
//! What each path needs: `/healthz` and the dashboard's own files are open (they hold no
//! data; the dashboard asks for a token when the API answers 401); `/metrics` needs any
//! token unless it is opened; `/api/v1/sql` and `/api/v1/tables` need `sql`; every other
//! `/api/` path needs `read`.
//!
//! Tokens are compared in constant time over every configured token (only a token's length
//! can show through timing: use long random tokens), and never logged: [`ApiTokens`]'s
//! `Debug` shows only how many there are.

use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::{Choice, ConstantTimeEq};
use thiserror::Error;

/// What a token may read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The map, services, edges and proxies.
    Read,
    /// Everything `Read` has, and SQL over every table, the raw access log included.
    Sql,
}

impl Scope {
    fn parse(word: &str) -> Option<Scope> {
        match word {
            "read" => Some(Scope::Read),
            "sql" => Some(Scope::Sql),
            _ => None,
        }
    }

    /// Whether a token of this scope may do what `needed` names.
    fn allows(self, needed: Scope) -> bool {
        match needed {
            Scope::Read => true,
            Scope::Sql => self == Scope::Sql,
        }
    }
}

/// Why a token file cannot be used. Messages name the line, never the token.
#[derive(Debug, Error)]
pub enum TokenFileError {
    #[error("reading the token file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("line {line} of the token file: unknown scope {scope:?} (use `read` or `sql`)")]
    UnknownScope { line: usize, scope: String },
    #[error("line {line} of the token file: a token, then at most one scope")]
    TooManyWords { line: usize },
    #[error("the token file holds no token")]
    Empty,
}

/// The configured tokens with their scopes.
#[derive(Clone)]
pub struct ApiTokens {
    tokens: Arc<Vec<(Vec<u8>, Scope)>>,
}

impl std::fmt::Debug for ApiTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiTokens({} tokens)", self.tokens.len())
    }
}

impl ApiTokens {
    /// Reads a token file (see the module documentation for its lines).
    pub fn from_file(path: &Path) -> Result<Self, TokenFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, TokenFileError> {
        let mut tokens = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let token = words.next().unwrap_or_default();
            let scope = match words.next() {
                None => Scope::Sql,
                Some(word) => Scope::parse(word).ok_or_else(|| TokenFileError::UnknownScope {
                    line: index + 1,
                    scope: word.to_owned(),
                })?,
            };
            if words.next().is_some() {
                return Err(TokenFileError::TooManyWords { line: index + 1 });
            }
            tokens.push((token.as_bytes().to_vec(), scope));
        }
        if tokens.is_empty() {
            return Err(TokenFileError::Empty);
        }
        Ok(Self {
            tokens: Arc::new(tokens),
        })
    }

    /// The scope of `presented`, or `None` when it is no configured token. Every token is
    /// compared, whichever matches.
    pub fn scope_of(&self, presented: &[u8]) -> Option<Scope> {
        let mut found_read = Choice::from(0);
        let mut found_sql = Choice::from(0);
        for (token, scope) in self.tokens.iter() {
            let equal = token.as_slice().ct_eq(presented);
            match scope {
                Scope::Read => found_read |= equal,
                Scope::Sql => found_sql |= equal,
            }
        }
        if bool::from(found_sql) {
            Some(Scope::Sql)
        } else if bool::from(found_read) {
            Some(Scope::Read)
        } else {
            None
        }
    }
}

/// Who may read what over HTTP.
#[derive(Clone, Debug, Default)]
pub struct AccessRules {
    /// `None` leaves the API open (the default, for a laptop).
    pub tokens: Option<ApiTokens>,
    /// Serve `/metrics` without a token even when tokens are configured.
    pub metrics_open: bool,
}

/// What a request path needs; `None` is open.
fn needed_scope(path: &str, rules: &AccessRules) -> Option<Scope> {
    match path {
        "/healthz" => None,
        "/metrics" if rules.metrics_open => None,
        "/metrics" => Some(Scope::Read),
        "/api/v1/sql" | "/api/v1/tables" => Some(Scope::Sql),
        _ if path == "/api" || path.starts_with("/api/") => Some(Scope::Read),
        _ => None,
    }
}

/// The middleware: lets a request through when its `Authorization: Bearer` token has the
/// scope its path needs; else answers 401 (no or unknown token) or 403 (too narrow a
/// scope) with `{"error": ...}`.
pub(crate) async fn require_token(
    State(rules): State<Arc<AccessRules>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(tokens) = &rules.tokens else {
        return next.run(request).await;
    };
    let Some(needed) = needed_scope(request.uri().path(), &rules) else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| bearer_token(value.as_bytes()));
    let Some(presented) = presented else {
        return refusal(
            StatusCode::UNAUTHORIZED,
            "this API needs a token: send `Authorization: Bearer <token>`",
        );
    };
    match tokens.scope_of(presented) {
        None => refusal(StatusCode::UNAUTHORIZED, "the token is not valid"),
        Some(scope) if !scope.allows(needed) => refusal(
            StatusCode::FORBIDDEN,
            "the token's scope does not allow SQL; it needs the `sql` scope",
        ),
        Some(_) => next.run(request).await,
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    const PREFIX: &[u8] = b"bearer ";
    if value.len() <= PREFIX.len() || !value[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let token = value[PREFIX.len()..].trim_ascii();
    (!token.is_empty()).then_some(token)
}

fn refusal(status: StatusCode, message: &str) -> Response {
    let mut response = (status, Json(serde_json::json!({ "error": message }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"meshscope\""),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_lines_give_tokens_and_scopes() {
        let tokens =
            ApiTokens::parse("# people\nalpha-token\n\n  beta-token read \ngamma-token sql\n")
                .unwrap();
        assert_eq!(tokens.scope_of(b"alpha-token"), Some(Scope::Sql));
        assert_eq!(tokens.scope_of(b"beta-token"), Some(Scope::Read));
        assert_eq!(tokens.scope_of(b"gamma-token"), Some(Scope::Sql));
        assert_eq!(tokens.scope_of(b"beta-toke"), None);
        assert_eq!(tokens.scope_of(b"beta-tokenn"), None);
        assert_eq!(tokens.scope_of(b""), None);
        assert_eq!(tokens.scope_of(b"# people"), None);
    }

    #[test]
    fn bad_token_files_name_the_line_never_the_token() {
        let error = ApiTokens::parse("secret-one\nsecret-two admin\n").unwrap_err();
        let message = error.to_string();
        assert!(message.contains("line 2"), "{message}");
        assert!(!message.contains("secret"), "{message}");
        assert!(matches!(
            ApiTokens::parse("a read sql\n"),
            Err(TokenFileError::TooManyWords { line: 1 })
        ));
        assert!(matches!(
            ApiTokens::parse("# nothing\n\n"),
            Err(TokenFileError::Empty)
        ));
        let debug = format!("{:?}", ApiTokens::parse("secret-one\n").unwrap());
        assert_eq!(debug, "ApiTokens(1 tokens)");
    }

    #[test]
    fn paths_need_the_scope_of_what_they_show() {
        let closed = AccessRules {
            tokens: None,
            metrics_open: false,
        };
        let open_metrics = AccessRules {
            tokens: None,
            metrics_open: true,
        };
        for (path, want) in [
            ("/healthz", None),
            ("/", None),
            ("/assets/index-abc.js", None),
            ("/metrics", Some(Scope::Read)),
            ("/api/v1/topology", Some(Scope::Read)),
            ("/api/v1/proxies/x/metrics", Some(Scope::Read)),
            ("/api/v1/sql", Some(Scope::Sql)),
            ("/api/v1/tables", Some(Scope::Sql)),
            ("/api/v2/anything", Some(Scope::Read)),
        ] {
            assert_eq!(needed_scope(path, &closed), want, "{path}");
        }
        assert_eq!(needed_scope("/metrics", &open_metrics), None);
        assert!(Scope::Sql.allows(Scope::Read));
        assert!(!Scope::Read.allows(Scope::Sql));
    }

    #[test]
    fn bearer_header_is_read_whatever_the_case_of_its_scheme() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bearer"), None);
    }
}
