//! Which points of a write InfluxDB refused for their own sake.
//!
//! InfluxDB 1.x stores the good points of a write it refuses in part and names none of the
//! bad ones ("partial write: field type conflict: … dropped=2"). Writing a point again only
//! overwrites it, so the refused write is split in halves, and halves again, until each
//! refused unit (a point, or an MQTT message's points) stands alone: k bad units among n
//! cost about k·log2(n) more writes, on this error path only.

/// A unit InfluxDB refused, by its index among the units written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub index: usize,
    /// InfluxDB's own words.
    pub reason: String,
}

/// Writes beyond the first that narrowing may spend: past them, the ranges not yet narrowed
/// are reported refused whole (with the last reason). Reporting a stored point refused loses
/// nothing; narrowing a batch of thousands of bad points one by one would outlast any
/// deadline, and a deadline's 503 would have the sender retry the same refused batch forever.
pub const MAX_NARROWING_WRITES: usize = 64;

/// Writes `units` together with `write`; when the answer is a refusal (`refusal` gives its
/// reason), narrows down to the refused units, within [`MAX_NARROWING_WRITES`]. Any other
/// failure ends it: `Err`, and the caller treats the whole write as not done (retrying it
/// is safe).
pub async fn narrow<E, F>(
    units: &[&str],
    write: impl Fn(String) -> F,
    refusal: impl Fn(&E) -> Option<String>,
) -> Result<Vec<Refused>, E>
where
    F: Future<Output = Result<(), E>>,
{
    let mut refused = Vec::new();
    let mut pending = Vec::new();
    pending.push(0..units.len());
    let mut writes = 0;
    let mut last_reason = String::new();
    while let Some(range) = pending.pop() {
        if range.is_empty() {
            continue;
        }
        if writes > MAX_NARROWING_WRITES {
            refused.extend(range.map(|index| Refused {
                index,
                reason: format!("{last_reason} (not narrowed further)"),
            }));
            continue;
        }
        writes += 1;
        let Err(err) = write(units[range.clone()].concat()).await else {
            continue;
        };
        let Some(reason) = refusal(&err) else {
            return Err(err);
        };
        last_reason.clone_from(&reason);
        if range.len() == 1 {
            refused.push(Refused {
                index: range.start,
                reason,
            });
        } else {
            let middle = range.start + range.len() / 2;
            pending.push(middle..range.end);
            pending.push(range.start..middle);
        }
    }
    refused.sort_unstable_by_key(|r| r.index);
    Ok(refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Refuses any body holding a `bad` line, as InfluxDB refuses a field type conflict.
    async fn run(units: &[&str]) -> (Result<Vec<Refused>, String>, usize) {
        let writes = Mutex::new(0);
        let outcome = narrow(
            units,
            |body: String| {
                *writes.lock().unwrap() += 1;
                let answer = match (body.contains("bad"), body.contains("down")) {
                    (_, true) => Err("503".to_owned()),
                    (true, _) => Err("400 partial write".to_owned()),
                    _ => Ok(()),
                };
                std::future::ready(answer)
            },
            |err: &String| err.starts_with("400").then(|| err.clone()),
        )
        .await;
        (outcome, writes.into_inner().unwrap())
    }

    #[tokio::test]
    async fn exactly_the_refused_units_are_named_in_few_writes() {
        let mut units = vec!["ok\n"; 64];
        units[5] = "bad\n";
        units[40] = "bad\n";
        let (outcome, writes) = run(&units).await;
        let indexes: Vec<usize> = outcome.unwrap().iter().map(|r| r.index).collect();
        assert_eq!(indexes, [5, 40]);
        // Two bad units among 64: the first write, then two paths of depth 6 with a sibling each.
        assert!(writes <= 1 + 2 * 2 * 6, "{writes} writes");
        assert_eq!(run(&["ok\n"; 8]).await, (Ok(vec![]), 1));
    }

    #[tokio::test]
    async fn narrowing_many_bad_units_stops_at_its_budget_and_loses_none() {
        let units = vec!["bad\n"; 5_000];
        let (outcome, writes) = run(&units).await;
        assert!(writes <= MAX_NARROWING_WRITES + 1, "{writes} writes");
        assert_eq!(outcome.unwrap().len(), 5_000);
    }

    #[tokio::test]
    async fn an_outage_while_narrowing_is_no_refusal() {
        let (outcome, _) = run(&["ok\n", "bad\n", "down\n"]).await;
        assert_eq!(outcome, Err("503".to_owned()));
    }
}
