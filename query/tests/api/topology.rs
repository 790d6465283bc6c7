//! `/api/v1/topology`: the window's minutes, focus and depth, namespaces.

use crate::mesh::*;
use crate::support::*;

#[tokio::test]
async fn topology_of_the_default_window() {
    let api = Api::new().await;
    let default_window = api.ok("/api/v1/topology").await;
    let explicit = api.ok("/api/v1/topology?window=15m").await;
    assert_eq!(default_window, explicit);
    assert_eq!(default_window["start"], json!(WINDOW_START));
    assert_eq!(default_window["end"], json!(WINDOW_END));
    assert_node_figures(&default_window["nodes"], WINDOW_NODES);
    assert_edge_figures(&default_window["edges"], WINDOW_EDGES);
    // Calls a minute over the 15 minutes.
    assert_eq!(default_window["nodes"][5]["metrics"]["cpm"], json!(10.0));
    assert_eq!(default_window["nodes"][3]["metrics"]["cpm"], json!(2.667));
    insta::assert_json_snapshot!("topology_15m", default_window);
}

#[tokio::test]
async fn topology_windows_select_minutes() {
    let api = Api::new().await;
    // The previous minute alone: the open minute's services and edges are gone.
    let previous = api
        .ok(&format!(
            "/api/v1/topology?start={PREVIOUS_MINUTE}&end={NOW_MINUTE}"
        ))
        .await;
    assert_eq!(previous["start"], json!(PREVIOUS_MINUTE));
    assert_eq!(previous["end"], json!(NOW_MINUTE));
    assert_eq!(
        ids(&previous["nodes"]),
        ["external", "shop/frontend", "shop/ingress"]
    );
    assert_eq!(previous["nodes"][1]["metrics"]["calls"], json!(100));
    assert_eq!(previous["nodes"][1]["metrics"]["cpm"], json!(100.0));

    // An hour in RFC 3339 reaches the legacy service's old minute.
    let hour = api
        .ok("/api/v1/topology?start=2026-11-25T01:45:00Z&end=2026-11-25T02:45:00%2B00:00")
        .await;
    assert!(ids(&hour["nodes"]).contains(&"shop/legacy"), "{hour}");
    let day = api.ok("/api/v1/topology?window=1d").await;
    assert!(ids(&day["nodes"]).contains(&"shop/legacy"));
    assert!(!ids(&api.ok("/api/v1/topology?window=15m").await["nodes"]).contains(&"shop/legacy"));
}

#[tokio::test]
async fn topology_focus_walks_callers_and_callees_to_the_depth() {
    let api = Api::new().await;
    let backend = api.ok("/api/v1/topology?service=shop/backend").await;
    assert_eq!(ids(&backend["nodes"]), ["shop/backend", "shop/frontend"]);
    assert_eq!(
        edge_pairs(&backend["edges"]),
        ["shop/frontend->shop/backend"]
    );
    // Layers are recomputed for the focused graph.
    assert_eq!(backend["nodes"][0]["layer"], json!(1));
    assert_eq!(backend["nodes"][1]["layer"], json!(0));

    let backend2 = api
        .ok("/api/v1/topology?service=shop%2Fbackend&depth=2")
        .await;
    // Siblings (payments, db) are callees of a caller: not on a path through the focus.
    assert_eq!(
        ids(&backend2["nodes"]),
        ["shop/backend", "shop/frontend", "shop/ingress"]
    );

    let frontend = api
        .ok("/api/v1/topology?service=shop/frontend&depth=1")
        .await;
    assert_eq!(
        ids(&frontend["nodes"]),
        [
            "db",
            "payments",
            "shop/backend",
            "shop/frontend",
            "shop/ingress"
        ]
    );
    assert_eq!(
        edge_pairs(&frontend["edges"]),
        [
            "shop/frontend->db",
            "shop/frontend->payments",
            "shop/frontend->shop/backend",
            "shop/ingress->shop/frontend"
        ]
    );
    // The focused node keeps its full figures.
    assert_eq!(frontend["nodes"][3]["metrics"]["calls"], json!(150));

    let payments = api.ok("/api/v1/topology?service=payments&depth=5").await;
    assert_eq!(
        ids(&payments["nodes"]),
        [
            "external",
            "ops/prober",
            "payments",
            "shop/frontend",
            "shop/ingress"
        ]
    );
}

#[tokio::test]
async fn topology_namespace_keeps_its_services_and_their_peers() {
    let api = Api::new().await;
    let shop_only = api.ok("/api/v1/topology?namespace=shop").await;
    assert_eq!(
        ids(&shop_only["nodes"]),
        [
            "db",
            "external",
            "payments",
            "shop/backend",
            "shop/frontend",
            "shop/ingress"
        ]
    );
    assert!(!edge_pairs(&shop_only["edges"]).contains(&"ops/prober->payments".to_owned()));
    let ops = api.ok("/api/v1/topology?namespace=ops").await;
    assert_eq!(ids(&ops["nodes"]), ["ops/prober", "payments"]);
    assert_eq!(edge_pairs(&ops["edges"]), ["ops/prober->payments"]);
}

#[tokio::test]
async fn topology_of_several_namespaces_is_the_union_of_each() {
    let api = Api::new().await;
    let both = api.ok("/api/v1/topology?namespace=shop,ops").await;
    // shop's services and peers (db, external, payments), and ops/prober with its callee.
    assert_eq!(
        ids(&both["nodes"]),
        [
            "db",
            "external",
            "ops/prober",
            "payments",
            "shop/backend",
            "shop/frontend",
            "shop/ingress"
        ]
    );
    assert_eq!(
        edge_pairs(&both["edges"]),
        [
            "external->shop/ingress",
            "ops/prober->payments",
            "shop/frontend->db",
            "shop/frontend->payments",
            "shop/frontend->shop/backend",
            "shop/ingress->shop/frontend"
        ]
    );
    let spaced = api.ok("/api/v1/topology?namespace=%20ops%20,,shop").await;
    assert_eq!(spaced, both);
    let ops = api.ok("/api/v1/topology?namespace=ops,").await;
    assert_eq!(ids(&ops["nodes"]), ["ops/prober", "payments"]);
}

#[tokio::test]
async fn topology_focus_takes_a_plain_service_name() {
    let api = Api::new().await;
    let by_name = api.ok("/api/v1/topology?service=backend").await;
    let by_id = api.ok("/api/v1/topology?service=shop/backend").await;
    assert_eq!(by_name, by_id);
    assert_eq!(by_name["focus"], json!("shop/backend"));
    assert_eq!(ids(&by_name["nodes"]), ["shop/backend", "shop/frontend"]);
    // A node without a namespace is named by its id.
    let payments = api.ok("/api/v1/topology?service=payments").await;
    assert_eq!(payments["focus"], json!("payments"));
    // No focus, no field.
    assert!(api.ok("/api/v1/topology").await.get("focus").is_none());
    // Inside a namespace filter, only what the map shows can be focused.
    let (status, json) = api
        .get("/api/v1/topology?namespace=ops&service=backend")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        json["error"],
        json!("no service named \"backend\" on the map in this window")
    );
}
