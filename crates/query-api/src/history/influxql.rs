//! The InfluxQL of a history request, built only from the validated, typed query.

use super::plan::Part;
use domain::history::HistoryQuery;
use uuid::Uuid;

fn tz_clause(query: &HistoryQuery) -> String {
    if query.tz.is_utc() {
        String::new()
    } else {
        format!(" tz('{}')", query.tz.as_ref())
    }
}

/// The statement for a raw page; one row more than asked tells whether another page exists.
pub(crate) fn raw_statement(query: &HistoryQuery, id: &Uuid) -> String {
    let mut range = format!(
        "\"machine_id\" = '{id}' AND time >= {} AND time < {}",
        query.start.nanos(),
        query.end.nanos()
    );
    if let Some(after) = query.after {
        range.push_str(&format!(" AND time > {}", after.nanos()));
    }
    let offset = if query.offset > 0 {
        format!(" OFFSET {}", query.offset)
    } else {
        String::new()
    };
    let fields: Vec<String> = query
        .fields
        .iter()
        .map(|f| format!("\"{}\"", f.as_str()))
        .collect();
    format!(
        "SELECT {} FROM \"sensor_readings\" WHERE {range} ORDER BY time ASC LIMIT {}{offset}",
        fields.join(", "),
        query.limit + 1
    )
}

/// Sum, count, min and max of every requested field per bucket, for one part.
pub(crate) fn aggregate_statement(query: &HistoryQuery, id: &Uuid, part: &Part) -> String {
    let selections: Vec<String> = query
        .fields
        .iter()
        .map(|f| {
            let f = f.as_str();
            if part.from_rollup {
                format!("sum(\"{f}_sum\") AS \"{f}_sum\", sum(\"{f}_count\") AS \"{f}_count\", min(\"{f}_min\") AS \"{f}_min\", max(\"{f}_max\") AS \"{f}_max\"")
            } else {
                format!("sum(\"{f}\") AS \"{f}_sum\", count(\"{f}\") AS \"{f}_count\", min(\"{f}\") AS \"{f}_min\", max(\"{f}\") AS \"{f}_max\"")
            }
        })
        .collect();
    let source = if part.from_rollup {
        "\"hourly\".\"sensor_readings\""
    } else {
        "\"sensor_readings\""
    };
    format!(
        "SELECT {} FROM {source} WHERE \"machine_id\" = '{id}' AND time >= {} AND time < {} GROUP BY time({}) fill(none){}",
        selections.join(", "),
        part.start,
        part.end,
        query.interval.as_str(),
        tz_clause(query)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::history::HistoryParams;

    fn query(pairs: &[(&str, &str)]) -> HistoryQuery {
        let mut params = HistoryParams::default();
        for (k, v) in pairs {
            let v = Some((*v).to_owned());
            match *k {
                "start_time" => params.start_time = v,
                "end_time" => params.end_time = v,
                "interval" => params.interval = v,
                "fields" => params.fields = v,
                "limit" => params.limit = v,
                "offset" => params.offset = v,
                "tz" => params.tz = v,
                _ => unreachable!(),
            }
        }
        crate::history::test_query(params)
    }

    const M: &str = "550e8400-e29b-41d4-a716-446655440000";

    #[test]
    fn a_raw_page_asks_for_one_row_more_and_skips_the_offset() {
        let q = query(&[
            ("start_time", "2026-01-01T00:00:00Z"),
            ("end_time", "2026-01-02T00:00:00Z"),
            ("fields", "temperature,speed"),
            ("limit", "10"),
            ("offset", "20"),
        ]);
        assert_eq!(
            raw_statement(&q, &M.parse().unwrap()),
            format!(
                "SELECT \"temperature\", \"speed\" FROM \"sensor_readings\" WHERE \"machine_id\" = '{M}' \
                 AND time >= 1767225600000000000 AND time < 1767312000000000000 ORDER BY time ASC LIMIT 11 OFFSET 20"
            )
        );
    }

    #[test]
    fn an_aggregated_part_sums_counts_and_bounds_each_field_in_its_zone() {
        let q = query(&[
            ("start_time", "2026-01-01T00:00:00Z"),
            ("end_time", "2026-01-02T00:00:00Z"),
            ("interval", "1d"),
            ("fields", "pressure"),
            ("tz", "Europe/Berlin"),
        ]);
        let part = Part {
            from_rollup: true,
            start: 1,
            end: 2,
        };
        assert_eq!(
            aggregate_statement(&q, &M.parse().unwrap(), &part),
            format!(
                "SELECT sum(\"pressure_sum\") AS \"pressure_sum\", sum(\"pressure_count\") AS \"pressure_count\", \
                 min(\"pressure_min\") AS \"pressure_min\", max(\"pressure_max\") AS \"pressure_max\" \
                 FROM \"hourly\".\"sensor_readings\" WHERE \"machine_id\" = '{M}' AND time >= 1 AND time < 2 \
                 GROUP BY time(1d) fill(none) tz('Europe/Berlin')"
            )
        );
    }
}
