//! The OpenAPI documents: generated from the handlers' annotations, naming exactly the routes
//! each service registers, served by every service, and committed as `proto-docs/openapi.json`.

use plantline_e2e::{TestContext, workspace_root};
use platform::ServiceName;
use platform::openapi::{COMMON_ROUTES, merged, operations, without_regex};
use std::collections::BTreeSet;
use utoipa::openapi::OpenApi;

type Routes = &'static [(&'static str, &'static str)];

fn services() -> Vec<(ServiceName, OpenApi, Routes)> {
    vec![
        (
            ServiceName::Auth,
            auth::routes::openapi(),
            auth::routes::ROUTES,
        ),
        (
            ServiceName::IngestApi,
            ingest_api::routes::openapi(),
            ingest_api::routes::ROUTES,
        ),
        (
            ServiceName::QueryApi,
            query_api::routes::openapi(),
            query_api::routes::ROUTES,
        ),
        (
            ServiceName::MqttBridge,
            mqtt_bridge::routes::openapi(),
            mqtt_bridge::routes::ROUTES,
        ),
    ]
}

#[test]
fn every_registered_route_is_documented_and_every_documented_route_is_registered() {
    for (service, doc, routes) in services() {
        let registered: BTreeSet<(String, String)> = routes
            .iter()
            .chain(COMMON_ROUTES)
            .map(|(method, path)| (method.to_string(), without_regex(path)))
            .collect();
        let documented: BTreeSet<(String, String)> = operations(&doc).into_iter().collect();
        let undocumented: Vec<_> = registered.difference(&documented).collect();
        let phantom: Vec<_> = documented.difference(&registered).collect();
        assert!(
            undocumented.is_empty() && phantom.is_empty(),
            "{}: registered but not documented {undocumented:?}; documented but not registered {phantom:?}",
            service.as_str()
        );
        assert!(registered.len() >= COMMON_ROUTES.len());
    }
}

#[test]
fn the_committed_merged_document_is_the_generated_one() {
    let documents = services().into_iter().map(|(_, doc, _)| doc).collect();
    let generated = serde_json::to_string_pretty(&merged(documents)).expect("JSON") + "\n";
    let path = workspace_root().join("proto-docs/openapi.json");
    if std::env::var_os("PLANTLINE_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("write proto-docs/openapi.json");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "proto-docs/openapi.json differs from what the handlers generate: run `make openapi` and commit it"
    );
    let parsed: serde_json::Value = serde_json::from_str(&committed).expect("valid JSON");
    assert_eq!(parsed["openapi"], "3.1.0");
    for path in [
        "/api/v1/data/ingest",
        "/api/v1/auth/login",
        "/api/v1/machines/{id}",
    ] {
        assert!(
            parsed["paths"][path].is_object(),
            "{path} is in the merged document"
        );
    }
}

#[tokio::test]
async fn each_service_serves_its_document_and_query_api_the_merged_one() {
    let ctx = TestContext::new().await;
    let query = ctx.spawn(ServiceName::QueryApi).await;
    let own: serde_json::Value = query.get("/openapi.json").await.json().await.unwrap();
    assert_eq!(
        own,
        serde_json::to_value(query_api::routes::openapi()).unwrap()
    );
    let all: serde_json::Value = query
        .get("/api/v1/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("proto-docs/openapi.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(all, committed);
    let ingest = ctx.spawn(ServiceName::IngestApi).await;
    let doc: serde_json::Value = ingest.get("/openapi.json").await.json().await.unwrap();
    assert!(doc["paths"]["/api/v1/data/ingest"]["post"].is_object());
}

#[test]
fn the_rbac_table_in_proto_docs_is_the_policy() {
    let text = std::fs::read_to_string(workspace_root().join("proto-docs/README.md")).unwrap();
    let roles = [
        domain::Role::Operator,
        domain::Role::Supervisor,
        domain::Role::Management,
        domain::Role::Gateway,
    ];
    let mut rows = 0;
    for line in text
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains(':'))
    {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let Ok(permission) = cells[0].parse::<domain::Permission>() else {
            continue;
        };
        rows += 1;
        for (role, cell) in roles.iter().zip(&cells[1..]) {
            assert_eq!(
                *cell == "✓",
                role.allows(permission),
                "proto-docs says {} {} {permission}",
                role.as_str(),
                if *cell == "✓" { "has" } else { "lacks" }
            );
        }
    }
    assert_eq!(
        rows,
        domain::Permission::ALL.len(),
        "one row per permission"
    );
}
