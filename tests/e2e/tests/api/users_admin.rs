//! Management of users and gateways: validation, conflicts, the last-manager guard, audit.

use domain::Role;
use plantline_e2e::{TestContext, TestGateway};
use platform::ServiceName;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn users_are_created_validated_changed_and_deleted_with_an_audit_trail() {
    let ctx = TestContext::new().await;
    let auth = ctx.spawn(ServiceName::Auth).await;
    let manager = ctx.create_user(Role::Management).await;
    let token = auth.token_for(&manager).await;
    let call = |method: Method, path: String, body: Option<Value>| {
        let mut request = auth.request(method, &path).bearer_auth(&token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };

    let weak = call(Method::POST, "/api/v1/users".into(), Some(json!({"username": "ann.lee", "email": "nope", "password": "short", "role": "operator"}))).await.unwrap();
    assert_eq!(weak.status(), 400);
    let body: Value = weak.json().await.unwrap();
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "password"], "{body}");

    let created = call(Method::POST, "/api/v1/users".into(), Some(json!({"username": "ann.lee", "email": "ann@plant.example", "password": "bright-lathe-42-turns", "role": "operator"}))).await.unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let id = created["user"]["id"].as_str().unwrap().to_owned();
    assert!(created["user"].get("password_hash").is_none());

    let duplicate = call(
        Method::POST,
        "/api/v1/users".into(),
        Some(json!({"username": "ANN.LEE", "password": "another-good-pass-9", "role": "operator"})),
    )
    .await
    .unwrap();
    assert_eq!(
        duplicate.status(),
        409,
        "usernames are unique regardless of case"
    );

    let promoted = call(
        Method::PATCH,
        format!("/api/v1/users/{id}"),
        Some(json!({"role": "supervisor"})),
    )
    .await
    .unwrap();
    assert_eq!(promoted.status(), 200);
    let promoted: Value = promoted.json().await.unwrap();
    assert_eq!(promoted["user"]["role"], "supervisor");

    let login = auth
        .request(Method::POST, "/api/v1/auth/login")
        .json(&json!({"username": "ann.lee", "password": "bright-lathe-42-turns"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);

    let listed: Value = call(Method::GET, "/api/v1/users?limit=1".into(), None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["users"].as_array().unwrap().len(), 1);
    assert_eq!(listed["pagination"]["total"], 2);
    let bad_page = call(Method::GET, "/api/v1/users?limit=0&offset=-1".into(), None)
        .await
        .unwrap();
    assert_eq!(bad_page.status(), 400);
    let bad_page: Value = bad_page.json().await.unwrap();
    assert_eq!(bad_page["errors"].as_array().unwrap().len(), 2);

    assert_eq!(
        call(Method::DELETE, format!("/api/v1/users/{id}"), None)
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        call(Method::GET, format!("/api/v1/users/{id}"), None)
            .await
            .unwrap()
            .status(),
        404
    );

    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use storage::schema::audit_log;
    let pool = ctx.pg_pool();
    let mut conn = platform::postgres::connection(&pool).await.unwrap();
    type AuditRow = (String, Option<String>, Option<Value>, Option<String>);
    let entries: Vec<AuditRow> = audit_log::table
        .filter(audit_log::resource_type.eq("user"))
        .order(audit_log::id.asc())
        .select((
            audit_log::action,
            audit_log::resource_id,
            audit_log::after,
            audit_log::request_id,
        ))
        .load(&mut conn)
        .await
        .unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(actions, ["user.create", "user.update", "user.delete"]);
    assert!(
        entries
            .iter()
            .all(|e| e.1.as_deref() == Some(id.as_str()) && e.3.is_some())
    );
    let all_text = serde_json::to_string(&entries).unwrap();
    assert!(!all_text.contains("argon2"), "no hashes in the audit log");
}

#[tokio::test]
async fn the_last_active_manager_cannot_be_demoted_deactivated_or_deleted() {
    let ctx = TestContext::new().await;
    let auth = ctx.spawn(ServiceName::Auth).await;
    let manager = ctx.create_user(Role::Management).await;
    let token = auth.token_for(&manager).await;
    for (method, body) in [
        (Method::PATCH, Some(json!({"role": "operator"}))),
        (Method::PATCH, Some(json!({"is_active": false}))),
        (Method::DELETE, None),
    ] {
        let mut request = auth
            .request(method.clone(), &format!("/api/v1/users/{}", manager.id))
            .bearer_auth(&token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 409, "{method}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "last_manager");
    }
}

#[tokio::test]
async fn a_created_gateway_shows_its_secret_once_and_can_get_tokens() {
    let ctx = TestContext::new().await;
    let auth = ctx.spawn(ServiceName::Auth).await;
    let token = auth
        .token_for(&ctx.create_user(Role::Management).await)
        .await;
    let created = auth
        .request(Method::POST, "/api/v1/gateways")
        .bearer_auth(&token)
        .json(&json!({"client_id": "hall-2-gw", "name": "Hall 2 gateway"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let gateway = TestGateway {
        id: created["gateway"]["id"].as_str().unwrap().parse().unwrap(),
        client_id: "hall-2-gw".to_owned(),
        secret: created["client_secret"].as_str().unwrap().to_owned(),
    };
    assert!(!auth.gateway_token(&gateway).await.is_empty());

    let listed: Value = auth.get_json("/api/v1/gateways", &token).await;
    let text = listed.to_string();
    assert!(text.contains("hall-2-gw"));
    assert!(
        !text.contains(&gateway.secret),
        "the secret is never shown again"
    );

    let deactivated = auth
        .request(Method::PATCH, &format!("/api/v1/gateways/{}", gateway.id))
        .bearer_auth(&token)
        .json(&json!({"is_active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(deactivated.status(), 200);
    let refused = auth
        .request(Method::POST, "/api/v1/auth/token")
        .basic_auth(&gateway.client_id, Some(&gateway.secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
}
