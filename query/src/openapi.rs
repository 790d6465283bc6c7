//! `GET /api/v1/openapi.json`: the API's OpenAPI 3.1 description, generated from the
//! handlers' own `#[utoipa::path]` descriptions and the answer types' `ToSchema`.

use std::sync::LazyLock;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;

/// Where the document is served.
pub(crate) const DOCUMENT_PATH: &str = "/api/v1/openapi.json";

/// The name of the bearer-token security scheme in the document.
const BEARER: &str = "bearer_token";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "meshscope",
        description = "The service map of a mesh, its services, edges and proxies, and \
            read-only SQL over the stored minutes. Times are epoch milliseconds. When the \
            server is given API tokens, every path needs `Authorization: Bearer <token>`; \
            `/api/v1/sql` and `/api/v1/tables` need a token with the `sql` scope.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        crate::topology::topology,
        crate::services::list,
        crate::services::service_detail,
        crate::services::service_instances,
        crate::services::service_endpoints,
        crate::endpoint_dependencies::endpoint_dependencies,
        crate::instance_pairs::instance_pairs,
        crate::edges::edge,
        crate::proxies::list,
        crate::proxies::metrics,
        crate::sql::sql,
        crate::sql::tables,
        document,
    ),
    // Named here as well as through the answers that use them, so that every `$ref` the
    // document makes has its schema whatever the answers collect.
    components(schemas(
        ErrorBody,
        crate::view::NodeKindName,
        crate::topology::EdgeProtocol,
        crate::topology::ReportingSide,
        crate::nodegraph::HealthColor,
        crate::proxies::ProxyStatus,
        crate::proxies::StatKind,
    )),
    modifiers(&TokenRefusals),
    tags(
        (name = "map", description = "The service graph and its edges"),
        (name = "services", description = "Per-service figures"),
        (name = "proxies", description = "The proxies' own statistics"),
        (name = "sql", description = "Read-only SQL over the stored tables"),
        (name = "meta", description = "This description"),
    )
)]
struct ApiDoc;

/// Adds the bearer-token scheme, optional as the server's default is open, and the 401
/// (and, for SQL, 403) answers the token check gives when tokens are configured.
struct TokenRefusals;

impl Modify for TokenRefusals {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![
            utoipa::openapi::security::SecurityRequirement::default(),
            utoipa::openapi::security::SecurityRequirement::new(BEARER, Vec::<String>::new()),
        ]);
        let refusal = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                    )
                    .build(),
            )
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let needs_sql = path == "/api/v1/sql" || path == "/api/v1/tables";
            for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                responses.insert(
                    "401".to_owned(),
                    refusal("Tokens are configured and none, or an unknown one, was sent"),
                );
                if needs_sql {
                    responses.insert(
                        "403".to_owned(),
                        refusal("The token's scope does not allow SQL"),
                    );
                }
            }
        }
    }
}

/// The document, built once.
static DOCUMENT: LazyLock<serde_json::Value> = LazyLock::new(|| {
    serde_json::to_value(ApiDoc::openapi()).expect("an OpenAPI document serializes")
});

/// The API's OpenAPI 3.1 document as JSON.
pub fn document_json() -> serde_json::Value {
    DOCUMENT.clone()
}

/// This document: the OpenAPI 3.1 description of every `/api/v1` route.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", body = Object,
            content_type = "application/json"),
    )
)]
pub(crate) async fn document() -> Response {
    (StatusCode::OK, Json(&*DOCUMENT)).into_response()
}
