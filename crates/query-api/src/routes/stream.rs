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
use platform::ApiError;
use platform::auth::revocation::RevocationState;
use platform::auth::{Authenticated, Principal, TokenVerifier, require};
use platform::error::ErrorCode;
use platform::error::{FieldError, reject_if_any};
use platform::openapi::Success;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use storage::tickets::{self, TicketError};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

/// Streams end after this long; the client reconnects with a fresh ticket (and its token
/// must still be valid to get one).
const MAX_STREAM: Duration = Duration::from_secs(15 * 60);

/// Who a ticket was issued to: enough of the token to end the stream when it is revoked.
#[derive(Serialize, Deserialize)]
struct TicketHolder {
    subject: Uuid,
    username: String,
    jti: String,
    session: Option<Uuid>,
    issued_at: i64,
}

impl TicketHolder {
    fn of(principal: &Principal) -> Self {
        Self {
            subject: principal.subject,
            username: principal.username.clone(),
            jti: principal.jti.clone(),
            session: principal.session,
            issued_at: principal.issued_at,
        }
    }

    /// Revoked as far as this replica's mirror knows (a stale mirror is trusted: reads
    /// fail open while Redis is away, as everywhere else).
    fn is_revoked(&self, verifier: Option<&TokenVerifier>) -> bool {
        let Some(verifier) = verifier else {
            return false;
        };
        let (RevocationState::Fresh(view) | RevocationState::Stale(view)) =
            verifier.revocations().state();
        view.is_revoked(
            &self.jti,
            self.session.as_ref(),
            &self.subject,
            self.issued_at,
        )
    }
}

/// Open streams per user on this replica, and their total as a gauge.
#[derive(Clone)]
pub struct StreamSlots {
    open: Arc<Mutex<HashMap<Uuid, usize>>>,
    gauge: prometheus::IntGauge,
}

/// One user's open stream; gives its slot back when the stream ends or the client leaves.
struct StreamSlot {
    slots: StreamSlots,
    user: Uuid,
}

impl StreamSlots {
    /// No stream open yet; `gauge` follows the total.
    pub fn new(gauge: prometheus::IntGauge) -> Self {
        Self {
            open: Default::default(),
            gauge,
        }
    }

    fn take(&self, user: Uuid, max: usize) -> Option<StreamSlot> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(user).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        self.gauge.inc();
        Some(StreamSlot {
            slots: self.clone(),
            user,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.slots.gauge.dec();
        if let Some(count) = open.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.user);
            }
        }
    }
}

/// A ticket for one live stream.
#[derive(Serialize, utoipa::ToSchema)]
pub struct StreamTicket {
    status: Success,
    /// Opens one stream, once, within `expires_in` seconds.
    ticket: String,
    #[schema(example = 30)]
    expires_in: u64,
    /// Where to open the stream with it.
    #[schema(example = "/api/v1/stream?ticket=…")]
    url: String,
}

/// A single-use ticket that opens one live stream within 30 s (EventSource cannot send a token).
#[utoipa::path(post, path = "/api/v1/stream/ticket", tag = "live", security(("bearer" = [])),
    responses(
        (status = 200, body = StreamTicket, description = "A new ticket"),
        (status = 403, description = "Not read:sensor_data", body = platform::openapi::ErrorResponse),
        (status = 503, description = "Redis unavailable", body = platform::openapi::ErrorResponse)))]
pub async fn ticket(
    state: web::Data<QueryState>,
    caller: Authenticated<require::ReadSensorData>,
) -> Result<HttpResponse, ApiError> {
    let ticket = tickets::issue(&state.redis, &TicketHolder::of(&caller))
        .await
        .map_err(|err| {
            tracing::warn!(error = %err, "no stream ticket");
            match err {
                TicketError::Redis(_) => {
                    ApiError::unavailable("live streams need Redis, which is unavailable; retry", 5)
                }
                TicketError::Holder(_) => ApiError::internal(),
            }
        })?;
    Ok(HttpResponse::Ok().json(StreamTicket {
        status: Success::Success,
        url: format!("/api/v1/stream?ticket={ticket}"),
        ticket,
        expires_in: tickets::TICKET_TTL_SECS,
    }))
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

/// The data of a `reset` or `end` event: why, and what the client should do.
#[derive(Serialize)]
struct Notice<'a> {
    reason: &'a str,
    action: &'static str,
}

impl Notice<'_> {
    fn frame(&self, event: &str) -> Bytes {
        let data = serde_json::to_string(self).unwrap_or_default();
        Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
    }
}

fn reset(reason: &str) -> Bytes {
    Notice {
        reason,
        action: "reload current state from the REST API",
    }
    .frame("reset")
}

/// The loop's state between two frames.
struct Open {
    pending: VecDeque<Bytes>,
    receiver: tokio::sync::broadcast::Receiver<Arc<LiveEvent>>,
    _watcher: crate::live::Watcher,
    filter: Filter,
    newest_sent: u64,
    next_beat: tokio::time::Instant,
    holder: TicketHolder,
    _slot: StreamSlot,
}

/// Server-Sent Events: `reading`, `alert` and `reset` events as they are stored,
/// `: keep-alive` on a fixed interval (`stream.heartbeat_secs`) whatever else flows, so a client that left is
/// noticed; resumes after `Last-Event-ID` (header) or `last_event_id`. A stream ends when its
/// token is revoked (checked on every keep-alive) and after 15 minutes.
#[utoipa::path(get, path = "/api/v1/stream", tag = "live", params(StreamQuery),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream"),
        (status = 400, description = "Bad machine_id or last_event_id", body = platform::openapi::ErrorResponse),
        (status = 401, description = "Missing, unknown, used or expired ticket", body = platform::openapi::ErrorResponse),
        (status = 429, description = "This user already has `stream.max_per_user` streams open", body = platform::openapi::ErrorResponse)))]
pub async fn stream(
    state: web::Data<QueryState>,
    req: HttpRequest,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let resume_from = check_query(&query)?;
    let holder = spend_ticket(&state, query.ticket).await?;
    let Some(slot) = state
        .stream_slots
        .take(holder.subject, state.stream.max_per_user)
    else {
        return Err(ApiError::new(
            ErrorCode::TooManyStreams,
            format!(
                "at most {} live streams per user; close one first",
                state.stream.max_per_user
            ),
        )
        .with_retry_after(state.stream.heartbeat_secs));
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
    let (first, newest_sent) = backlog(&state, &filter, last_event_id);
    tracing::info!(user = %holder.username, "live stream opened");
    let heartbeat = Duration::from_secs(state.stream.heartbeat_secs);
    let open = Open {
        pending: first,
        receiver,
        _watcher: watcher,
        filter,
        newest_sent,
        next_beat: tokio::time::Instant::now() + heartbeat,
        holder,
        _slot: slot,
    };
    let verifier = req.app_data::<web::Data<TokenVerifier>>().cloned();
    let body = frames(open, heartbeat, state.stream_lagged.clone(), verifier);
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        // nginx: pass events through as they come.
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}

/// Checks `machine_id` and `last_event_id`, reporting each problem; returns the event id to
/// resume after, if one was given.
fn check_query(query: &StreamQuery) -> Result<Option<u64>, ApiError> {
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
    Ok(resume_from)
}

/// Whom `ticket` was issued to; the ticket is spent (GETDEL: a ticket opens one stream, once).
async fn spend_ticket(
    state: &QueryState,
    ticket: Option<String>,
) -> Result<TicketHolder, ApiError> {
    let Some(ticket) = ticket.filter(|t| !t.is_empty()) else {
        return Err(ApiError::unauthorized(
            "a stream needs a ticket: POST /api/v1/stream/ticket with your token first",
        ));
    };
    tickets::redeem::<TicketHolder>(&state.redis, &ticket)
        .await
        .map_err(|_| {
            ApiError::unavailable("live streams need Redis, which is unavailable; retry", 5)
        })?
        .ok_or_else(|| ApiError::unauthorized("unknown, used or expired stream ticket"))
}

/// The first frames: the retry interval, then what the client missed after `last_event_id`
/// (or a reset when that is too far back); and the id of the newest event among them.
fn backlog(
    state: &QueryState,
    filter: &Filter,
    last_event_id: Option<u64>,
) -> (VecDeque<Bytes>, u64) {
    let mut first = VecDeque::from([Bytes::from_static(b"retry: 2000\n\n")]);
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
    (first, newest_sent)
}

/// The stream's body: frame after frame until [`next_frame`] ends it.
fn frames(
    open: Open,
    heartbeat: Duration,
    lagged: prometheus::IntCounter,
    verifier: Option<web::Data<TokenVerifier>>,
) -> impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>> {
    let started = Instant::now();
    futures_util::stream::unfold(Some(open), move |open| {
        let (lagged, verifier) = (lagged.clone(), verifier.clone());
        async move {
            let mut open = open?;
            let bytes = next_frame(
                &mut open,
                started,
                heartbeat,
                &lagged,
                verifier.as_ref().map(|v| v.get_ref()),
            )
            .await;
            // A frame that ends the stream is still sent; the next poll then ends it.
            match bytes {
                Next::Frame(bytes) => Some((Ok::<_, actix_web::Error>(bytes), Some(open))),
                Next::Last(bytes) => Some((Ok(bytes), None)),
                Next::End => None,
            }
        }
    })
}

enum Next {
    Frame(Bytes),
    Last(Bytes),
    End,
}

/// Waits for the next frame to send: a pending one, a matching event, or the keep-alive that
/// is due. The keep-alive is on a fixed schedule, not a timeout that events restart: a
/// stream filtered to a quiet machine still writes, and so notices a client that left.
async fn next_frame(
    open: &mut Open,
    started: Instant,
    heartbeat: Duration,
    lagged: &prometheus::IntCounter,
    verifier: Option<&TokenVerifier>,
) -> Next {
    loop {
        if let Some(bytes) = open.pending.pop_front() {
            return Next::Frame(bytes);
        }
        if started.elapsed() > MAX_STREAM {
            return Next::End;
        }
        tokio::select! {
            biased;
            _ = tokio::time::sleep_until(open.next_beat) => {
                // After a stall (a client whose socket buffer was full) one keep-alive, not
                // one per missed interval.
                open.next_beat = (open.next_beat + heartbeat)
                    .max(tokio::time::Instant::now() + heartbeat / 2);
                if open.holder.is_revoked(verifier) {
                    tracing::info!(user = %open.holder.username, "live stream ended: token revoked");
                    let notice = Notice { reason: "token revoked", action: "sign in again" };
                    return Next::Last(notice.frame("end"));
                }
                return Next::Frame(Bytes::from_static(b": keep-alive\n\n"));
            }
            next = open.receiver.recv() => match next {
                Ok(event) => {
                    if event.id <= open.newest_sent || !open.filter.matches(&event) {
                        continue;
                    }
                    open.newest_sent = event.id;
                    return Next::Frame(frame(&event));
                }
                Err(RecvError::Lagged(skipped)) => {
                    lagged.inc_by(skipped);
                    return Next::Frame(reset("the client fell behind; events were skipped"));
                }
                Err(RecvError::Closed) => return Next::End,
            },
        }
    }
}
