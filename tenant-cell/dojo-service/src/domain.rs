//! Validating a new dojo (no I/O).

use wire_types::FieldError;
use wire_types::dojos::CreateDojo;

/// Control characters are refused (Postgres cannot store NUL, and names are single lines);
/// multi-line fields keep newlines and tabs.
pub fn has_control(text: &str, multiline: bool) -> bool {
    text.chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')))
}

pub fn validate(input: &CreateDojo) -> Result<(String, u32), Vec<FieldError>> {
    let mut errors = Vec::new();
    for (field, text, multiline) in [
        ("name", &input.name, false),
        ("language", &input.language, false),
        ("description", &input.description, true),
        ("initial_code", &input.initial_code, true),
    ] {
        if has_control(text, multiline) {
            errors.push(FieldError::new(
                field,
                "control_characters",
                "contains control characters",
            ));
        }
    }
    // Lengths apply to what was sent, as the OpenAPI document states.
    if input.name.trim().is_empty() || input.name.chars().count() > 120 {
        errors.push(FieldError::new(
            "name",
            "invalid_length",
            "1–120 characters",
        ));
    }
    if input.description.chars().count() > 2000 {
        errors.push(FieldError::new(
            "description",
            "too_long",
            "at most 2000 characters",
        ));
    }
    let language = wire_types::rules::lowercase(input.language.trim());
    if language.is_empty() || input.language.chars().count() > 32 {
        errors.push(FieldError::new(
            "language",
            "invalid_length",
            "1–32 characters",
        ));
    }
    let max = input.max_participants.unwrap_or(50);
    if !(2..=500).contains(&max) {
        errors.push(FieldError::new(
            "max_participants",
            "out_of_range",
            "between 2 and 500",
        ));
    }
    if input.initial_code.chars().count() > 50_000 {
        errors.push(FieldError::new(
            "initial_code",
            "too_long",
            "at most 50000 characters",
        ));
    }
    if errors.is_empty() {
        Ok((language, max))
    } else {
        Err(errors)
    }
}
