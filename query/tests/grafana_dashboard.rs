//! The Grafana dashboard in `deploy/grafana/`: it parses, and every request its panels and
//! variables make names a path of the OpenAPI document with parameters that path takes.

use std::path::PathBuf;

use meshscope_query::openapi;
use serde_json::Value;

fn dashboard() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/grafana/meshscope-dashboard.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every Infinity query of the dashboard: the panels' targets and the variables' queries.
fn queries(dashboard: &Value) -> Vec<(String, Value)> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap_or_default().to_owned();
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push((title.clone(), target.clone()));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        let name = format!("variable {}", variable["name"]);
        queries.push((name, variable["query"]["infinityQuery"].clone()));
    }
    queries
}

/// The documented path `/a/{x}/b` matches `/a/$var/b` and `/a/literal/b`, segment by segment.
fn path_matches(documented: &str, requested: &str) -> bool {
    let documented: Vec<&str> = documented.split('/').collect();
    let requested: Vec<&str> = requested.split('/').collect();
    documented.len() == requested.len()
        && documented
            .iter()
            .zip(&requested)
            .all(|(d, r)| d == r || (d.starts_with('{') && !r.is_empty()))
}

#[test]
fn every_panel_request_is_a_documented_get_with_documented_parameters() {
    let dashboard = dashboard();
    let document = openapi::document_json();
    let paths = document["paths"].as_object().unwrap();
    let queries = queries(&dashboard);
    assert!(queries.len() >= 5, "{queries:?}");
    let mut node_graph_frames = Vec::new();
    for (owner, query) in &queries {
        assert_eq!(query["source"], "url", "{owner}");
        assert_eq!(query["url_options"]["method"], "GET", "{owner}");
        let url = query["url"].as_str().unwrap();
        let (path, query_string) = url.split_once('?').unwrap_or((url, ""));
        let (documented_path, item) = paths
            .iter()
            .find(|(documented, _)| path_matches(documented, path))
            .unwrap_or_else(|| panic!("{owner}: {path} is not in the OpenAPI document"));
        let operation = &item["get"];
        assert!(
            operation.is_object(),
            "{owner}: {documented_path} has no GET"
        );
        let parameters = operation["parameters"].as_array().unwrap();
        for pair in query_string.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let parameter = parameters
                .iter()
                .find(|p| p["name"] == name && p["in"] == "query")
                .unwrap_or_else(|| panic!("{owner}: {documented_path} takes no `{name}`"));
            if name == "format" {
                assert_eq!(value, "nodegraph", "{owner}");
                let _ = parameter;
            }
        }
        // Every column the query reads is a field of the documented answer, at the root the
        // query selects.
        let answer = &operation["responses"]["200"]["content"]["application/json"]["schema"];
        let root = query["root_selector"].as_str().unwrap_or_default();
        let fields = answer_fields(&document, answer, root);
        for column in query["columns"].as_array().unwrap() {
            let selector = column["selector"].as_str().unwrap();
            assert!(
                fields.iter().any(|f| f == selector),
                "{owner}: `{selector}` is not a field of {documented_path} `{root}` ({fields:?})"
            );
        }
        if let Some(frame) = query["format"]
            .as_str()
            .filter(|f| f.starts_with("node-graph"))
        {
            node_graph_frames.push(frame.to_owned());
        }
    }
    node_graph_frames.sort();
    assert_eq!(node_graph_frames, ["node-graph-edges", "node-graph-nodes"]);
}

/// The property names of the items under `root` in the answer `schema` (resolving `$ref`s,
/// `allOf` and `anyOf`).
fn answer_fields(document: &Value, schema: &Value, root: &str) -> Vec<String> {
    let mut fields = Vec::new();
    for object in objects(document, schema) {
        let properties = &object["properties"];
        if root.is_empty() {
            fields.extend(
                properties
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k.clone()),
            );
            continue;
        }
        let Some(items) = properties[root].get("items") else {
            continue;
        };
        for item in objects(document, items) {
            let names = item["properties"].as_object().into_iter().flatten();
            fields.extend(names.map(|(name, _)| name.clone()));
        }
    }
    fields
}

/// The object schemas `schema` stands for, through references and compositions.
fn objects(document: &Value, schema: &Value) -> Vec<Value> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        return objects(document, &document["components"]["schemas"][name]);
    }
    let mut found = Vec::new();
    for composition in ["allOf", "anyOf", "oneOf"] {
        for part in schema[composition].as_array().into_iter().flatten() {
            found.extend(objects(document, part));
        }
    }
    if schema.get("properties").is_some() {
        found.push(schema.clone());
    }
    found
}

#[test]
fn path_templates_match_segment_by_segment() {
    assert!(path_matches(
        "/api/v1/services/{id}",
        "/api/v1/services/$service"
    ));
    assert!(path_matches("/api/v1/topology", "/api/v1/topology"));
    assert!(!path_matches("/api/v1/services/{id}", "/api/v1/services"));
    assert!(!path_matches(
        "/api/v1/services/{id}",
        "/api/v1/services/x/instances"
    ));
    assert!(!path_matches("/api/v1/topology", "/api/v1/topologies"));
}
