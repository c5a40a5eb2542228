//! `/api/v1/config`: typed, versioned, audited system settings.

use crate::QueryState;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use domain::settings::{SETTINGS, SettingKind, SettingValue, check_consistency, spec};
use platform::ApiError;
use platform::auth::{Authenticated, require};
use platform::error::FieldError;
use platform::openapi::Success;
use platform::postgres::connection;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use storage::audit::{self, Actor, Change};
use storage::settings;
use uuid::Uuid;

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
    Batch { settings: Vec<SettingChange> },
    /// `{"setting_name": .., "setting_value": ..}`
    Single(SettingChange),
}

/// Every setting and the sum of their versions.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConfigAnswer {
    status: Success,
    /// The sum of every setting's version: grows with every change.
    version: i64,
    settings: Vec<SettingState>,
}

/// One setting as it stands.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SettingState {
    name: &'static str,
    /// In effect now: the stored value, or the default.
    value: Option<Value>,
    default: Value,
    /// `{type: float|integer|boolean, min, max}`.
    #[schema(value_type = Object)]
    kind: SettingKind,
    unit: &'static str,
    description: &'static str,
    /// 0 while never changed.
    version: i64,
    /// Null while never changed.
    updated_at: Option<DateTime<Utc>>,
    /// The user who last changed it.
    updated_by: Option<Uuid>,
}

/// What a change did.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConfigUpdated {
    status: Success,
    #[schema(example = "Configuration updated successfully")]
    message: &'static str,
    /// One per change, in the order sent.
    updated: Vec<SettingUpdate>,
    /// The seed's answer to a single change (absent for a batch).
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_setting: Option<UpdatedSetting>,
}

/// One applied change.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SettingUpdate {
    setting_name: &'static str,
    /// Null when the setting had no value before.
    old_value: Option<Value>,
    new_value: Value,
    version: i64,
    updated_at: DateTime<Utc>,
}

/// A single change in the seed's words.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UpdatedSetting {
    name: &'static str,
    value: Value,
    updated_at: DateTime<Utc>,
    /// The username of who changed it.
    updated_by: String,
}

/// Every setting with its value, default, kind, bounds, unit and version.
#[utoipa::path(get, path = "/api/v1/config", tag = "settings", security(("bearer" = [])),
    responses(
        (status = 200, body = ConfigAnswer, description = "Every setting, in registry order"),
        (status = 401, description = "No valid token", body = platform::openapi::ErrorResponse),
        (status = 403, description = "Not read:config (management)", body = platform::openapi::ErrorResponse)))]
pub async fn show(
    state: web::Data<QueryState>,
    _caller: Authenticated<require::ReadConfig>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = connection(&state.pg).await?;
    let stored = settings::load_all(&mut conn).await?;
    let version: i64 = stored.values().map(|s| s.version).sum();
    let settings = SETTINGS
        .iter()
        .map(|spec| {
            let row = stored.get(spec.name);
            SettingState {
                name: spec.name,
                value: settings::effective(&stored, spec.name).map(|v| v.to_json()),
                default: spec.default.to_json(),
                kind: spec.kind,
                unit: spec.unit,
                description: spec.description,
                version: row.map(|r| r.version).unwrap_or(0),
                updated_at: row.map(|r| r.updated_at),
                updated_by: row.and_then(|r| r.updated_by),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(ConfigAnswer {
        status: Success::Success,
        version,
        settings,
    }))
}

/// Checks every change against its setting's kind and bounds, reporting each problem.
fn parse_changes(changes: &[SettingChange]) -> Result<Vec<(&'static str, SettingValue)>, ApiError> {
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
    Ok(parsed)
}

/// Stores the changes, audited, in one transaction, once the result is consistent.
async fn apply(
    state: &QueryState,
    actor: Actor,
    parsed: Vec<(&'static str, SettingValue)>,
) -> Result<Vec<SettingUpdate>, ApiError> {
    let mut conn = connection(&state.pg).await?;
    conn.transaction::<_, ApiError, _>(async move |conn| {
        let stored = settings::load_all(conn).await?;
        let effective = |name: &str| {
            parsed
                .iter()
                .rev()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .or_else(|| settings::effective(&stored, name))
        };
        if let Err((name, err)) = check_consistency(effective) {
            return Err(ApiError::validation(
                "invalid settings",
                vec![FieldError::field(name, err.to_string())],
            ));
        }
        let mut updated = Vec::new();
        for (name, value) in &parsed {
            let before = settings::effective(&stored, name).map(|v| v.to_json());
            let row = settings::upsert(conn, name, value, actor.id).await?;
            audit::record(
                conn,
                &actor,
                Change::of("config.update", "config", *name)
                    .before(before.clone().map(|v| json!({ *name: v })))
                    .after(json!({ *name: row.value })),
            )
            .await?;
            updated.push(SettingUpdate {
                setting_name: name,
                old_value: before,
                new_value: row.value,
                version: row.version,
                updated_at: row.updated_at,
            });
        }
        Ok(updated)
    })
    .await
}

/// Changes settings (audited); every service applies them within a second, without restart.
#[utoipa::path(post, path = "/api/v1/config/update", tag = "settings", security(("bearer" = [])),
    request_body = UpdateRequest,
    responses(
        (status = 200, body = ConfigUpdated, description = "Every change applied"),
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
    let parsed = parse_changes(&changes)?;
    let actor = Actor::from_request(&caller, &req);
    let updated = apply(&state, actor, parsed).await?;
    let names: Vec<&str> = updated.iter().map(|u| u.setting_name).collect();
    tracing::info!(settings = ?names, by = %caller.username, "settings changed");
    // The seed's single-setting answer names the change and who made it.
    let updated_setting = updated
        .first()
        .filter(|_| single)
        .map(|change| UpdatedSetting {
            name: change.setting_name,
            value: change.new_value.clone(),
            updated_at: change.updated_at,
            updated_by: caller.username.clone(),
        });
    Ok(HttpResponse::Ok().json(ConfigUpdated {
        status: Success::Success,
        message: "Configuration updated successfully",
        updated,
        updated_setting,
    }))
}
