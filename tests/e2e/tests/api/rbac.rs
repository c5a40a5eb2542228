//! The RBAC matrix of ARCHITECTURE.md, endpoint by endpoint, role by role.

use domain::{Permission, Role};
use plantline_e2e::{TestApp, TestContext};
use platform::ServiceName;
use reqwest::Method;
use serde_json::{Value, json};

/// Who calls.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Caller {
    Anonymous,
    As(Role),
}

/// One protected endpoint, the permission it needs, a request that is harmless when allowed,
/// and the exact status that request gets when allowed.
struct Endpoint {
    service: ServiceName,
    method: Method,
    path: String,
    body: Option<Value>,
    needs: Option<Permission>,
    allowed_status: u16,
}

#[tokio::test]
async fn every_protected_endpoint_answers_exactly_what_the_role_table_implies() {
    let ctx = TestContext::new().await;
    let auth = ctx.spawn(ServiceName::Auth).await;
    let query = ctx.spawn(ServiceName::QueryApi).await;
    let ingest = ctx.spawn(ServiceName::IngestApi).await;
    let missing = uuid::Uuid::new_v4();
    use Permission::*;
    let endpoints = vec![
        Endpoint {
            service: ServiceName::Auth,
            method: Method::GET,
            path: "/api/v1/auth/me".into(),
            body: None,
            needs: None,
            allowed_status: 200,
        },
        Endpoint {
            service: ServiceName::Auth,
            method: Method::GET,
            path: "/api/v1/users".into(),
            body: None,
            needs: Some(ReadUsers),
            allowed_status: 200,
        },
        Endpoint {
            service: ServiceName::Auth,
            method: Method::GET,
            path: format!("/api/v1/users/{missing}"),
            body: None,
            needs: Some(ReadUsers),
            allowed_status: 404,
        },
        // Invalid bodies: allowed callers get 400 and nothing changes.
        Endpoint {
            service: ServiceName::Auth,
            method: Method::POST,
            path: "/api/v1/users".into(),
            body: Some(json!({"username": "x", "password": "y", "role": "root"})),
            needs: Some(WriteUsers),
            allowed_status: 400,
        },
        Endpoint {
            service: ServiceName::Auth,
            method: Method::PATCH,
            path: format!("/api/v1/users/{missing}"),
            body: Some(json!({"is_active": true})),
            needs: Some(WriteUsers),
            allowed_status: 404,
        },
        Endpoint {
            service: ServiceName::Auth,
            method: Method::DELETE,
            path: format!("/api/v1/users/{missing}"),
            body: None,
            needs: Some(DeleteUsers),
            allowed_status: 404,
        },
        Endpoint {
            service: ServiceName::Auth,
            method: Method::GET,
            path: "/api/v1/gateways".into(),
            body: None,
            needs: Some(ReadUsers),
            allowed_status: 200,
        },
        Endpoint {
            service: ServiceName::Auth,
            method: Method::POST,
            path: "/api/v1/gateways".into(),
            body: Some(json!({"client_id": "!", "name": ""})),
            needs: Some(WriteUsers),
            allowed_status: 400,
        },
        Endpoint {
            service: ServiceName::Auth,
            method: Method::PATCH,
            path: format!("/api/v1/gateways/{missing}"),
            body: Some(json!({"name": "x"})),
            needs: Some(WriteUsers),
            allowed_status: 404,
        },
        Endpoint {
            service: ServiceName::Auth,
            method: Method::DELETE,
            path: format!("/api/v1/gateways/{missing}"),
            body: None,
            needs: Some(DeleteUsers),
            allowed_status: 404,
        },
        Endpoint {
            service: ServiceName::IngestApi,
            method: Method::POST,
            path: "/api/v1/data/ingest".into(),
            body: Some(
                json!({"gateway_id": "g", "timestamp": "2026-01-01T00:00:00Z", "batch": []}),
            ),
            needs: Some(WriteSensorData),
            allowed_status: 400,
        },
        Endpoint {
            service: ServiceName::QueryApi,
            method: Method::GET,
            path: "/api/v1/machines".into(),
            body: None,
            needs: Some(ReadMachines),
            allowed_status: 200,
        },
        Endpoint {
            service: ServiceName::QueryApi,
            method: Method::GET,
            path: format!("/api/v1/machines/{missing}"),
            body: None,
            needs: Some(ReadMachines),
            allowed_status: 404,
        },
        Endpoint {
            service: ServiceName::QueryApi,
            method: Method::POST,
            path: "/api/v1/machines".into(),
            body: Some(json!({"name": ""})),
            needs: Some(WriteMachines),
            allowed_status: 400,
        },
        Endpoint {
            service: ServiceName::QueryApi,
            method: Method::PATCH,
            path: format!("/api/v1/machines/{missing}"),
            body: Some(json!({"name": "x"})),
            needs: Some(WriteMachines),
            // No If-Match: refused before anything is looked up.
            allowed_status: 428,
        },
        Endpoint {
            service: ServiceName::QueryApi,
            method: Method::DELETE,
            path: format!("/api/v1/machines/{missing}"),
            body: None,
            needs: Some(DeleteMachines),
            allowed_status: 404,
        },
        Endpoint {
            service: ServiceName::QueryApi,
            method: Method::GET,
            path: format!("/api/v1/data/machine/{missing}?start_time=2026-01-01T00:00:00Z"),
            body: None,
            needs: Some(ReadSensorData),
            allowed_status: 404,
        },
        Endpoint {
            service: ServiceName::QueryApi,
            method: Method::GET,
            path: "/api/v1/data/latest".into(),
            body: None,
            needs: Some(ReadSensorData),
            allowed_status: 200,
        },
        Endpoint {
            service: ServiceName::QueryApi,
            method: Method::GET,
            path: format!("/api/v1/data/machine/{missing}/latest"),
            body: None,
            needs: Some(ReadSensorData),
            allowed_status: 404,
        },
        Endpoint {
            service: ServiceName::QueryApi,
            method: Method::GET,
            path: "/api/v1/alerts".into(),
            body: None,
            needs: Some(ReadSensorData),
            allowed_status: 200,
        },
        Endpoint {
            service: ServiceName::QueryApi,
            method: Method::POST,
            path: format!("/api/v1/alerts/{missing}/ack"),
            body: None,
            needs: Some(AcknowledgeAlerts),
            allowed_status: 404,
        },
        Endpoint {
            service: ServiceName::QueryApi,
            method: Method::GET,
            path: "/api/v1/audit".into(),
            body: None,
            needs: Some(ReadAudit),
            allowed_status: 200,
        },
        Endpoint {
            service: ServiceName::QueryApi,
            method: Method::GET,
            path: "/api/v1/config".into(),
            body: None,
            needs: Some(ReadConfig),
            allowed_status: 200,
        },
        Endpoint {
            service: ServiceName::QueryApi,
            method: Method::POST,
            path: "/api/v1/config/update".into(),
            body: Some(json!({"setting_name": "max_temperature_threshold", "setting_value": 81.5})),
            needs: Some(WriteConfig),
            allowed_status: 200,
        },
    ];

    let mut tokens = Vec::new();
    for role in Role::HUMAN {
        let user = ctx.create_user(role).await;
        tokens.push((Caller::As(role), Some(auth.token_for(&user).await)));
    }
    let gateway = ctx.create_gateway().await;
    tokens.push((
        Caller::As(Role::Gateway),
        Some(auth.gateway_token(&gateway).await),
    ));
    tokens.push((Caller::Anonymous, None));

    let app_for = |service: ServiceName| -> &TestApp {
        match service {
            ServiceName::Auth => &auth,
            ServiceName::IngestApi => &ingest,
            _ => &query,
        }
    };
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for endpoint in &endpoints {
        for (caller, token) in &tokens {
            let expected = match (caller, endpoint.needs) {
                (Caller::Anonymous, _) => 401,
                (Caller::As(_), None) => endpoint.allowed_status,
                (Caller::As(role), Some(permission)) if role.allows(permission) => {
                    endpoint.allowed_status
                }
                (Caller::As(_), Some(_)) => 403,
            };
            let mut request =
                app_for(endpoint.service).request(endpoint.method.clone(), &endpoint.path);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = &endpoint.body {
                request = request.json(body);
            }
            let status = request.send().await.unwrap().status().as_u16();
            checked += 1;
            if status != expected {
                mismatches.push(format!(
                    "{caller:?} {} {}: got {status}, expected {expected}",
                    endpoint.method, endpoint.path
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "RBAC mismatches:\n{}",
        mismatches.join("\n")
    );
    assert_eq!(checked, endpoints.len() * 5);
}

#[tokio::test]
async fn the_seed_flow_management_updates_config_and_others_are_refused() {
    let ctx = TestContext::new().await;
    let auth = ctx.spawn(ServiceName::Auth).await;
    let query = ctx.spawn(ServiceName::QueryApi).await;
    let update = json!({"setting_name": "max_temperature_threshold", "setting_value": 85.0});

    for role in [Role::Operator, Role::Supervisor] {
        let token = auth.token_for(&ctx.create_user(role).await).await;
        let response = query
            .request(Method::POST, "/api/v1/config/update")
            .bearer_auth(&token)
            .json(&update)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{role}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "forbidden");
        assert!(
            body["message"].as_str().unwrap().contains("write:config"),
            "{body}"
        );
    }

    let manager = ctx.create_user(Role::Management).await;
    let token = auth.token_for(&manager).await;
    let response = query
        .request(Method::POST, "/api/v1/config/update")
        .bearer_auth(&token)
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["updated"][0]["old_value"], 80.0);
    assert_eq!(body["updated"][0]["new_value"], 85.0);
    assert_eq!(body["updated"][0]["version"], 1);

    let config: Value = query.get_json("/api/v1/config", &token).await;
    let setting = config["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "max_temperature_threshold")
        .unwrap();
    assert_eq!(setting["value"], 85.0);
    assert_eq!(setting["default"], 80.0);
    assert_eq!(setting["updated_by"], manager.id.to_string());

    // Audited with who, what, before and after.
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use storage::schema::audit_log;
    let pool = ctx.pg_pool();
    let mut conn = platform::postgres::connection(&pool).await.unwrap();
    let (actor, action, before, after): (String, String, Option<Value>, Option<Value>) =
        audit_log::table
            .filter(audit_log::resource_type.eq("config"))
            .select((
                audit_log::actor_name,
                audit_log::action,
                audit_log::before,
                audit_log::after,
            ))
            .first(&mut conn)
            .await
            .unwrap();
    assert_eq!(actor, manager.username);
    assert_eq!(action, "config.update");
    assert_eq!(before, Some(json!({"max_temperature_threshold": 80.0})));
    assert_eq!(after, Some(json!({"max_temperature_threshold": 85.0})));
}

#[tokio::test]
async fn config_updates_refuse_unknown_names_wrong_types_and_out_of_range_values() {
    let ctx = TestContext::new().await;
    let auth = ctx.spawn(ServiceName::Auth).await;
    let query = ctx.spawn(ServiceName::QueryApi).await;
    let token = auth
        .token_for(&ctx.create_user(Role::Management).await)
        .await;
    let post = |body: Value| {
        query
            .request(Method::POST, "/api/v1/config/update")
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let response = post(json!({"settings": [
        {"setting_name": "flux_capacitor", "setting_value": 1},
        {"setting_name": "max_temperature_threshold", "setting_value": "hot"},
        {"setting_name": "inactivity_timeout", "setting_value": 5},
        {"setting_name": "max_pressure_threshold", "setting_value": 120.0}
    ]}))
    .await
    .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 3, "{body}");
    assert_eq!(errors[0]["field"], "settings[0].setting_name");
    assert_eq!(errors[1]["field"], "settings[1].setting_value");
    assert_eq!(errors[1]["error"], "must be a number");
    assert_eq!(errors[2]["error"], "must be between 60 and 604800");

    // Nothing of a refused batch is applied, not even its valid member.
    let config: Value = query.get_json("/api/v1/config", &token).await;
    let pressure = config["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "max_pressure_threshold")
        .unwrap()
        .clone();
    assert_eq!(pressure["value"], 150.0);

    let response =
        post(json!({"setting_name": "min_temperature_threshold", "setting_value": 95.0}))
            .await
            .unwrap();
    assert_eq!(response.status(), 400, "min above max is inconsistent");
    let body: Value = response.json().await.unwrap();
    assert!(
        body["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("max_temperature_threshold")
    );
}

#[tokio::test]
async fn without_redis_administration_fails_closed_and_everything_else_open() {
    let ctx = TestContext::new().await;
    let auth = ctx.spawn(ServiceName::Auth).await;
    let token = auth
        .token_for(&ctx.create_user(Role::Management).await)
        .await;

    let mut settings = ctx.settings.clone();
    settings.redis.url = secrecy::SecretString::from(format!(
        "redis://127.0.0.1:{}",
        plantline_e2e::closed_port()
    ));
    let query = ctx
        .spawn_with(ServiceName::QueryApi, settings.clone())
        .await;
    let auth_without_redis = ctx.spawn_with(ServiceName::Auth, settings).await;

    let config = query
        .request(Method::GET, "/api/v1/config")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(config.status(), 503, "administrative read fails closed");
    assert!(config.headers().get("retry-after").is_some());
    let users = auth_without_redis
        .request(Method::GET, "/api/v1/users")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(users.status(), 503);
    let me = auth_without_redis
        .request(Method::GET, "/api/v1/auth/me")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200, "non-administrative calls fail open");
    let metrics = auth_without_redis
        .get("/metrics")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("plantline_auth_revocations_unchecked_total{service=\"auth\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_setting_changed_through_query_api_applies_in_ingest_api_within_two_seconds() {
    let ctx = TestContext::new().await;
    let auth = ctx.spawn(ServiceName::Auth).await;
    let query = ctx.spawn(ServiceName::QueryApi).await;
    let ingest = ctx.spawn(ServiceName::IngestApi).await;
    let manager = auth
        .token_for(&ctx.create_user(Role::Management).await)
        .await;
    let machine = ctx.create_machine(domain::MachineStatus::Active).await;
    let two_readings = || {
        let ts = (chrono::Utc::now() - chrono::Duration::seconds(5)).to_rfc3339();
        json!({"gateway_id": "g", "timestamp": ts, "batch": [{"machine_id": machine, "readings": [
            {"timestamp": ts, "speed": 1.0}, {"timestamp": ts, "speed": 2.0}]}]})
    };
    let status = |body: Value| {
        let request = ingest
            .request(Method::POST, "/api/v1/data/ingest")
            .bearer_auth(&manager)
            .json(&body);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(two_readings()).await, 201);
    let changed = query
        .request(Method::POST, "/api/v1/config/update")
        .bearer_auth(&manager)
        .json(&json!({"setting_name": "ingest_max_readings_per_batch", "setting_value": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    let started = std::time::Instant::now();
    plantline_e2e::eventually(
        std::time::Duration::from_secs(2),
        "ingest applies the new limit",
        || async { (status(two_readings()).await == 413).then_some(()) },
    )
    .await;
    eprintln!("setting applied after {:?}", started.elapsed());
}
