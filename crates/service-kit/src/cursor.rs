//! Keyset cursors over `(created_at, id)`: `<unix nanos>_<uuid>`, the same for every paginated
//! list of the cell's services. Clients pass back what they were given; the shape is published
//! as [`PATTERN`] so that every value the OpenAPI documents allow is one the services accept.

use time::OffsetDateTime;
use uuid::Uuid;
use wire_types::FieldError;

/// What a cursor looks like (for `#[param(pattern = ...)]`, which takes only literals: the
/// services' parameter attributes repeat it, and a test checks their documents).
pub const PATTERN: &str = wire_types::rules::CURSOR;

/// The cursor that continues after the row `(at, id)`.
pub fn encode(at: OffsetDateTime, id: Uuid) -> String {
    format!("{}_{}", at.unix_timestamp_nanos().max(0), id.hyphenated())
}

/// The position a cursor names; `None` unless it has exactly the [`PATTERN`] shape.
pub fn decode(raw: &str) -> Option<(OffsetDateTime, Uuid)> {
    let (nanos, id) = raw.split_once('_')?;
    let digits = (1..=19).contains(&nanos.len()) && nanos.bytes().all(|b| b.is_ascii_digit());
    let lower_hyphenated = id.len() == 36
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-');
    if !digits || !lower_hyphenated {
        return None;
    }
    Some((
        OffsetDateTime::from_unix_timestamp_nanos(nanos.parse().ok()?).ok()?,
        Uuid::try_parse(id).ok()?,
    ))
}

/// A `cursor` query parameter: its position, or a field error (`invalid_format`) in `errors`.
pub fn param(raw: Option<&str>, errors: &mut Vec<FieldError>) -> Option<(OffsetDateTime, Uuid)> {
    let raw = raw?;
    decode(raw).or_else(|| {
        errors.push(FieldError::new(
            "cursor",
            "invalid_format",
            "cursor is not one this API returned",
        ));
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_a_field_error() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).expect("t");
        let id = Uuid::new_v4();
        assert_eq!(decode(&encode(at, id)), Some((at, id)));
        let cursor = encode(at, id);
        for bad in [
            format!("+{cursor}"),
            cursor.to_uppercase(),
            cursor.replace('-', ""),
            format!("{cursor} "),
            format!("12345678901234567890_{id}"),
        ] {
            assert_eq!(decode(&bad), None, "{bad}");
        }
        let mut errors = Vec::new();
        assert_eq!(param(Some("not-a-cursor"), &mut errors), None);
        assert_eq!(errors.len(), 1);
        assert_eq!(param(None, &mut errors), None);
        assert_eq!(errors.len(), 1, "no cursor is no error");
    }
}
