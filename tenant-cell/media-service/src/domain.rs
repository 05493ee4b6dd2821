//! Validating what clients send (no I/O): days and date ranges. Tags are
//! `wire_types::pocs::{tag_array, tag_query}`, the parser every service shares.

use wire_types::FieldError;

pub fn parse_day(field: &str, raw: &str, errors: &mut Vec<FieldError>) -> Option<time::Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    match time::Date::parse(raw, &format) {
        Ok(d) if (2000..=2100).contains(&d.year()) => Some(d),
        _ => {
            errors.push(FieldError::new(
                field,
                "invalid_format",
                format!("{field} must be a date YYYY-MM-DD between 2000 and 2100"),
            ));
            None
        }
    }
}

pub fn range(from: Option<&str>, to: Option<&str>, errors: &mut Vec<FieldError>) {
    let f = from.and_then(|v| parse_day("from", v, errors));
    let t = to.and_then(|v| parse_day("to", v, errors));
    if let (Some(f), Some(t)) = (f, t)
        && f > t
    {
        errors.push(FieldError::new(
            "to",
            "out_of_range",
            "to must not be before from",
        ));
    }
}
