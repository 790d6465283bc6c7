//! `/api/v1/edges`: one edge's two sides and the side believed.

use crate::mesh::*;
use crate::support::*;

#[tokio::test]
async fn edge_detail_shows_both_sides_and_the_chosen_one() {
    let api = Api::new().await;
    let detail = api
        .ok("/api/v1/edges?source=shop/frontend&target=shop/backend&window=2m")
        .await;
    assert_eq!(detail["source"], json!("shop/frontend"));
    assert_eq!(detail["target"], json!("shop/backend"));
    assert_eq!(detail["start"], json!(PREVIOUS_MINUTE));
    let edges = detail["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1);
    let edge = &edges[0];
    assert_eq!(edge["protocol"], json!("http"));
    assert_eq!(edge["detected_by"], json!("server"));
    assert_eq!(edge["mtls"], json!(true));

    let mut server = edge_metrics(60, 6, 3, 300.0, 2.0);
    server["mtls_calls"] = json!(60);
    assert_json_matches(&edge["metrics"], &server, "metrics");
    assert_json_matches(&edge["server"]["metrics"], &server, "server.metrics");
    assert_json_matches(
        &edge["client"]["metrics"],
        &edge_metrics(60, 6, 3, 301.0, 2.0),
        "client.metrics",
    );

    let calls = |series: &Value| -> Vec<u64> {
        series
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["calls"].as_u64().unwrap())
            .collect()
    };
    insta::assert_json_snapshot!("edge_frontend_backend_2m", detail);
    assert_eq!(calls(&edge["series"]), [0, 60]);
    assert_eq!(calls(&edge["server"]["series"]), [0, 60]);
    assert_eq!(calls(&edge["client"]["series"]), [0, 60]);
    assert_eq!(edge["client"]["series"][1]["mtls_calls"], json!(0));
    assert_eq!(edge["server"]["series"][1]["mtls_calls"], json!(60));
    assert_eq!(edge["series"][1]["cpm"], json!(60.0));

    // Seen only from the client side: the server side is null.
    let payments = api
        .ok("/api/v1/edges?source=shop/frontend&target=payments&protocol=http")
        .await;
    let edge = &payments["edges"][0];
    assert_eq!(edge["detected_by"], json!("client"));
    assert_eq!(edge["server"], Value::Null);
    assert_eq!(edge["client"]["metrics"]["calls"], json!(30));
    assert_eq!(edge["series"].as_array().unwrap().len(), 15);

    // The ingress edge: the server side's 10 errors win over the client's 12.
    let ingress = api
        .ok("/api/v1/edges?source=shop/ingress&target=shop%2Ffrontend")
        .await;
    let edge = &ingress["edges"][0];
    assert_eq!(edge["metrics"]["errors"], json!(10));
    assert_eq!(edge["server"]["metrics"]["calls"], json!(150));
    assert_eq!(edge["client"]["metrics"]["calls"], json!(100));
    assert_eq!(edge["client"]["metrics"]["errors"], json!(12));
}
