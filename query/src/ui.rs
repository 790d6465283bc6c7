//! The web dashboard: the built files of `ui/` are embedded in the binary, so one executable
//! serves the map with no CDN or separate web server.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../ui/dist"]
struct Assets;

/// Vite names what it bundles by content hash, so those files never change under their name.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// The page itself names the current bundle: always revalidate it.
const REVALIDATE: &str = "no-cache";

pub(crate) async fn serve(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    if let Some(file) = (!path.is_empty()).then(|| Assets::get(path)).flatten() {
        let cache = if path.starts_with("assets/") {
            IMMUTABLE
        } else {
            REVALIDATE
        };
        let mime = mime_guess::from_path(path).first_or_octet_stream();
        return respond(file.data.into_owned(), mime.as_ref(), cache);
    }
    // A missing bundle file must not be answered with the page: the browser would run HTML as
    // script. Any other path is a route of the app itself, so it gets the page.
    if path.starts_with("assets/") {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    match Assets::get("index.html") {
        Some(index) => respond(
            index.data.into_owned(),
            "text/html; charset=utf-8",
            REVALIDATE,
        ),
        None => (
            StatusCode::NOT_FOUND,
            "the web UI was not built into this binary (built with MESHSCOPE_SKIP_UI_BUILD); \
             the JSON API is under /api/v1/",
        )
            .into_response(),
    }
}

fn respond(body: Vec<u8>, content_type: &str, cache: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
