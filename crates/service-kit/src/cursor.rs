//! Keyset cursors over `(created_at, id)`: opaque to clients (base64url of
//! `<unix nanos>:<uuid>`), the same for every paginated list of the cell's services.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::OffsetDateTime;
use uuid::Uuid;
use wire_types::FieldError;

/// The cursor that continues after the row `(at, id)`.
pub fn encode(at: OffsetDateTime, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{id}", at.unix_timestamp_nanos()))
}

/// The position a cursor names; `None` if it is not one [`encode`] made.
pub fn decode(raw: &str) -> Option<(OffsetDateTime, Uuid)> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).ok()?).ok()?;
    let (nanos, id) = text.split_once(':')?;
    Some((
        OffsetDateTime::from_unix_timestamp_nanos(nanos.parse().ok()?).ok()?,
        id.parse().ok()?,
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
        let mut errors = Vec::new();
        assert_eq!(param(Some("not-a-cursor"), &mut errors), None);
        assert_eq!(errors.len(), 1);
        assert_eq!(param(None, &mut errors), None);
        assert_eq!(errors.len(), 1, "no cursor is no error");
    }
}
