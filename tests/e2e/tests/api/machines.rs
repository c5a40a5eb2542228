//! The machine registry: CRUD, validation, conflicts, ETags, cache invalidation, audit.

use domain::Role;
use plantline_e2e::{TestApp, TestContext};
use platform::ServiceName;
use reqwest::Method;
use serde_json::{Value, json};

struct Rig {
    ctx: TestContext,
    auth: TestApp,
    query: TestApp,
    token: String,
}

async fn rig(role: Role) -> Rig {
    let ctx = TestContext::new().await;
    let auth = ctx.spawn(ServiceName::Auth).await;
    let query = ctx.spawn(ServiceName::QueryApi).await;
    let token = auth.token_for(&ctx.create_user(role).await).await;
    Rig {
        ctx,
        auth,
        query,
        token,
    }
}

impl Rig {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        if_match: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.query.request(method, path).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(etag) = if_match {
            request = request.header("if-match", etag);
        }
        request.send().await.unwrap()
    }
}

#[tokio::test]
async fn machines_are_registered_listed_filtered_and_validated() {
    let rig = rig(Role::Supervisor).await;
    let created = rig.call(Method::POST, "/api/v1/machines", Some(json!({"name": "Press 12", "location": "Hall 4", "sensor_type": "pressure", "factory_id": "B"})), None).await;
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["etag"], "\"v1\"");
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["machine"]["status"], "active");
    assert_eq!(
        location,
        format!(
            "/api/v1/machines/{}",
            created["machine"]["id"].as_str().unwrap()
        )
    );
    rig.call(Method::POST, "/api/v1/machines", Some(json!({"name": "Lathe 3", "location": "Hall 1", "sensor_type": "speed", "status": "maintenance"})), None).await;

    let duplicate = rig.call(Method::POST, "/api/v1/machines", Some(json!({"name": "press 12", "location": "Hall 9", "sensor_type": "multi", "factory_id": "B"})), None).await;
    assert_eq!(
        duplicate.status(),
        409,
        "same name (any case) in the same factory"
    );
    let other_factory = rig.call(Method::POST, "/api/v1/machines", Some(json!({"name": "Press 12", "location": "Hall 1", "sensor_type": "multi", "factory_id": "A"})), None).await;
    assert_eq!(other_factory.status(), 201);

    let invalid = rig.call(Method::POST, "/api/v1/machines", Some(json!({"name": " ", "sensor_type": "laser\\", "status": "running", "factory_id": "a/b"})), None).await;
    assert_eq!(invalid.status(), 400);
    let body: Value = invalid.json().await.unwrap();
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["name", "sensor_type", "status", "factory_id", "location"]
    );
    // Line protocol cannot carry a tag value ending in a backslash: refused up front.
    let unstorable = rig
        .call(
            Method::POST,
            "/api/v1/machines",
            Some(json!({"name": "Drill 1", "location": "Hall 1\\"})),
            None,
        )
        .await;
    assert_eq!(unstorable.status(), 400);
    let body: Value = unstorable.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "location");

    let listed: Value = rig
        .call(Method::GET, "/api/v1/machines?factory_id=B", None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["machines"].as_array().unwrap().len(), 1);
    let listed: Value = rig
        .call(
            Method::GET,
            "/api/v1/machines?status=maintenance&limit=10",
            None,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["machines"][0]["name"], "Lathe 3");
    assert_eq!(listed["pagination"]["total"], 1);
    let paged: Value = rig
        .call(Method::GET, "/api/v1/machines?limit=2", None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(paged["pagination"]["total"], 3);
    assert_eq!(paged["pagination"]["has_more"], true);
    let bad = rig
        .call(
            Method::GET,
            "/api/v1/machines?status=melting&limit=0",
            None,
            None,
        )
        .await;
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["errors"].as_array().unwrap().len(), 2);
    assert_eq!(
        rig.call(
            Method::GET,
            &format!("/api/v1/machines/{}", uuid::Uuid::new_v4()),
            None,
            None
        )
        .await
        .status(),
        404
    );
    assert_eq!(
        rig.call(Method::GET, "/api/v1/machines/not-a-uuid", None, None)
            .await
            .status(),
        400
    );
}

#[tokio::test]
async fn patch_needs_the_current_etag_so_edits_never_overwrite_silently() {
    let rig = rig(Role::Supervisor).await;
    let created: Value = rig
        .call(
            Method::POST,
            "/api/v1/machines",
            Some(json!({"name": "Mill 7", "location": "Hall 2", "sensor_type": "multi"})),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let path = format!(
        "/api/v1/machines/{}",
        created["machine"]["id"].as_str().unwrap()
    );

    assert_eq!(
        rig.call(
            Method::PATCH,
            &path,
            Some(json!({"location": "Hall 3"})),
            None
        )
        .await
        .status(),
        428
    );
    let first = rig
        .call(
            Method::PATCH,
            &path,
            Some(json!({"location": "Hall 3"})),
            Some("\"v1\""),
        )
        .await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["etag"], "\"v2\"");
    // A second supervisor still holding v1 is refused, and told the current version.
    let stale = rig
        .call(
            Method::PATCH,
            &path,
            Some(json!({"location": "Hall 5"})),
            Some("\"v1\""),
        )
        .await;
    assert_eq!(stale.status(), 412);
    let body: Value = stale.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("\"v2\""));
    let now: Value = rig
        .call(Method::GET, &path, None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(now["machine"]["location"], "Hall 3");
    assert_eq!(
        rig.call(
            Method::PATCH,
            &path,
            Some(json!({"status": "broken"})),
            Some("\"v2\"")
        )
        .await
        .status(),
        400
    );
    assert_eq!(
        rig.call(Method::PATCH, &path, Some(json!({})), Some("\"v2\""))
            .await
            .status(),
        400
    );
}

#[tokio::test]
async fn a_status_change_reaches_the_ingest_path_at_once() {
    let rig = rig(Role::Management).await;
    let ingest = rig.ctx.spawn(ServiceName::IngestApi).await;
    let gateway = rig
        .auth
        .gateway_token(&rig.ctx.create_gateway().await)
        .await;
    let created: Value = rig
        .call(
            Method::POST,
            "/api/v1/machines",
            Some(json!({"name": "Oven 1", "location": "Hall 6", "sensor_type": "temperature"})),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let id = created["machine"]["id"].as_str().unwrap().to_owned();
    let send = || {
        let ts = (chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339();
        ingest
            .request(Method::POST, "/api/v1/data/ingest")
            .bearer_auth(&gateway)
            .json(&json!({"gateway_id": "g", "timestamp": ts, "batch": [{"machine_id": id, "readings": [{"timestamp": ts, "temperature": 70.0}]}]}))
            .send()
    };
    assert_eq!(send().await.unwrap().status(), 201, "cached as active now");
    let patched = rig
        .call(
            Method::PATCH,
            &format!("/api/v1/machines/{id}"),
            Some(json!({"status": "inactive"})),
            Some("\"v1\""),
        )
        .await;
    assert_eq!(patched.status(), 200);
    // No waiting: the registry write dropped the cached entry before answering.
    let refused = send().await.unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("inactive")
    );

    assert_eq!(
        rig.call(
            Method::DELETE,
            &format!("/api/v1/machines/{id}"),
            None,
            None
        )
        .await
        .status(),
        204
    );
    let gone = send().await.unwrap();
    let body: Value = gone.json().await.unwrap();
    assert!(
        body["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("unknown machine")
    );
}

#[tokio::test]
async fn registry_changes_are_audited_and_readable_by_management() {
    let rig = rig(Role::Management).await;
    let created: Value = rig
        .call(
            Method::POST,
            "/api/v1/machines",
            Some(json!({"name": "Saw 2", "location": "Hall 1", "sensor_type": "speed"})),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let id = created["machine"]["id"].as_str().unwrap().to_owned();
    rig.call(
        Method::PATCH,
        &format!("/api/v1/machines/{id}"),
        Some(json!({"name": "Saw 2b"})),
        Some("\"v1\""),
    )
    .await;
    rig.call(
        Method::DELETE,
        &format!("/api/v1/machines/{id}"),
        None,
        None,
    )
    .await;

    let audit: Value = rig
        .call(
            Method::GET,
            &format!("/api/v1/audit?resource_type=machine&resource_id={id}"),
            None,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["machine.delete", "machine.update", "machine.create"]
    );
    assert_eq!(audit["entries"][1]["before"]["name"], "Saw 2");
    assert_eq!(audit["entries"][1]["after"]["name"], "Saw 2b");
    assert!(audit["entries"][0]["request_id"].is_string());
    assert_eq!(audit["pagination"]["total"], 3);
}
