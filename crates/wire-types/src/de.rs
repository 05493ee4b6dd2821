//! Deserialization helpers for JSON Schema semantics serde does not share.

use serde::{Deserialize, Deserializer};

/// An optional `u32` that also accepts integral floats (`666.0`): JSON Schema's `integer`
/// includes them, so a schema-valid request must not fail on one.
pub fn integral_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(v) = n.as_u64() {
        return u32::try_from(v)
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{v} is out of range")));
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&f) => {
            Ok(Some(f as u32))
        }
        _ => Err(serde::de::Error::custom(format!(
            "expected a non-negative integer, got {n}"
        ))),
    }
}

/// An `i32` that also accepts integral floats (`2025.0`), as JSON producers may send.
pub fn integral_i32<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    if let Some(v) = n.as_i64() {
        return i32::try_from(v)
            .map_err(|_| serde::de::Error::custom(format!("{v} is out of range")));
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && (f64::from(i32::MIN)..=f64::from(i32::MAX)).contains(&f) => {
            Ok(f as i32)
        }
        _ => Err(serde::de::Error::custom(format!(
            "expected an integer, got {n}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize)]
    struct T {
        #[serde(default, deserialize_with = "super::integral_u32")]
        n: Option<u32>,
    }

    fn parse(json: &str) -> Result<Option<u32>, serde_json::Error> {
        serde_json::from_str::<T>(json).map(|t| t.n)
    }

    #[test]
    fn integral_floats_are_integers() {
        assert_eq!(parse(r#"{"n": 666.0}"#).expect("ok"), Some(666));
        assert_eq!(parse(r#"{"n": 7}"#).expect("ok"), Some(7));
        assert_eq!(parse(r#"{"n": null}"#).expect("ok"), None);
        assert_eq!(parse(r#"{}"#).expect("ok"), None);
        assert!(parse(r#"{"n": 1.5}"#).is_err());
        assert!(parse(r#"{"n": -1}"#).is_err());
        assert!(parse(r#"{"n": 5000000000}"#).is_err());
    }
}
