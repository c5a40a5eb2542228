//! The live stream for dashboards, as Server-Sent Events.
//!
//! `POST /api/v1/stream/ticket` (bearer token, read:sensor_data) returns a single-use ticket
//! valid for 30 s; `GET /api/v1/stream?ticket=…[&machine_id=…][&location=…][&factory_id=…]`
//! spends it and streams `reading` and `alert` events. A browser's `EventSource` cannot send
//! headers, and a long-lived token must not sit in a URL (proxy logs, history): the ticket is
//! the only credential a URL ever carries, and it is dead once used.

use crate::QueryState;
use crate::live::LiveEvent;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use deadpool_redis::redis;
use platform::ApiError;
use platform::auth::{Authenticated, require};
use platform::error::{FieldError, reject_if_any};
use serde::Deserialize;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;

const TICKET_TTL_SECS: u64 = 30;
const HEARTBEAT: Duration = Duration::from_secs(15);
/// Streams end after this long; the client reconnects with a fresh ticket (and its token
/// must still be valid to get one).
const MAX_STREAM: Duration = Duration::from_secs(15 * 60);

fn ticket_key(state: &QueryState, ticket: &str) -> String {
    state.redis.key(&format!("stream:ticket:{ticket}"))
}

/// A single-use ticket that opens one live stream within 30 s (EventSource cannot send a token).
#[utoipa::path(post, path = "/api/v1/stream/ticket", tag = "live", security(("bearer" = [])),
    responses(
        (status = 200, description = "`{ticket, expires_in: 30, url}`"),
        (status = 403, description = "Not read:sensor_data", body = platform::openapi::ErrorResponse),
        (status = 503, description = "Redis unavailable", body = platform::openapi::ErrorResponse)))]
pub async fn ticket(
    state: web::Data<QueryState>,
    caller: Authenticated<require::ReadSensorData>,
) -> Result<HttpResponse, ApiError> {
    use secrecy::ExposeSecret;
    let ticket = platform::password::generate_secret(32)
        .expose_secret()
        .to_owned();
    state
        .redis
        .query::<()>(
            redis::cmd("SET")
                .arg(ticket_key(&state, &ticket))
                .arg(caller.username.as_str())
                .arg("EX")
                .arg(TICKET_TTL_SECS),
        )
        .await
        .map_err(|err| {
            tracing::warn!(error = %err, "Redis lost: no stream ticket");
            ApiError::unavailable("live streams need Redis, which is unavailable; retry", 5)
        })?;
    Ok(HttpResponse::Ok().json(json!({
        "status": "success",
        "ticket": ticket,
        "expires_in": TICKET_TTL_SECS,
        "url": format!("/api/v1/stream?ticket={ticket}"),
    })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// From `POST /api/v1/stream/ticket`; required, single use.
    ticket: Option<String>,
    /// Only this machine.
    machine_id: Option<String>,
    /// Only this location.
    location: Option<String>,
    /// Only this factory.
    factory_id: Option<String>,
    /// For browsers: `EventSource` cannot set `Last-Event-ID` on a new connection, and each
    /// connection needs a new ticket, so the dashboard passes the id here. The header wins.
    last_event_id: Option<String>,
}

struct Filter {
    machine_id: Option<String>,
    location: Option<String>,
    factory_id: Option<String>,
}

impl Filter {
    fn matches(&self, event: &LiveEvent) -> bool {
        let accepts =
            |wanted: &Option<String>, actual: &str| wanted.as_deref().is_none_or(|w| w == actual);
        accepts(&self.machine_id, &event.machine_id)
            && accepts(&self.location, &event.location)
            && accepts(&self.factory_id, &event.factory_id)
    }
}

fn frame(event: &LiveEvent) -> Bytes {
    Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {}\n\n",
        event.id, event.kind, event.data
    ))
}

fn reset(reason: &str) -> Bytes {
    Bytes::from(format!(
        "event: reset\ndata: {}\n\n",
        json!({"reason": reason, "action": "reload current state from the REST API"})
    ))
}

/// Server-Sent Events: `reading`, `alert` and `reset` events as they are stored,
/// `: keep-alive` every 15 s; resumes after `Last-Event-ID` (header) or `last_event_id`.
#[utoipa::path(get, path = "/api/v1/stream", tag = "live", params(StreamQuery),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream"),
        (status = 400, description = "Bad machine_id or last_event_id", body = platform::openapi::ErrorResponse),
        (status = 401, description = "Missing, unknown, used or expired ticket", body = platform::openapi::ErrorResponse)))]
pub async fn stream(
    state: web::Data<QueryState>,
    req: HttpRequest,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let mut errors = Vec::new();
    if let Some(id) = &query.machine_id
        && id.parse::<uuid::Uuid>().is_err()
    {
        errors.push(FieldError::parameter("machine_id", "must be a UUID").with_value(id.as_str()));
    }
    let resume_from = match query.last_event_id.as_deref().map(str::parse::<u64>) {
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            errors.push(
                FieldError::parameter("last_event_id", "must be an event id from this stream")
                    .with_value(query.last_event_id.as_deref().unwrap_or_default()),
            );
            None
        }
        None => None,
    };
    reject_if_any("invalid stream parameters", errors)?;
    let Some(ticket) = query.ticket.filter(|t| !t.is_empty()) else {
        return Err(ApiError::unauthorized(
            "a stream needs a ticket: POST /api/v1/stream/ticket with your token first",
        ));
    };
    // GETDEL: a ticket opens one stream, once.
    let holder: Option<String> = state
        .redis
        .query(redis::cmd("GETDEL").arg(ticket_key(&state, &ticket)))
        .await
        .map_err(|_| {
            ApiError::unavailable("live streams need Redis, which is unavailable; retry", 5)
        })?;
    let Some(holder) = holder else {
        return Err(ApiError::unauthorized(
            "unknown, used or expired stream ticket",
        ));
    };
    let filter = Filter {
        machine_id: query.machine_id,
        location: query.location,
        factory_id: query.factory_id,
    };
    let (receiver, watcher) = state.live.subscribe();
    // The first stream after a quiet spell waits (about a second) until readings flow, so
    // everything stored after this answer reaches the client.
    if !state
        .live
        .wait_until_delivering(Duration::from_secs(3))
        .await
    {
        tracing::warn!("live readings are not flowing yet (Redis?); opening the stream anyway");
    }
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .or(resume_from);
    let mut first = std::collections::VecDeque::from([Bytes::from_static(b"retry: 2000\n\n")]);
    let mut newest_sent = 0;
    if let Some(last) = last_event_id {
        match state.live.since(last) {
            Some(missed) => {
                for event in missed.iter().filter(|e| filter.matches(e)) {
                    newest_sent = event.id;
                    first.push_back(frame(event));
                }
            }
            None => first.push_back(reset("too far behind to resume")),
        }
    }
    tracing::info!(user = %holder, "live stream opened");
    let started = Instant::now();
    let metrics = state.stream_lagged.clone();
    let body = futures_util::stream::unfold(
        (first, (receiver, watcher), filter, newest_sent),
        move |(mut pending, (mut receiver, watcher), filter, mut newest_sent)| {
            let metrics = metrics.clone();
            async move {
                loop {
                    if let Some(bytes) = pending.pop_front() {
                        return Some((
                            Ok::<_, actix_web::Error>(bytes),
                            (pending, (receiver, watcher), filter, newest_sent),
                        ));
                    }
                    if started.elapsed() > MAX_STREAM {
                        return None;
                    }
                    let next = tokio::time::timeout(HEARTBEAT, receiver.recv()).await;
                    let bytes = match next {
                        Err(_) => Bytes::from_static(b": keep-alive\n\n"),
                        Ok(Ok(event)) => {
                            if event.id <= newest_sent || !filter.matches(&event) {
                                continue;
                            }
                            newest_sent = event.id;
                            frame(&event)
                        }
                        Ok(Err(RecvError::Lagged(skipped))) => {
                            metrics.inc_by(skipped);
                            reset("the client fell behind; events were skipped")
                        }
                        Ok(Err(RecvError::Closed)) => return None,
                    };
                    return Some((
                        Ok(bytes),
                        (pending, (receiver, watcher), filter, newest_sent),
                    ));
                }
            }
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        // nginx: pass events through as they come.
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}
