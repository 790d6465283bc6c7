//! `/api/v1/services`: the list, one service's detail and series, its instances and
//! endpoints.

use crate::mesh::*;
use crate::support::*;

#[tokio::test]
async fn services_list_matches_the_map() {
    let api = Api::new().await;
    let list = api.ok("/api/v1/services").await;
    assert_eq!(list["start"], json!(WINDOW_START));
    assert_eq!(list["end"], json!(WINDOW_END));
    // The map's nodes, without their place in it.
    let mut nodes = api.ok("/api/v1/topology").await["nodes"].clone();
    for node in nodes.as_array_mut().unwrap() {
        node.as_object_mut().unwrap().remove("layer");
    }
    assert_eq!(list["services"], nodes);
    let ids_in_list: Vec<&str> = WINDOW_NODES.iter().map(|node| node.0).collect();
    assert_eq!(ids(&list["services"]), ids_in_list);
    let ops = api.ok("/api/v1/services?namespace=ops").await;
    assert_eq!(ids(&ops["services"]), ["ops/prober"]);
}

#[tokio::test]
async fn service_detail_with_a_series_per_minute() {
    let api = Api::new().await;
    let plain_path = api.ok("/api/v1/services/shop/frontend").await;
    let encoded = api.ok("/api/v1/services/shop%2Ffrontend").await;
    assert_eq!(plain_path, encoded);

    assert_eq!(plain_path["id"], json!("shop/frontend"));
    assert_eq!(plain_path["kind"], json!("service"));
    assert_eq!(plain_path["start"], json!(WINDOW_START));
    assert_eq!(plain_path["end"], json!(WINDOW_END));
    assert_json_matches(
        &plain_path["metrics"],
        &node_metrics(150, 10.0, 10, 0, Some(15.0), Some(140.0 / 150.0)),
        "metrics",
    );
    insta::assert_json_snapshot!("service_shop_frontend_15m", plain_path);
    let series = plain_path["series"].as_array().unwrap();
    assert_eq!(series.len(), 15);
    let times: Vec<i64> = series.iter().map(|p| p["t"].as_i64().unwrap()).collect();
    let expected_times: Vec<i64> = (0..15).map(|i| WINDOW_START + i * MINUTE_MS).collect();
    assert_eq!(times, expected_times);
    let quiet = node_metrics(0, 0.0, 0, 0, None, None);
    for point in &series[..13] {
        let mut metrics = point.clone();
        metrics.as_object_mut().unwrap().remove("t");
        assert_eq!(metrics, quiet);
    }
    let mut previous = node_metrics(100, 100.0, 10, 0, Some(15.0), Some(0.9));
    previous["t"] = json!(PREVIOUS_MINUTE);
    assert_json_matches(&series[13], &previous, "series[13]");
    let mut now = node_metrics(50, 50.0, 0, 0, Some(15.0), Some(1.0));
    now["t"] = json!(NOW_MINUTE);
    assert_json_matches(&series[14], &now, "series[14]");

    // A node known only as an edge's endpoint has a page too, with zero figures.
    let external = api.ok("/api/v1/services/external").await;
    assert_eq!(external["kind"], json!("virtual"));
    assert_eq!(external["metrics"]["calls"], json!(0));
    let legacy = api.ok("/api/v1/services/shop/legacy?window=1h").await;
    assert_eq!(legacy["metrics"]["calls"], json!(7));
    assert_eq!(legacy["series"].as_array().unwrap().len(), 60);
}

#[tokio::test]
async fn instances_and_endpoints_sorted_by_calls() {
    let api = Api::new().await;
    let instances = api.ok("/api/v1/services/shop/frontend/instances").await;
    assert_eq!(instances["service"], json!("shop/frontend"));
    assert_json_matches(
        &instances["instances"],
        &json!([
            {"name": "frontend-v1-pod-1", "metrics": node_metrics(120, 8.0, 10, 0, Some(15.0), Some(0.0))},
            {"name": "frontend-v1-pod-2", "metrics": node_metrics(30, 2.0, 0, 0, Some(15.0), Some(0.0))},
        ]),
        "instances",
    );
    let endpoints = api
        .ok("/api/v1/services/shop%2Fbackend/endpoints?window=5m")
        .await;
    assert_eq!(endpoints["service"], json!("shop/backend"));
    assert_eq!(endpoints["start"], json!(NOW_MINUTE - 4 * MINUTE_MS));
    assert_json_matches(
        &endpoints["endpoints"],
        &json!([
            {"name": "GET /items/{id}", "metrics": node_metrics(45, 9.0, 6, 0, Some(300.0), Some(0.0))},
            {"name": "POST /cart", "metrics": node_metrics(15, 3.0, 0, 3, Some(300.0), Some(0.0))},
        ]),
        "endpoints",
    );
    let none = api.ok("/api/v1/services/payments/endpoints").await;
    assert_eq!(none["endpoints"], json!([]));
}
