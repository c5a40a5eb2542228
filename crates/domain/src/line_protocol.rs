//! InfluxDB line protocol for `sensor_readings`: the encoder every write path uses, and the
//! parser that lets Telegraf/Node-RED style gateways push without a translator.
//!
//! `sensor_readings,factory_id=A,location=Hall\ 1,machine_id=<uuid>,sensor_type=multi temperature=72.5,speed=1500 1736937000000000000`

use crate::ids::MachineId;
use crate::ingest::{BatchError, BatchLimits, ClaimedTags, MachineBatch, ParsedBatch, values_from};
use crate::reading::{Field, Reading, ReadingRules, Timestamp, Violation};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt::Write;

/// The measurement every reading is written to.
pub const MEASUREMENT: &str = "sensor_readings";

/// The series a reading belongs to: the tags InfluxDB indexes.
#[derive(Debug, Clone, Copy)]
pub struct SeriesTags<'a> {
    pub machine_id: &'a MachineId,
    pub factory_id: &'a str,
    /// Its sensor package.
    pub sensor_type: &'a str,
    pub location: &'a str,
}

/// Escapes a tag key or value the way InfluxDB 1.x reads it back: `,` `=` and space get a
/// backslash. A backslash itself is written as is — InfluxDB never unescapes `\\`, and
/// treats a backslash as escaping the next byte only before those three — so one at the very
/// end would swallow the separator after it: trailing backslashes are dropped (the registry
/// refuses them in locations). Newlines cannot be represented and become spaces. Found by
/// the round-trip property test against a real InfluxDB.
fn escape_tag(out: &mut String, text: &str) {
    for c in text.trim_end_matches('\\').chars() {
        match c {
            ',' | '=' | ' ' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push_str("\\ "),
            _ => out.push(c),
        }
    }
}

/// The measurement and tag set of a series, escaped, ready to prefix each of its lines
/// (tags in key order, as InfluxDB stores them). Build it once per machine per batch.
pub fn series_key(tags: &SeriesTags<'_>) -> String {
    let mut out = String::with_capacity(128);
    out.push_str(MEASUREMENT);
    for (key, value) in [("factory_id", tags.factory_id), ("location", tags.location)] {
        // InfluxDB refuses empty tag values; an empty tag is the same as no tag.
        if !value.trim_end_matches('\\').is_empty() {
            out.push(',');
            out.push_str(key);
            out.push('=');
            escape_tag(&mut out, value);
        }
    }
    let _ = write!(out, ",machine_id={}", tags.machine_id);
    if !tags.sensor_type.is_empty() {
        out.push_str(",sensor_type=");
        escape_tag(&mut out, tags.sensor_type);
    }
    out
}

/// Appends one line: `series_key`, the fields, the timestamp in nanoseconds.
pub fn encode_line(out: &mut String, series_key: &str, reading: &Reading) {
    out.push_str(series_key);
    let mut separator = ' ';
    // The shortest text that reads back as the same f64, always with a `.0` or an exponent,
    // never an integer suffix: InfluxDB stores a float every time. (zmij and itoa are what
    // serde_json formats numbers with; this is the hot loop of every write.)
    let mut float = zmij::Buffer::new();
    for (field, value) in reading.values() {
        out.push(separator);
        out.push_str(field.as_str());
        out.push('=');
        out.push_str(float.format_finite(value));
        separator = ',';
    }
    out.push(' ');
    out.push_str(itoa::Buffer::new().format(reading.timestamp().nanos()));
    out.push('\n');
}

/// Appends one line for `reading` (convenience for single readings; batches reuse
/// [`series_key`]).
pub fn encode(out: &mut String, tags: &SeriesTags<'_>, reading: &Reading) {
    encode_line(out, &series_key(tags), reading);
}

/// Timestamp unit of a line-protocol body (`?precision=` of InfluxDB's API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Nanoseconds (the default).
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
}

impl Precision {
    /// Parses `ns`, `us`/`u`, `ms`, `s`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ns" | "n" => Some(Self::Nanoseconds),
            "us" | "u" => Some(Self::Microseconds),
            "ms" => Some(Self::Milliseconds),
            "s" => Some(Self::Seconds),
            _ => None,
        }
    }

    fn to_nanos(self, value: i64) -> Option<i64> {
        let factor = match self {
            Self::Nanoseconds => 1,
            Self::Microseconds => 1_000,
            Self::Milliseconds => 1_000_000,
            Self::Seconds => 1_000_000_000,
        };
        value.checked_mul(factor)
    }
}

/// How a body's lines are read: their timestamps' precision, and which measurements besides
/// `sensor_readings` are taken as readings (a deployment's allow-list, for tools that cannot
/// rename what they send).
#[derive(Debug, Clone, Copy)]
pub struct LineFormat<'a> {
    pub precision: Precision,
    /// Measurement names read as `sensor_readings`.
    pub aliases: &'a [String],
}

impl LineFormat<'static> {
    /// `sensor_readings` only.
    pub fn plain(precision: Precision) -> Self {
        Self {
            precision,
            aliases: &[],
        }
    }
}

impl LineFormat<'_> {
    fn accepts(&self, measurement: &str) -> bool {
        measurement == MEASUREMENT || self.aliases.iter().any(|alias| alias == measurement)
    }
}

/// Splits the field set at unescaped `separator`s outside double quotes; `\x` escapes are
/// resolved.
fn split_unescaped(text: &str, separator: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next) => {
                    if !matches!(next, ',' | ' ' | '=' | '\\' | '"') {
                        current.push('\\');
                    }
                    current.push(next);
                }
                None => current.push('\\'),
            },
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            c if c == separator && !quoted => parts.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    parts.push(current);
    parts
}

/// Splits the measurement and tags the way InfluxDB 1.x does: a separator is escaped exactly
/// when the byte before it is a backslash (so `\\,` is an escaped comma, and a backslash
/// before anything else is an ordinary character). Pieces stay escaped.
fn split_unescaped_by_influx_rules(text: &str, separator: u8) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut pieces = Vec::new();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == separator && (i == 0 || bytes[i - 1] != b'\\') {
            pieces.push(&text[start..i]);
            start = i + 1;
        }
    }
    pieces.push(&text[start..]);
    pieces
}

/// InfluxDB's tag unescaping: `\\,` `\\=` `\\ ` lose their backslash; nothing else changes.
fn unescape_series(text: &str) -> String {
    text.replace("\\,", ",")
        .replace("\\=", "=")
        .replace("\\ ", " ")
}

/// Splits a line into its three space-separated sections: in the measurement and tags a
/// space is escaped when the byte before it is a backslash and `"` is ordinary (InfluxDB's
/// rules); in the field set escapes and double-quoted strings apply. Found by fuzzing.
fn sections(line: &str) -> Vec<&str> {
    let mut sections = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    let mut quoted = false;
    let mut previous = '\0';
    for (i, c) in line.char_indices() {
        let in_series = sections.is_empty();
        let was = std::mem::replace(&mut previous, c);
        match c {
            ' ' if in_series && was != '\\' => {
                if i > start {
                    sections.push(&line[start..i]);
                }
                start = i + 1;
            }
            _ if in_series => {}
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if i > start {
                    sections.push(&line[start..i]);
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < line.len() {
        sections.push(&line[start..]);
    }
    sections
}

fn field_value(text: &str) -> Result<f64, &'static str> {
    let numeric = text
        .strip_suffix('i')
        .or_else(|| text.strip_suffix('u'))
        .unwrap_or(text);
    if text.starts_with('"')
        || matches!(
            text,
            "t" | "T" | "true" | "True" | "TRUE" | "f" | "F" | "false" | "False" | "FALSE"
        )
    {
        return Err("must be a number");
    }
    match numeric.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err("must be a finite number"),
        Err(_) => Err("must be a number"),
    }
}

/// Longest line accepted. A reading with every tag is a few hundred bytes; the bound keeps
/// one hostile line from costing more than it could mean.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Most tags per line (ours are four; Telegraf adds a few of its own).
pub const MAX_TAGS: usize = 32;
/// Most fields per line (three are known; the bound only stops abuse before splitting).
pub const MAX_FIELDS: usize = 16;

struct Line {
    machine: String,
    claimed: ClaimedTags,
    timestamp: Result<Timestamp, Violation>,
    values: [Option<f64>; 3],
}

fn parse_line(
    line: &str,
    path: &str,
    format: &LineFormat<'_>,
    now: Timestamp,
    violations: &mut Vec<Violation>,
) -> Option<Line> {
    // The first problem refuses the line: one error per line keeps the answer bounded.
    read_line(line, path, format, now)
        .map_err(|violation| violations.push(violation))
        .ok()
}

fn read_line(
    line: &str,
    path: &str,
    format: &LineFormat<'_>,
    now: Timestamp,
) -> Result<Line, Violation> {
    let parts = line_sections(line, path)?;
    let (machine, claimed) = machine_tags(parts[0], path, format)?;
    let pairs = field_pairs(parts[1], path)?;
    let timestamp = match parts.get(2) {
        None => Ok(now),
        Some(text) => line_timestamp(text, path, format.precision),
    };
    Ok(Line {
        machine,
        claimed,
        timestamp,
        values: values_from(&pairs),
    })
}

/// The line's sections (series, fields, optional timestamp), after the checks that bound
/// what splitting it may cost.
fn line_sections<'a>(line: &'a str, path: &str) -> Result<Vec<&'a str>, Violation> {
    if line.len() > MAX_LINE_BYTES {
        return Err(Violation::new(
            path,
            format!("is longer than {MAX_LINE_BYTES} bytes"),
            None,
        ));
    }
    if let Some(c) = crate::text::first_control(line) {
        return Err(Violation::new(
            path,
            crate::text::TextError::Control(u32::from(c)).to_string(),
            None,
        ));
    }
    let parts = sections(line);
    if !(2..=3).contains(&parts.len()) {
        return Err(Violation::new(
            path,
            "must be `measurement,tags fields [timestamp]`",
            Some(Value::from(line)),
        ));
    }
    // Counted before anything is split: a line of two million commas costs one scan.
    let commas = |text: &str| text.bytes().filter(|b| *b == b',').count();
    if commas(parts[0]) > MAX_TAGS {
        return Err(Violation::new(
            format!("{path}.tags"),
            format!("more than {MAX_TAGS} tags; at most {MAX_TAGS} per line"),
            None,
        ));
    }
    if commas(parts[1]) + 1 > MAX_FIELDS {
        return Err(Violation::new(
            format!("{path}.fields"),
            format!("more than {MAX_FIELDS} fields; at most {MAX_FIELDS} per line"),
            None,
        ));
    }
    Ok(parts)
}

/// The `machine_id` tag of the measurement-and-tags section, and the tags that describe the
/// machine (compared with the registry, never written as sent).
fn machine_tags(
    series: &str,
    path: &str,
    format: &LineFormat<'_>,
) -> Result<(String, ClaimedTags), Violation> {
    let series = split_unescaped_by_influx_rules(series, b',');
    let measurement = unescape_series(series[0]);
    if !format.accepts(&measurement) {
        let expected = if format.aliases.is_empty() {
            "must be sensor_readings".to_owned()
        } else {
            format!("must be sensor_readings or {}", format.aliases.join(", "))
        };
        return Err(Violation::new(
            format!("{path}.measurement"),
            expected,
            Some(Value::from(measurement)),
        ));
    }
    let mut machine = None;
    let mut claimed = ClaimedTags::default();
    for tag in &series[1..] {
        let pair = split_unescaped_by_influx_rules(tag, b'=');
        match pair.as_slice() {
            [key, value] => {
                let slot = match unescape_series(key).as_str() {
                    "machine_id" => &mut machine,
                    "sensor_type" => &mut claimed.sensor_type,
                    "location" => &mut claimed.location,
                    "factory_id" => &mut claimed.factory_id,
                    // Any other (a Telegraf `host`) is not ours to keep.
                    _ => continue,
                };
                *slot = Some(unescape_series(value));
            }
            _ => {
                return Err(Violation::new(
                    format!("{path}.tags"),
                    "must be key=value pairs",
                    Some(Value::from(unescape_series(tag))),
                ));
            }
        }
    }
    let machine = machine.ok_or_else(|| {
        Violation::new(
            format!("{path}.machine_id"),
            "tag machine_id is required",
            None,
        )
    })?;
    Ok((machine, claimed))
}

fn field_pairs(fields: &str, path: &str) -> Result<Vec<(Field, f64)>, Violation> {
    let mut pairs = Vec::new();
    for field in split_unescaped(fields, ',') {
        let Some((key, value)) = field.split_once('=') else {
            return Err(Violation::new(
                format!("{path}.fields"),
                "must be key=value pairs",
                Some(Value::from(field.clone())),
            ));
        };
        let Some(known) = Field::parse(key) else {
            return Err(Violation::new(
                format!("{path}.{key}"),
                "unknown field; expected temperature, pressure or speed",
                None,
            ));
        };
        let value = field_value(value).map_err(|message| {
            Violation::new(format!("{path}.{key}"), message, Some(Value::from(value)))
        })?;
        pairs.push((known, value));
    }
    Ok(pairs)
}

fn line_timestamp(text: &str, path: &str, precision: Precision) -> Result<Timestamp, Violation> {
    text.parse::<i64>()
        .ok()
        .and_then(|v| precision.to_nanos(v))
        .map(Timestamp::from_nanos)
        .ok_or_else(|| {
            Violation::new(
                format!("{path}.timestamp"),
                "must be an integer in the request's precision",
                Some(Value::from(text)),
            )
        })
}

/// Parses and validates a line-protocol body with the same rules as the JSON batch.
/// Lines without a timestamp take the server's time, as InfluxDB does: `rules.now`, one
/// instant for the whole body, so two such lines of a machine are one point (InfluxDB merges
/// their fields) and the write path's own retries of the body overwrite rather than add.
pub fn parse(
    body: &str,
    format: &LineFormat<'_>,
    rules: &ReadingRules,
    limits: &BatchLimits,
) -> Result<ParsedBatch, BatchError> {
    let lines = body_lines(body, limits)?;
    let mut violations = Vec::new();
    let mut machines = Machines::default();
    let mut unattributed = 0;
    for (i, line) in lines {
        let path = format!("line[{i}]");
        let Some(parsed) = parse_line(line, &path, format, rules.now, &mut violations) else {
            unattributed += 1;
            continue;
        };
        let machine = machines.slot(&parsed.machine, &path, limits, &mut violations)?;
        if machine.claimed == ClaimedTags::default() {
            machine.claimed = parsed.claimed;
        }
        match rules.reading(
            || path.clone(),
            parsed.timestamp,
            parsed.values,
            &mut violations,
        ) {
            Some(reading) if machine.machine_id.is_some() => machine.readings.push(reading),
            _ => machine.rejected += 1,
        }
    }
    let mut machines = machines.list;
    if unattributed > 0 {
        // Lines too broken to name a machine still count as rejected readings.
        machines.push(MachineBatch {
            index: machines.len(),
            raw_machine_id: String::new(),
            machine_id: None,
            readings: Vec::new(),
            rejected: unattributed,
            path: "body".to_owned(),
            claimed: ClaimedTags::default(),
        });
    }
    Ok(ParsedBatch {
        gateway_id: None,
        machines,
        violations,
    })
}

/// The lines that carry data (not blank, not `#` comments), numbered as in the body.
fn body_lines<'a>(
    body: &'a str,
    limits: &BatchLimits,
) -> Result<Vec<(usize, &'a str)>, BatchError> {
    let lines: Vec<(usize, &str)> = body
        .lines()
        .enumerate()
        .map(|(i, l)| (i, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if lines.is_empty() {
        return Err(BatchError::Malformed(Violation::new(
            "body",
            "holds no lines",
            None,
        )));
    }
    if lines.len() > limits.max_readings {
        return Err(BatchError::TooLarge(Violation::new(
            "body",
            format!(
                "holds {} lines; at most {} per request",
                lines.len(),
                limits.max_readings
            ),
            None,
        )));
    }
    Ok(lines)
}

/// The machines of a body in order of first appearance, so lines group by machine.
#[derive(Default)]
struct Machines {
    list: Vec<MachineBatch>,
    by_id: HashMap<String, usize>,
}

impl Machines {
    /// The batch of machine `raw_id`, opened at its first line (`path`).
    fn slot(
        &mut self,
        raw_id: &str,
        path: &str,
        limits: &BatchLimits,
        violations: &mut Vec<Violation>,
    ) -> Result<&mut MachineBatch, BatchError> {
        if let Some(&slot) = self.by_id.get(raw_id) {
            return Ok(&mut self.list[slot]);
        }
        if self.list.len() >= limits.max_machines {
            return Err(BatchError::TooLarge(Violation::new(
                "body",
                format!(
                    "names more than {} machines; at most {} per request",
                    limits.max_machines, limits.max_machines
                ),
                None,
            )));
        }
        let machine_id = raw_id.parse::<MachineId>().ok();
        if machine_id.is_none() {
            violations.push(Violation::new(
                format!("{path}.machine_id"),
                "must be a UUID",
                Some(Value::from(raw_id)),
            ));
        }
        let slot = self.list.len();
        self.by_id.insert(raw_id.to_owned(), slot);
        self.list.push(MachineBatch {
            index: slot,
            raw_machine_id: raw_id.to_owned(),
            machine_id,
            readings: Vec::new(),
            rejected: 0,
            path: path.to_owned(),
            claimed: ClaimedTags::default(),
        });
        Ok(&mut self.list[slot])
    }
}

/// Reads back one encoded line (tests, and tools that replay what was written).
pub fn decode_reading(line: &str) -> Option<(String, Reading)> {
    let mut violations = Vec::new();
    let parsed = parse_line(
        line.trim(),
        "line",
        &LineFormat::plain(Precision::Nanoseconds),
        Timestamp::from_nanos(0),
        &mut violations,
    )?;
    // Only the shape is checked here: the window is centred on the line's own timestamp.
    let now = parsed.timestamp.clone().ok()?;
    let rules = ReadingRules {
        bounds: [(f64::MIN, f64::MAX); 3],
        max_future_skew_secs: 0,
        max_age_secs: 7200,
        now,
    };
    let reading = rules.reading(
        || "line".to_owned(),
        parsed.timestamp,
        parsed.values,
        &mut violations,
    )?;
    Some((parsed.machine, reading))
}

#[cfg(test)]
mod tests {
    use super::*;

    const M1: &str = "550e8400-e29b-41d4-a716-446655440000";

    fn rules() -> ReadingRules {
        ReadingRules::defaults(Timestamp::parse_rfc3339("2025-01-15T12:00:00Z").unwrap())
    }

    /// `body` at precision s, `sensor_readings` only.
    fn parse_seconds(body: &str) -> ParsedBatch {
        parse(
            body,
            &LineFormat::plain(Precision::Seconds),
            &rules(),
            &LIMITS,
        )
        .unwrap()
    }

    const LIMITS: BatchLimits = BatchLimits {
        max_machines: 10,
        max_readings: 100,
    };

    fn reading(values: [Option<f64>; 3]) -> Reading {
        let mut violations = Vec::new();
        rules()
            .reading(
                || "r".to_owned(),
                Ok(Timestamp::parse_rfc3339("2025-01-15T10:30:00.123456789Z").unwrap()),
                values,
                &mut violations,
            )
            .unwrap()
    }

    #[test]
    fn encodes_sorted_escaped_tags_and_float_fields() {
        let id: MachineId = M1.parse().unwrap();
        let mut out = String::new();
        let tags = SeriesTags {
            machine_id: &id,
            factory_id: "A",
            sensor_type: "multi",
            location: "Hall 1, bay=3",
        };
        encode(&mut out, &tags, &reading([Some(72.5), None, Some(1500.0)]));
        assert_eq!(
            out,
            format!(
                "sensor_readings,factory_id=A,location=Hall\\ 1\\,\\ bay\\=3,machine_id={M1},sensor_type=multi temperature=72.5,speed=1500.0 1736937000123456789\n"
            )
        );
        let tags = SeriesTags {
            location: "",
            ..tags
        };
        out.clear();
        encode(&mut out, &tags, &reading([None, Some(0.1), None]));
        assert!(out.starts_with(&format!(
            "sensor_readings,factory_id=A,machine_id={M1},sensor_type=multi pressure=0.1 "
        )));
    }

    #[test]
    fn round_trips_through_the_parser() {
        let id: MachineId = M1.parse().unwrap();
        let original = reading([Some(-12.345678901234), Some(999_999.999), Some(0.0)]);
        let mut out = String::new();
        encode(
            &mut out,
            &SeriesTags {
                machine_id: &id,
                factory_id: "B",
                sensor_type: "speed",
                location: "a=b c,d\\e",
            },
            &original,
        );
        let (machine, back) = decode_reading(&out).unwrap();
        assert_eq!(machine, M1);
        assert_eq!(back, original);
    }

    #[test]
    fn parses_gateway_lines_with_the_same_rules() {
        let body = format!(
            "# telegraf\n\
             sensor_readings,machine_id={M1},host=gw1 temperature=70.5,speed=1200i 1736937000\n\
             sensor_readings,machine_id={M1} temperature=9000 1736937001\n\
             sensor_readings,machine_id=oops speed=1 1736937002\n\
             cpu,host=x usage=3 1736937003\n\
             sensor_readings,machine_id={M1} status=\"ok\" 1736937004\n"
        );
        let parsed = parse_seconds(&body);
        assert_eq!(parsed.valid_readings(), 1);
        assert_eq!(
            parsed.machines[0].readings[0].value(Field::Speed),
            Some(1200.0)
        );
        assert_eq!(
            parsed.machines[0].readings[0].timestamp().nanos(),
            1_736_937_000_000_000_000
        );
        let paths: Vec<_> = parsed.violations.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "line[2].temperature",
                "line[3].machine_id",
                "line[4].measurement",
                "line[5].status"
            ]
        );
        assert_eq!(parsed.rejected_readings(), 4);
        assert_eq!(
            parsed.violations[2].value,
            Some(Value::from("cpu")),
            "the refused measurement is named"
        );

        // A deployment's allow-list takes other names as readings.
        let aliases = ["modbus".to_owned(), "plc temps".to_owned()];
        let format = LineFormat {
            precision: Precision::Seconds,
            aliases: &aliases,
        };
        let body = format!(
            "modbus,machine_id={M1} temperature=70 1736937000\n\
             plc\\ temps,machine_id={M1} speed=5 1736937001\n\
             cpu,machine_id={M1} speed=5 1736937002\n"
        );
        let parsed = parse(&body, &format, &rules(), &LIMITS).unwrap();
        assert_eq!(parsed.valid_readings(), 2, "{:?}", parsed.violations);
        assert_eq!(
            parsed.violations[0].message,
            "must be sensor_readings or modbus, plc temps"
        );
    }

    #[test]
    fn the_tags_a_line_claims_are_kept_apart_from_what_is_written() {
        let body = format!(
            "sensor_readings,factory_id=B,host=gw1,location=Hall\\ 9,machine_id={M1},sensor_type=temp speed=3 1736937000\n\
             sensor_readings,location=elsewhere,machine_id={M1} speed=4 1736937001\n"
        );
        let parsed = parse_seconds(&body);
        assert_eq!(
            parsed.machines[0].claimed,
            ClaimedTags {
                sensor_type: Some("temp".to_owned()),
                location: Some("Hall 9".to_owned()),
                factory_id: Some("B".to_owned()),
            },
            "the first line's claims"
        );
        assert_eq!(parsed.valid_readings(), 2);
    }

    #[test]
    fn precision_and_missing_timestamps() {
        assert_eq!(Precision::parse("ms"), Some(Precision::Milliseconds));
        assert_eq!(Precision::parse("h"), None);
        let parsed = parse(
            &format!(
                "sensor_readings,machine_id={M1} speed=3\n\
                 sensor_readings,machine_id={M1} temperature=60\n"
            ),
            &LineFormat::plain(Precision::Nanoseconds),
            &rules(),
            &LIMITS,
        )
        .unwrap();
        // One receive time for the whole body.
        let readings = &parsed.machines[0].readings;
        assert_eq!(readings[0].timestamp(), rules().now);
        assert_eq!(readings[1].timestamp(), rules().now);
    }
}
