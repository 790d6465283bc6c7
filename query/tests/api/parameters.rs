//! What every answer shares: the server's clock in series, and bad parameters answered as
//! JSON errors.

use crate::mesh::*;
use crate::support::*;

#[tokio::test]
async fn series_answers_say_the_servers_clock() {
    let api = Api::new().await;
    let service = api.ok("/api/v1/services/shop/frontend").await;
    assert_eq!(service["now"], json!(NOW));
    let edge = api
        .ok("/api/v1/edges?source=shop/frontend&target=shop/backend")
        .await;
    assert_eq!(edge["now"], json!(NOW));
    // The last point is the minute holding `now`: the one a chart marks as still filling.
    let last = service["series"].as_array().unwrap().last().unwrap()["t"].clone();
    assert_eq!(last, json!(NOW_MINUTE));
}

#[tokio::test]
async fn bad_parameters_are_json_errors() {
    let api = Api::new().await;
    let cases = [
        (
            "/api/v1/topology?window=15x",
            StatusCode::BAD_REQUEST,
            "invalid window",
        ),
        (
            "/api/v1/topology?window=0m",
            StatusCode::BAD_REQUEST,
            "longer than zero",
        ),
        (
            "/api/v1/topology?window=15m&start=0",
            StatusCode::BAD_REQUEST,
            "either",
        ),
        (
            "/api/v1/topology?start=yesterday",
            StatusCode::BAD_REQUEST,
            "invalid `start`",
        ),
        (
            "/api/v1/topology?start=200000&end=100000",
            StatusCode::BAD_REQUEST,
            "before",
        ),
        (
            "/api/v1/topology?service=shop/frontend&depth=9",
            StatusCode::BAD_REQUEST,
            "invalid depth",
        ),
        (
            "/api/v1/topology?service=shop/frontend&depth=two",
            StatusCode::BAD_REQUEST,
            "invalid depth",
        ),
        (
            "/api/v1/topology?depth=1&depth=2",
            StatusCode::BAD_REQUEST,
            "duplicate",
        ),
        (
            "/api/v1/topology?service=shop/nothing",
            StatusCode::NOT_FOUND,
            "shop/nothing",
        ),
        (
            "/api/v1/services?window=1y",
            StatusCode::BAD_REQUEST,
            "invalid window",
        ),
        (
            "/api/v1/services/shop/nothing",
            StatusCode::NOT_FOUND,
            "shop/nothing",
        ),
        (
            "/api/v1/services/shop/legacy",
            StatusCode::NOT_FOUND,
            "no traffic in this window",
        ),
        (
            "/api/v1/services/shop/nothing/instances",
            StatusCode::NOT_FOUND,
            "shop/nothing",
        ),
        (
            "/api/v1/services/bad%zz",
            StatusCode::BAD_REQUEST,
            "invalid service id",
        ),
        (
            "/api/v1/edges?source=shop/ingress",
            StatusCode::BAD_REQUEST,
            "required",
        ),
        (
            "/api/v1/edges?source=shop/backend&target=shop/frontend",
            StatusCode::NOT_FOUND,
            "no calls",
        ),
        (
            "/api/v1/edges?source=shop/ingress&target=shop/frontend&protocol=udp",
            StatusCode::BAD_REQUEST,
            "protocol",
        ),
        (
            "/api/v1/nothing",
            StatusCode::NOT_FOUND,
            "no such API route",
        ),
    ];
    for (uri, status, message) in cases {
        let (got_status, body) = api.get(uri).await;
        assert_eq!(got_status, status, "{uri}: {body}");
        let error = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{uri}: {body}"));
        assert!(
            error.contains(message),
            "{uri}: {error:?} lacks {message:?}"
        );
        assert_eq!(body.as_object().unwrap().len(), 1, "{uri}: {body}");
    }
}
