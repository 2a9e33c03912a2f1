//! Durations in configuration: `250ms`, `30s`, `5m`, `1h`, `1d`, or a plain
//! number of seconds.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Parses `250ms`, `30s`, `5m`, `1h`, `1d` or a number of seconds.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else if let Some(n) = t.strip_suffix('d') {
        (n, 86400.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("\"{text}\" is not a duration (e.g. 250ms, 30s, 5m, 1h)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("\"{text}\" is not a duration: it must be ≥ 0"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

/// serde `deserialize_with` for a [`Duration`] written as text or seconds.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(f64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => parse(&s.to_string()),
        Raw::Text(t) => parse(&t),
    }
    .map_err(serde::de::Error::custom)
}

/// serde `deserialize_with` for an optional duration.
pub fn deserialize_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("2").unwrap(), Duration::from_secs(2));
        assert!(parse("soon").is_err());
        assert!(parse("-1s").is_err());
    }
}
