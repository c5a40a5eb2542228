//! Logins, token contents, refresh rotation, logout, deactivation, throttling, gateways.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::Role;
use plantline_e2e::{TestApp, TestContext, eventually};
use platform::ServiceName;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn header_of(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

async fn status_with(app: &TestApp, method: Method, path: &str, token: &str) -> u16 {
    app.request(method, path)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn login_answers_the_contract_and_the_token_carries_every_claim() {
    let ctx = TestContext::new().await;
    let auth = ctx.spawn(ServiceName::Auth).await;
    let user = ctx.create_user(Role::Supervisor).await;

    let body = auth.login(&user).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert!(body["refresh_token"].as_str().unwrap().len() >= 40);
    assert_eq!(body["user"]["username"], user.username.as_str());
    assert_eq!(body["user"]["role"], "supervisor");
    assert_eq!(body["user"]["is_active"], true);
    assert!(body["user"]["last_login"].is_string());
    assert!(body["user"].get("password_hash").is_none());
    assert_eq!(
        body["user"]["permissions"],
        json!([
            "read:machines",
            "read:sensor_data",
            "write:sensor_data",
            "write:machines",
            "ack:alerts"
        ])
    );

    let token = body["access_token"].as_str().unwrap();
    let header = header_of(token);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], ctx.signing_key().public_key().kid());
    let claims = claims_of(token);
    for claim in [
        "sub",
        "username",
        "role",
        "permissions",
        "iss",
        "aud",
        "iat",
        "nbf",
        "exp",
        "jti",
        "sid",
    ] {
        assert!(claims.get(claim).is_some(), "missing {claim}: {claims}");
    }
    assert_eq!(claims["sub"], user.id.to_string());
    assert_eq!(claims["iss"], "plantline");
    assert_eq!(claims["aud"], "plantline-api");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        900
    );

    let me: Value = auth.get_json("/api/v1/auth/me", token).await;
    assert_eq!(me["user"]["id"], user.id.to_string());
}

#[tokio::test]
async fn unknown_users_and_wrong_passwords_get_the_same_answer_then_429() {
    let ctx = TestContext::new().await;
    let auth = ctx.spawn(ServiceName::Auth).await;
    let user = ctx.create_user(Role::Operator).await;

    let attempt = |username: String, password: &'static str| {
        let request = auth
            .request(Method::POST, "/api/v1/auth/login")
            .json(&json!({"username": username, "password": password}));
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let body: Value = response.json().await.unwrap();
            (status, retry_after, body)
        }
    };
    let (unknown_status, _, unknown_body) =
        attempt("nobody-here".to_owned(), "whatever-pass").await;
    let (wrong_status, _, wrong_body) = attempt(user.username.clone(), "whatever-pass").await;
    assert_eq!((unknown_status, wrong_status), (401, 401));
    assert_eq!(
        unknown_body, wrong_body,
        "no user enumeration through the message"
    );

    // Five failures per account (the default) lock it for the window, even with the right password.
    for _ in 0..4 {
        assert_eq!(attempt(user.username.clone(), "whatever-pass").await.0, 401);
    }
    let (status, retry_after, body) = attempt(user.username.clone(), "still-wrong").await;
    assert_eq!(status, 429, "{body}");
    assert!(retry_after.unwrap().parse::<u64>().unwrap() > 0);
    let right = auth
        .request(Method::POST, "/api/v1/auth/login")
        .json(&json!({"username": user.username, "password": user.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 429);
}

#[tokio::test]
async fn login_bodies_are_validated_as_json() {
    let ctx = TestContext::new().await;
    let auth = ctx.spawn(ServiceName::Auth).await;
    let send = |body: &'static str, content_type: &'static str| {
        auth.request(Method::POST, "/api/v1/auth/login")
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    assert_eq!(
        send("{\"username\":\"a\"}", "application/json")
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        send(
            "{\"username\":\"a\",\"password\":\"b\",\"admin\":true}",
            "application/json"
        )
        .await
        .unwrap()
        .status(),
        400,
        "unknown fields are refused"
    );
    assert_eq!(
        send("username=a&password=b", "text/plain")
            .await
            .unwrap()
            .status(),
        415
    );
    let response = send("{\"username\":\"\",\"password\":\"\"}", "application/json")
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"].as_array().unwrap().len(), 2, "{body}");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_session_everywhere() {
    let ctx = TestContext::new().await;
    let auth = ctx.spawn(ServiceName::Auth).await;
    let query = ctx.spawn(ServiceName::QueryApi).await;
    let manager = ctx.create_user(Role::Management).await;

    let first = auth.login(&manager).await;
    let refresh = |token: &str| {
        auth.request(Method::POST, "/api/v1/auth/refresh")
            .json(&json!({"refresh_token": token}))
            .send()
    };
    let original = first["refresh_token"].as_str().unwrap().to_owned();
    let rotated = refresh(&original).await.unwrap();
    assert_eq!(rotated.status(), 200);
    let second: Value = rotated.json().await.unwrap();
    let next = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(next, original);
    let access = second["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        claims_of(&access)["sid"],
        claims_of(first["access_token"].as_str().unwrap())["sid"]
    );
    assert_eq!(
        status_with(&query, Method::GET, "/api/v1/config", &access).await,
        200
    );

    // The old token again: someone else has it. Refused, and the whole family dies.
    assert_eq!(refresh(&original).await.unwrap().status(), 401);
    assert_eq!(
        refresh(&next).await.unwrap().status(),
        401,
        "the successor is revoked too"
    );
    // So do the session's access tokens, in another service, within a second.
    eventually(
        Duration::from_secs(1),
        "session revoked at query-api",
        || async {
            (status_with(&query, Method::GET, "/api/v1/config", &access).await == 401).then_some(())
        },
    )
    .await;
    // Another login is a new session and works.
    let fresh = auth.token_for(&manager).await;
    assert_eq!(
        status_with(&query, Method::GET, "/api/v1/config", &fresh).await,
        200
    );
}

#[tokio::test]
async fn logout_kills_the_access_token_in_other_services_within_a_second() {
    let ctx = TestContext::new().await;
    let auth = ctx.spawn(ServiceName::Auth).await;
    let query = ctx.spawn(ServiceName::QueryApi).await;
    let ingest = ctx.spawn(ServiceName::IngestApi).await;
    let ingest_status = |token: &str| {
        let request = ingest
            .request(Method::POST, "/api/v1/data/ingest")
            .bearer_auth(token)
            .json(&json!({}));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let manager = ctx.create_user(Role::Management).await;
    let login = auth.login(&manager).await;
    let access = login["access_token"].as_str().unwrap();
    let other_session = auth.token_for(&manager).await;
    assert_eq!(
        status_with(&query, Method::GET, "/api/v1/config", access).await,
        200
    );
    assert_eq!(
        ingest_status(access).await,
        400,
        "authenticated; the empty body is refused"
    );

    assert_eq!(
        status_with(&auth, Method::POST, "/api/v1/auth/logout", access).await,
        204
    );
    let started = std::time::Instant::now();
    eventually(
        Duration::from_secs(1),
        "logout visible at query-api and ingest-api",
        || async {
            (status_with(&query, Method::GET, "/api/v1/config", access).await == 401
                && ingest_status(access).await == 401)
                .then_some(())
        },
    )
    .await;
    eprintln!("logout propagated in {:?}", started.elapsed());
    assert_eq!(
        status_with(&auth, Method::GET, "/api/v1/auth/me", access).await,
        401
    );
    let refresh = auth
        .request(Method::POST, "/api/v1/auth/refresh")
        .json(&json!({"refresh_token": login["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        refresh.status(),
        401,
        "the session's refresh token died with it"
    );
    // Logging out one session leaves the user's other sessions alone.
    assert_eq!(
        status_with(&query, Method::GET, "/api/v1/config", &other_session).await,
        200
    );
}

#[tokio::test]
async fn deactivating_a_user_stops_their_tokens_and_logins() {
    let ctx = TestContext::new().await;
    let auth = ctx.spawn(ServiceName::Auth).await;
    let query = ctx.spawn(ServiceName::QueryApi).await;
    let admin = ctx.create_user(Role::Management).await;
    let victim = ctx.create_user(Role::Management).await;
    let admin_token = auth.token_for(&admin).await;
    let victim_token = auth.token_for(&victim).await;
    assert_eq!(
        status_with(&query, Method::GET, "/api/v1/config", &victim_token).await,
        200
    );

    let response = auth
        .request(Method::PATCH, &format!("/api/v1/users/{}", victim.id))
        .bearer_auth(&admin_token)
        .json(&json!({"is_active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    eventually(
        Duration::from_secs(2),
        "deactivation visible at query-api",
        || async {
            (status_with(&query, Method::GET, "/api/v1/config", &victim_token).await == 401)
                .then_some(())
        },
    )
    .await;
    let login = auth
        .request(Method::POST, "/api/v1/auth/login")
        .json(&json!({"username": victim.username, "password": victim.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 401);
    // The admin's own token is untouched.
    assert_eq!(
        status_with(&query, Method::GET, "/api/v1/config", &admin_token).await,
        200
    );
}

#[tokio::test]
async fn gateways_get_write_only_tokens_by_form_json_or_basic_auth() {
    let ctx = TestContext::new().await;
    let auth = ctx.spawn(ServiceName::Auth).await;
    let query = ctx.spawn(ServiceName::QueryApi).await;
    let gateway = ctx.create_gateway().await;

    let form_token = auth.gateway_token(&gateway).await;
    let claims = claims_of(&form_token);
    assert_eq!(claims["role"], "gateway");
    assert_eq!(claims["permissions"], json!(["write:sensor_data"]));
    assert_eq!(claims["sub"], gateway.id.to_string());
    assert!(claims.get("sid").is_none());

    let json_answer = auth
        .request(Method::POST, "/api/v1/auth/token")
        .json(&json!({"grant_type": "client_credentials", "client_id": gateway.client_id, "client_secret": gateway.secret}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_answer.status(), 200);
    let basic = auth
        .request(Method::POST, "/api/v1/auth/token")
        .basic_auth(&gateway.client_id, Some(&gateway.secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);

    let wrong = auth
        .request(Method::POST, "/api/v1/auth/token")
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &gateway.client_id),
            ("client_secret", "nope"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let bad_grant = auth
        .request(Method::POST, "/api/v1/auth/token")
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad_grant.status(), 400);
    let body: Value = bad_grant.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "grant_type");

    // A gateway may not read.
    assert_eq!(
        status_with(&query, Method::GET, "/api/v1/config", &form_token).await,
        403
    );
    // Deleting the gateway stops its token everywhere.
    let manager = ctx.create_user(Role::Management).await;
    let manager_token = auth.token_for(&manager).await;
    let me = status_with(&auth, Method::GET, "/api/v1/auth/me", &form_token).await;
    assert_eq!(me, 200);
    assert_eq!(
        status_with(
            &auth,
            Method::DELETE,
            &format!("/api/v1/gateways/{}", gateway.id),
            &manager_token
        )
        .await,
        204
    );
    eventually(Duration::from_secs(2), "gateway token revoked", || async {
        (status_with(&query, Method::GET, "/api/v1/config", &form_token).await == 401).then_some(())
    })
    .await;
}

#[tokio::test]
async fn tokens_verify_with_an_independent_library_given_only_the_jwks() {
    let python = std::env::var("PLANTLINE_TEST_PYTHON").expect(
        "PLANTLINE_TEST_PYTHON names a Python with PyJWT; run the tests through `make test`",
    );
    let ctx = TestContext::new().await;
    let auth = ctx.spawn(ServiceName::Auth).await;
    let user = ctx.create_user(Role::Operator).await;
    let token = auth.token_for(&user).await;
    let jwks_url = format!("{}/.well-known/jwks.json", auth.address);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../interop/verify_jwt.py");

    let jwks = auth.get("/.well-known/jwks.json").await;
    assert_eq!(jwks.headers()["cache-control"], "public, max-age=300");
    let jwks: Value = jwks.json().await.unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");

    let run = |token: String| {
        let (python, script, url) = (python.clone(), script.to_owned(), jwks_url.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(python)
                .arg(script)
                .arg(url)
                .arg(token)
                .output()
                .unwrap()
        })
    };
    let verified = run(token.clone()).await.unwrap();
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let claims: Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(claims["sub"], user.id.to_string());

    // The same library refuses a token whose payload was altered.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut altered = claims_of(&token);
    altered["role"] = json!("management");
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&altered).unwrap());
    let refused = run(parts.join(".")).await.unwrap();
    assert!(!refused.status.success());
}
