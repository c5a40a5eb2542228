//! Turning InfluxDB's answers into the API's rows: aggregated parts merged into buckets
//! (from sums, counts, minima and maxima, so a mean over rollup and raw parts is exact), raw
//! rows paged, and the seed's `pagination` object.

use domain::history::{Aggregate, HistoryQuery, encode_cursor};
use domain::reading::Timestamp;
use platform::influx::Series;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

pub(crate) fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Running totals of one field in one bucket.
#[derive(Default, Clone, Copy)]
struct Totals {
    sum: f64,
    count: u64,
    min: Option<f64>,
    max: Option<f64>,
}

fn pick(a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (a, b) => a.or(b),
    }
}

/// Merges the parts' buckets and renders the requested aggregates.
pub(crate) fn merge(query: &HistoryQuery, answers: Vec<Vec<Series>>) -> Vec<Value> {
    let mut buckets: BTreeMap<i64, Vec<Totals>> = BTreeMap::new();
    for series in answers.into_iter().flatten() {
        let column = |name: String| series.columns.iter().position(|c| *c == name);
        let columns: Vec<[Option<usize>; 4]> = query
            .fields
            .iter()
            .map(|f| ["sum", "count", "min", "max"].map(|s| column(format!("{}_{s}", f.as_str()))))
            .collect();
        for row in &series.values {
            let Some(time) = row.first().and_then(Value::as_i64) else {
                continue;
            };
            let totals = buckets
                .entry(time)
                .or_insert_with(|| vec![Totals::default(); query.fields.len()]);
            for (t, [sum, count, min, max]) in totals.iter_mut().zip(&columns) {
                let value = |c: &Option<usize>| c.and_then(|c| row.get(c)).and_then(Value::as_f64);
                let n = value(count).unwrap_or(0.0) as u64;
                if n == 0 {
                    continue;
                }
                t.sum += value(sum).unwrap_or(0.0);
                t.count += n;
                t.min = pick(t.min, value(min), f64::min);
                t.max = pick(t.max, value(max), f64::max);
            }
        }
    }
    buckets
        .into_iter()
        .filter(|(_, totals)| totals.iter().any(|t| t.count > 0))
        .map(|(time, totals)| {
            let mut row = Map::new();
            row.insert("timestamp".to_owned(), Value::from(rfc3339(time)));
            for (field, t) in query.fields.iter().zip(totals) {
                for aggregate in &query.aggregates {
                    let value = match aggregate {
                        _ if t.count == 0 => Value::Null,
                        Aggregate::Mean => Value::from(t.sum / t.count as f64),
                        Aggregate::Min => t.min.map_or(Value::Null, Value::from),
                        Aggregate::Max => t.max.map_or(Value::Null, Value::from),
                        Aggregate::Count => Value::from(t.count),
                    };
                    row.insert(aggregate.column(*field), value);
                }
            }
            Value::Object(row)
        })
        .collect()
}

/// Raw rows, truncated to the page, and the pagination that goes with them.
pub(crate) fn raw_rows(query: &HistoryQuery, answers: Vec<Vec<Series>>) -> (Vec<Value>, Value) {
    let mut rows: Vec<Value> = Vec::new();
    for series in answers.into_iter().flatten() {
        for values in &series.values {
            let mut row = Map::new();
            for (column, value) in series.columns.iter().zip(values) {
                if column == "time" {
                    row.insert(
                        "timestamp".to_owned(),
                        Value::from(rfc3339(value.as_i64().unwrap_or_default())),
                    );
                } else {
                    row.insert(column.clone(), value.clone());
                }
            }
            rows.push(Value::Object(row));
        }
    }
    let has_more = rows.len() > query.limit;
    rows.truncate(query.limit);
    let next_cursor = rows
        .last()
        .filter(|_| has_more)
        .and_then(|r| r["timestamp"].as_str())
        .and_then(|t| Timestamp::parse_rfc3339(t).ok())
        .map(encode_cursor);
    // The total is known without a count query only once the last page is reached.
    let total = match (has_more, query.after, rows.len(), query.offset) {
        (false, None, 0, 0) => Some(0),
        (false, None, shown, offset) if shown > 0 => Some(offset + shown),
        _ => None,
    };
    let pagination = pagination(query, rows.len(), has_more, total, next_cursor);
    (rows, pagination)
}

/// The seed's `pagination` (limit, offset, has_more, returned_records, and total_records when
/// it is exact) plus our cursor for raw pages.
fn pagination(
    query: &HistoryQuery,
    returned: usize,
    has_more: bool,
    total: Option<usize>,
    next_cursor: Option<String>,
) -> Value {
    let mut page = json!({
        "limit": query.limit,
        "offset": query.offset,
        "has_more": has_more,
        "returned_records": returned,
        "next_cursor": next_cursor,
    });
    if let Some(total) = total {
        page["total_records"] = Value::from(total);
    }
    page
}

/// One page of an aggregated answer: every bucket is computed (bounded by
/// `query_max_points`), so the total is exact.
pub(crate) fn bucket_page(query: &HistoryQuery, buckets: &[Value]) -> (Vec<Value>, Value) {
    let page: Vec<Value> = buckets
        .iter()
        .skip(query.offset)
        .take(query.limit)
        .cloned()
        .collect();
    let has_more = query.offset.saturating_add(query.limit) < buckets.len();
    let info = pagination(query, page.len(), has_more, Some(buckets.len()), None);
    (page, info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::history::HistoryParams;

    fn query(interval: &str, limit: &str, offset: &str) -> HistoryQuery {
        let params = HistoryParams {
            start_time: Some("2026-01-01T00:00:00Z".into()),
            end_time: Some("2026-01-02T00:00:00Z".into()),
            interval: Some(interval.into()),
            fields: Some("temperature".into()),
            agg: (interval != "raw").then(|| "mean,min,max,count".into()),
            limit: Some(limit.into()),
            offset: Some(offset.into()),
            ..Default::default()
        };
        crate::history::test_query(params)
    }

    fn series(columns: &[&str], rows: Vec<Vec<Value>>) -> Series {
        serde_json::from_value(
            json!({"name": "sensor_readings", "columns": columns, "values": rows}),
        )
        .unwrap()
    }

    #[test]
    fn a_bucket_split_across_rollup_and_raw_merges_to_the_exact_mean() {
        let q = query("1h", "100", "0");
        let columns = [
            "time",
            "temperature_sum",
            "temperature_count",
            "temperature_min",
            "temperature_max",
        ];
        let rollup = series(
            &columns,
            vec![vec![
                json!(0),
                json!(30.0),
                json!(3),
                json!(5.0),
                json!(15.0),
            ]],
        );
        let raw = series(
            &columns,
            vec![vec![
                json!(0),
                json!(20.0),
                json!(1),
                json!(20.0),
                json!(20.0),
            ]],
        );
        let rows = merge(&q, vec![vec![rollup], vec![raw]]);
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0]["temperature"], 12.5,
            "50 / 4, not the mean of means"
        );
        assert_eq!(rows[0]["temperature_min"], 5.0);
        assert_eq!(rows[0]["temperature_max"], 20.0);
        assert_eq!(rows[0]["temperature_count"], 4);
    }

    #[test]
    fn bucket_pages_know_their_exact_total() {
        let buckets: Vec<Value> = (0..5).map(|i| json!({"i": i})).collect();
        let (page, info) = bucket_page(&query("1h", "2", "2"), &buckets);
        assert_eq!(page, [json!({"i": 2}), json!({"i": 3})]);
        assert_eq!(info["has_more"], true);
        assert_eq!(info["total_records"], 5);
        let (page, info) = bucket_page(&query("1h", "2", "10"), &buckets);
        assert!(page.is_empty());
        assert_eq!(
            (info["has_more"].clone(), info["total_records"].clone()),
            (json!(false), json!(5))
        );
    }

    #[test]
    fn raw_pages_give_a_total_only_on_the_last_page() {
        let columns = ["time", "temperature"];
        let rows = |n: i64| {
            vec![vec![series(
                &columns,
                (0..n).map(|t| vec![json!(t), json!(1.0)]).collect(),
            )]]
        };
        // Three rows asked, four there: more to come, no total, a cursor.
        let (page, info) = raw_rows(&query("raw", "3", "0"), rows(4));
        assert_eq!(page.len(), 3);
        assert_eq!(info["has_more"], true);
        assert!(info.get("total_records").is_none());
        assert!(info["next_cursor"].is_string());
        // The last page: exact total.
        let (_, info) = raw_rows(&query("raw", "3", "6"), rows(2));
        assert_eq!(info["total_records"], 8);
        // Past the end: empty, total unknown rather than wrong.
        let (page, info) = raw_rows(&query("raw", "3", "50"), rows(0));
        assert!(page.is_empty());
        assert!(info.get("total_records").is_none());
    }
}
