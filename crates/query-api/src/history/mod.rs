//! History: the planner (rollup or raw), the InfluxQL builder, the merge of parts into rows,
//! and the aggregate cache. The route (`routes::history`) only translates HTTP.

pub(crate) mod cache;
pub(crate) mod influxql;
pub(crate) mod merge;
pub(crate) mod plan;

use domain::history::{HistoryQuery, Interval};
use domain::reading::Field;
use serde_json::{Value, json};

pub(crate) use merge::rfc3339;

/// The request's parameters as understood: echoed in every answer, and (without paging)
/// the cache key.
pub(crate) fn normalised(query: &HistoryQuery) -> Value {
    json!({
        "start_time": rfc3339(query.start.nanos()),
        "end_time": rfc3339(query.end.nanos()),
        "interval": query.interval.as_str(),
        "fields": query.fields.iter().map(Field::as_str).collect::<Vec<_>>(),
        "agg": if query.interval == Interval::Raw { Value::Null } else {
            json!(query.aggregates.iter().map(|a| a.as_str()).collect::<Vec<_>>())
        },
        "tz": query.tz.as_ref(),
        "limit": query.limit,
        "offset": query.offset,
    })
}

/// A parsed query for the history modules' unit tests, at a fixed "now" (2026-01-10).
#[cfg(test)]
pub(crate) fn test_query(params: domain::history::HistoryParams) -> HistoryQuery {
    let now = domain::reading::Timestamp::parse_rfc3339("2026-01-10T00:00:00Z").unwrap();
    HistoryQuery::parse(&params, now, 50_000).unwrap()
}

/// The parts of an aggregated request. Only a request that would read the rollup asks Redis
/// which hours are late (recent, raw-only and non-UTC requests skip the round trip).
pub(crate) async fn plan_parts(
    redis: &platform::redis::RedisClient,
    query: &HistoryQuery,
    now: domain::reading::Timestamp,
) -> Vec<plan::Part> {
    let trusting = plan::plan(query, now, &Some(Default::default()));
    if !trusting.iter().any(|part| part.from_rollup) {
        return trusting;
    }
    plan::plan(query, now, &late_hours(redis).await)
}

/// The hours history must read raw because their rollup waits for late readings; `None`
/// (trust no rollup) while Redis cannot say.
async fn late_hours(redis: &platform::redis::RedisClient) -> plan::LateHours {
    match storage::rollups::pending(redis).await {
        Ok(hours) => hours,
        Err(err) => {
            tracing::warn!(error = %err, "Redis lost: late hours unknown, aggregates read raw");
            None
        }
    }
}
