//! Headers every HTTP answer carries, and cross-origin access (off unless origins are
//! configured).
//!
//! The Content-Security-Policy lets the dashboard load only its own files: no inline or
//! evaluated script, no framing by other sites (`frame-ancestors 'none'`), requests to its
//! own origin only. Inline style attributes stay allowed: the map and chart libraries
//! position elements that way, and styles run no code.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     worker-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; \
     frame-ancestors 'none'";

/// Adds the security headers to every answer, leaving any a handler set itself.
pub(crate) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let fixed: [(HeaderName, &'static str); 4] = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in fixed {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    response
}

/// Cross-origin reads for the listed origins (`https://grafana.example.com`), with the
/// `Authorization` header; `None` when no origin is listed, which leaves browsers' same-origin
/// rule in force. An origin that is not a valid header value is an error naming it.
pub fn cors_layer(origins: &[String]) -> Result<Option<CorsLayer>, String> {
    if origins.is_empty() {
        return Ok(None);
    }
    let values = origins
        .iter()
        .map(|origin| {
            HeaderValue::from_str(origin.trim().trim_end_matches('/'))
                .map_err(|_| format!("not a valid origin: {origin:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(values))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
    ))
}
