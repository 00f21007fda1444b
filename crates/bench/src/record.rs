//! `BENCH-JSON {…}` result lines: the machine-readable format every podid benchmark prints on
//! stdout, one JSON object per result, next to its human table.
//!
//! ```text
//!   BENCH-JSON {"suite":"token_path","name":"agent, warm cache","concurrency":8,"rps":25034.0,"p99_us":599}
//! ```
//!
//! `suite` and `name` are required strings; every other member is a figure or a label.
use serde_json::{Map, Value};

/// The prefix that marks a result line.
pub const PREFIX: &str = "BENCH-JSON ";

/// A line that starts with [`PREFIX`] but is not a valid result.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("BENCH-JSON line is not JSON: {0}")]
    Json(String),
    #[error("BENCH-JSON line is not an object")]
    NotObject,
    #[error("BENCH-JSON line lacks the string member `{0}`")]
    Missing(&'static str),
}

/// One benchmark result.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub suite: String,
    pub name: String,
    /// Every member except `suite` and `name`.
    pub fields: Map<String, Value>,
}

impl Record {
    /// A numeric member, if present and a number.
    pub fn num(&self, key: &str) -> Option<f64> {
        self.fields.get(key).and_then(Value::as_f64)
    }

    /// A member as text: strings bare, numbers formatted for a table, others as JSON.
    pub fn text(&self, key: &str) -> String {
        match self.fields.get(key) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.as_f64().map_or_else(|| n.to_string(), format_number),
            Some(other) => other.to_string(),
        }
    }

    /// The line the benches print for this record.
    pub fn to_line(&self) -> String {
        let mut object = Map::new();
        object.insert("suite".into(), Value::String(self.suite.clone()));
        object.insert("name".into(), Value::String(self.name.clone()));
        object.extend(self.fields.clone());
        format!("{PREFIX}{}", Value::Object(object))
    }
}

/// Parses one line: `None` if it is not a result line, else the record or why it is invalid.
pub fn parse_line(line: &str) -> Option<Result<Record, RecordError>> {
    let json = line.trim_end().strip_prefix(PREFIX)?;
    Some(parse_json(json))
}

fn parse_json(json: &str) -> Result<Record, RecordError> {
    let value: Value = serde_json::from_str(json).map_err(|e| RecordError::Json(e.to_string()))?;
    let Value::Object(mut fields) = value else { return Err(RecordError::NotObject) };
    let mut take = |key: &'static str| match fields.remove(key) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(RecordError::Missing(key)),
    };
    let suite = take("suite")?;
    let name = take("name")?;
    Ok(Record { suite, name, fields })
}

/// Every valid record in `output`, in order; invalid result lines are logged and skipped.
pub fn parse_output(output: &str) -> Vec<Record> {
    output
        .lines()
        .filter_map(parse_line)
        .filter_map(|r| r.map_err(|e| tracing::warn!(error = %e, "Skipping a result line")).ok())
        .collect()
}

/// A figure for a table: thousands separated, at most one decimal above 100, two below.
pub fn format_number(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    if x.fract() == 0.0 || x.abs() >= 100.0 {
        let rounded = x.round();
        let digits = format!("{}", rounded.abs() as u64);
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if rounded < 0.0 { format!("-{out}") } else { out }
    } else {
        format!("{x:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_are_parsed_and_other_lines_ignored() {
        let out =
            "| table |\nBENCH-JSON {\"suite\":\"s\",\"name\":\"n\",\"rps\":12.5}\nnoise BENCH-JSON {}\n";
        let records = parse_output(out);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].suite, "s");
        assert_eq!(records[0].num("rps"), Some(12.5));
        assert!(!records[0].fields.contains_key("suite"));
    }

    #[test]
    fn invalid_result_lines_say_why() {
        assert_eq!(parse_line("BENCH-JSON [1]"), Some(Err(RecordError::NotObject)));
        assert_eq!(parse_line("BENCH-JSON {\"suite\":\"s\"}"), Some(Err(RecordError::Missing("name"))));
        assert!(matches!(parse_line("BENCH-JSON {oops"), Some(Err(RecordError::Json(_)))));
        assert_eq!(parse_line("plain"), None);
    }

    #[test]
    fn a_record_round_trips_through_its_line() {
        let r = parse_line("BENCH-JSON {\"suite\":\"a\",\"name\":\"b\",\"x\":1}").and_then(Result::ok);
        let r = r.unwrap_or_else(|| panic!("valid line"));
        assert_eq!(parse_line(&r.to_line()), Some(Ok(r)));
    }

    #[test]
    fn numbers_are_formatted_for_tables() {
        assert_eq!(format_number(29783.4), "29,783");
        assert_eq!(format_number(1_000_000.0), "1,000,000");
        assert_eq!(format_number(1.23456), "1.23");
        assert_eq!(format_number(-1500.0), "-1,500");
        assert_eq!(format_number(7.0), "7");
    }
}
