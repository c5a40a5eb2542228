//! A small plant for tests that need the whole read/write loop: auth, ingest-api and
//! query-api running, a gateway token and one token per human role.

use crate::{TestApp, TestContext, TestUser};
use domain::Role;
use platform::ServiceName;
use reqwest::Method;
use std::time::Instant;

/// The services and callers of one test.
pub struct Plant {
    /// The test's own databases and prefixes.
    pub ctx: TestContext,
    /// auth.
    pub auth: TestApp,
    /// ingest-api.
    pub ingest: TestApp,
    /// query-api.
    pub query: TestApp,
    /// A gateway's access token.
    pub gateway_token: String,
    /// An operator's access token.
    pub operator: String,
    /// A supervisor's access token.
    pub supervisor: String,
    /// A manager's access token.
    pub manager: String,
    /// The operator, supervisor and manager behind those tokens, in that order.
    pub people: [TestUser; 3],
}

impl Plant {
    /// Starts auth, ingest-api and query-api and logs everyone in.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Like [`start`](Self::start), with the services' settings adjusted first.
    pub async fn start_with(adjust: impl FnOnce(&mut platform::Settings)) -> Self {
        let mut ctx = TestContext::new().await;
        adjust(&mut ctx.settings);
        let auth = ctx.spawn(ServiceName::Auth).await;
        let gateway = ctx.create_gateway().await;
        let gateway_token = auth.gateway_token(&gateway).await;
        let mut tokens = Vec::new();
        let mut people = Vec::new();
        for role in [Role::Operator, Role::Supervisor, Role::Management] {
            let person = ctx.create_user(role).await;
            tokens.push(auth.token_for(&person).await);
            people.push(person);
        }
        let [operator, supervisor, manager] =
            <[String; 3]>::try_from(tokens).expect("three tokens");
        let ingest = ctx.spawn(ServiceName::IngestApi).await;
        let query = ctx.spawn(ServiceName::QueryApi).await;
        Self {
            people: <[TestUser; 3]>::try_from(people).expect("three people"),
            ctx,
            auth,
            ingest,
            query,
            gateway_token,
            operator,
            supervisor,
            manager,
        }
    }

    /// Posts one temperature reading taken `age_secs` ago through ingest-api (asserting 201);
    /// returns when it was sent.
    pub async fn post_temperature(
        &self,
        machine: &uuid::Uuid,
        temperature: f64,
        age_secs: i64,
    ) -> Instant {
        let at = (chrono::Utc::now() - chrono::Duration::seconds(age_secs))
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let body = serde_json::json!({"gateway_id": "gw", "timestamp": at, "batch": [
            {"machine_id": machine, "readings": [{"timestamp": at, "temperature": temperature}]}
        ]});
        let sent = Instant::now();
        let response = self
            .ingest
            .request(Method::POST, "/api/v1/data/ingest")
            .bearer_auth(&self.gateway_token)
            .json(&body)
            .send()
            .await
            .expect("ingest request");
        assert_eq!(response.status(), 201, "reading stored");
        sent
    }
}
