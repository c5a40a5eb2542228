//! `/api/v1/config`: typed, versioned, audited system settings.

use crate::QueryState;
use actix_web::{HttpRequest, HttpResponse, web};
use diesel_async::AsyncConnection;
use domain::settings::{SETTINGS, SettingValue, check_consistency, spec};
use platform::ApiError;
use platform::audit::{self, Actor, Change};
use platform::auth::{Authenticated, require};
use platform::error::FieldError;
use platform::postgres::connection;
use platform::settings_store;
use serde::Deserialize;
use serde_json::{Value, json};

/// One change: the seed's `{setting_name, setting_value}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingChange {
    /// A name from `GET /api/v1/config`.
    #[schema(example = "max_temperature_threshold")]
    setting_name: String,
    /// Of the setting's kind, within its bounds.
    #[schema(value_type = Object, example = 85.0)]
    setting_value: Value,
}

/// A single change, or several applied together (all or nothing).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum UpdateRequest {
    /// `{"settings": [{setting_name, setting_value}, ...]}`
    Batch {
        /// The changes.
        settings: Vec<SettingChange>,
    },
    /// `{"setting_name": .., "setting_value": ..}`
    Single(SettingChange),
}

/// Every setting with its value, default, kind, bounds, unit and version.
#[utoipa::path(get, path = "/api/v1/config", tag = "settings", security(("bearer" = [])),
    responses(
        (status = 200, description = "`{status, version, settings: [{name, value, default, kind, unit, description, version, updated_at, updated_by}]}`"),
        (status = 401, description = "No valid token", body = platform::openapi::ErrorResponse),
        (status = 403, description = "Not read:config (management)", body = platform::openapi::ErrorResponse)))]
pub async fn show(
    state: web::Data<QueryState>,
    _caller: Authenticated<require::ReadConfig>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = connection(&state.pg).await?;
    let stored = settings_store::load_all(&mut conn).await?;
    let version: i64 = stored.values().map(|s| s.version).sum();
    let settings: Vec<Value> = SETTINGS
        .iter()
        .map(|spec| {
            let row = stored.get(spec.name);
            json!({
                "name": spec.name,
                "value": settings_store::effective(&stored, spec.name).map(|v| v.to_json()),
                "default": spec.default.to_json(),
                "kind": spec.kind,
                "unit": spec.unit,
                "description": spec.description,
                "version": row.map(|r| r.version).unwrap_or(0),
                "updated_at": row.map(|r| r.updated_at),
                "updated_by": row.and_then(|r| r.updated_by),
            })
        })
        .collect();
    Ok(HttpResponse::Ok()
        .json(json!({"status": "success", "version": version, "settings": settings})))
}

/// Changes settings (audited); every service applies them within a second, without restart.
#[utoipa::path(post, path = "/api/v1/config/update", tag = "settings", security(("bearer" = [])),
    request_body = UpdateRequest,
    responses(
        (status = 200, description = "`{status, message, updated: [{setting_name, old_value, new_value, version, updated_at}]}`; a single change also answers the seed's `updated_setting: {name, value, updated_at, updated_by}` (username)"),
        (status = 400, description = "Unknown name, wrong type or out of bounds, per field", body = platform::openapi::ErrorResponse),
        (status = 401, description = "No valid token", body = platform::openapi::ErrorResponse),
        (status = 403, description = "Not write:config (management)", body = platform::openapi::ErrorResponse),
        (status = 503, description = "Token revocations not in sync: administrative calls fail closed", body = platform::openapi::ErrorResponse)))]
pub async fn update(
    state: web::Data<QueryState>,
    caller: Authenticated<require::WriteConfig>,
    req: HttpRequest,
    body: platform::Json<UpdateRequest>,
) -> Result<HttpResponse, ApiError> {
    let (changes, single) = match body.into_inner() {
        UpdateRequest::Single(change) => (vec![change], true),
        UpdateRequest::Batch { settings } => (settings, false),
    };
    if changes.is_empty() || changes.len() > 100 {
        return Err(ApiError::validation(
            "invalid request body",
            vec![FieldError::field("settings", "must hold 1 to 100 changes")],
        ));
    }
    let mut errors = Vec::new();
    let mut parsed: Vec<(&'static str, SettingValue)> = Vec::new();
    for (i, change) in changes.iter().enumerate() {
        let path = |field: &str| {
            if changes.len() == 1 {
                field.to_owned()
            } else {
                format!("settings[{i}].{field}")
            }
        };
        let Some(spec) = spec(&change.setting_name) else {
            errors.push(
                FieldError::field(path("setting_name"), "unknown setting")
                    .with_value(change.setting_name.as_str()),
            );
            continue;
        };
        match spec.parse(&change.setting_value) {
            Ok(value) => parsed.push((spec.name, value)),
            Err(err) => errors.push(
                FieldError::field(path("setting_value"), err.to_string())
                    .with_value(change.setting_value.clone()),
            ),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation("invalid settings", errors));
    }

    let actor = Actor::from_request(&caller, &req);
    let mut conn = connection(&state.pg).await?;
    let updated = conn
        .transaction::<_, ApiError, _>(async move |conn| {
            let stored = settings_store::load_all(conn).await?;
            let effective = |name: &str| {
                parsed
                    .iter()
                    .rev()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| *v)
                    .or_else(|| settings_store::effective(&stored, name))
            };
            if let Err((name, err)) = check_consistency(effective) {
                return Err(ApiError::validation(
                    "invalid settings",
                    vec![FieldError::field(name, err.to_string())],
                ));
            }
            let mut updated = Vec::new();
            for (name, value) in &parsed {
                let before = settings_store::effective(&stored, name).map(|v| v.to_json());
                let row = settings_store::upsert(conn, name, value, actor.id).await?;
                audit::record(
                    conn,
                    &actor,
                    Change::of("config.update", "config", *name)
                        .before(before.clone().map(|v| json!({ *name: v })))
                        .after(json!({ *name: row.value })),
                )
                .await?;
                updated.push(json!({
                    "setting_name": name,
                    "old_value": before,
                    "new_value": row.value,
                    "version": row.version,
                    "updated_at": row.updated_at,
                }));
            }
            Ok(updated)
        })
        .await?;
    let names: Vec<&str> = updated
        .iter()
        .filter_map(|u| u["setting_name"].as_str())
        .collect();
    tracing::info!(settings = ?names, by = %caller.username, "settings changed");
    let mut answer = json!({
        "status": "success",
        "message": "Configuration updated successfully",
        "updated": updated,
    });
    // The seed's single-setting answer names the change and who made it.
    if single && let Some(change) = updated.first() {
        answer["updated_setting"] = json!({
            "name": change["setting_name"],
            "value": change["new_value"],
            "updated_at": change["updated_at"],
            "updated_by": caller.username,
        });
    }
    Ok(HttpResponse::Ok().json(answer))
}
