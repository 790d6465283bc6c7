//! `/api/v1/services/{id}/instance-pairs`: caller instance -> callee instance, each side as
//! its proxy logged it, the retries and the pairing by request id.

use crate::mesh::*;
use crate::support::*;

#[tokio::test]
async fn a_services_instance_pairs_show_both_sides() {
    let api = Api::new().await;
    let answer = api
        .ok("/api/v1/services/shop%2Fbackend/instance-pairs")
        .await;
    assert_eq!(answer["service"], json!("shop/backend"));
    assert_eq!(answer["start"], json!(WINDOW_START));
    assert_eq!(answer["end"], json!(WINDOW_END));
    let side = |calls: u64, errors: u64, ms: f64| json!({"calls": calls, "errors": errors, "p50_ms": ms, "p95_ms": ms, "p99_ms": ms});
    let pairing = |paired: u64, server_only: u64| {
        json!({"paired": paired, "client_only": 0, "server_only": server_only,
               "overhead_p50_ms": null, "overhead_p99_ms": null})
    };
    // Most calls first: the 34 attempts the backend logged, then the 3 of a caller
    // without a proxy.
    assert_json_matches(
        &answer["pairs"],
        &json!([
            {"source": "shop/frontend", "source_instance": "frontend-v1-pod-1",
             "target": "shop/backend", "target_instance": "backend-1",
             "client": side(30, 2, 12.0), "server": side(34, 6, 10.0),
             "retries": 4, "identity_conflicts": 0, "pairing": pairing(30, 0)},
            {"source": "shop/frontend", "source_instance": "{unknown}",
             "target": "shop/backend", "target_instance": "backend-1",
             "server": side(3, 0, 10.0),
             "retries": 0, "identity_conflicts": 0, "pairing": pairing(0, 3)},
        ]),
        "pairs",
    );
    // The caller's service lists the pairs it calls from.
    let frontend = api
        .ok("/api/v1/services/shop%2Ffrontend/instance-pairs")
        .await;
    assert_eq!(frontend["pairs"], answer["pairs"]);
    let none = api.ok("/api/v1/services/payments/instance-pairs").await;
    assert_eq!(none["pairs"], json!([]));
}
