//! Password policy (NIST SP 800-63B style: length over composition rules, block common and
//! account-derived passwords).

use wire_types::FieldError;

use super::Email;

/// A password that satisfies the policy. Never logged (no `Debug` of the contents).
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

/// Bounds of the policy.
#[derive(Clone, Copy, Debug)]
pub struct PasswordPolicy {
    pub min_chars: usize,
    pub max_chars: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_chars: 10,
            max_chars: 128,
        }
    }
}

/// A few of the most common passwords that satisfy the length rule.
const COMMON: &[&str] = &[
    "1234567890",
    "12345678910",
    "123456789a",
    "qwertyuiop",
    "1q2w3e4r5t",
    "password12",
    "password123",
    "password1234",
    "iloveyou12",
    "qwerty1234",
    "qwerty12345",
    "abcdefghij",
    "0987654321",
    "1qaz2wsx3edc",
    "passw0rd12",
    "letmein123",
    "welcome123",
    "football12",
    "baseball12",
    "sunshine12",
    "princess12",
    "trustno1trustno1",
    "administrator",
    "changeme123",
];

impl Password {
    pub fn parse(
        field: &str,
        raw: &str,
        email: Option<&Email>,
        policy: PasswordPolicy,
    ) -> Result<Self, FieldError> {
        let chars = raw.chars().count();
        if chars < policy.min_chars {
            return Err(FieldError::new(
                field,
                "too_short",
                format!(
                    "password must have at least {} characters",
                    policy.min_chars
                ),
            ));
        }
        if chars > policy.max_chars {
            return Err(FieldError::new(
                field,
                "too_long",
                format!("password must have at most {} characters", policy.max_chars),
            ));
        }
        let lower = raw.to_lowercase();
        let first = lower.chars().next();
        if COMMON.contains(&lower.as_str()) || lower.chars().all(|c| Some(c) == first) {
            return Err(FieldError::new(
                field,
                "too_common",
                "this password is too common; choose another",
            ));
        }
        if let Some(email) = email {
            let local = email.local_part();
            if lower.contains(email.as_str())
                || (local.chars().count() >= 4 && lower.contains(local))
            {
                return Err(FieldError::new(
                    field,
                    "contains_email",
                    "password must not contain your email address",
                ));
            }
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pw: &str) -> Result<Password, FieldError> {
        let email = Email::parse("email", "ada.lovelace@example.com").expect("valid");
        Password::parse("password", pw, Some(&email), PasswordPolicy::default())
    }

    #[test]
    fn policy_codes() {
        assert_eq!(check("short").expect_err("short").code, "too_short");
        assert_eq!(check(&"x".repeat(129)).expect_err("long").code, "too_long");
        assert_eq!(check("Password123").expect_err("common").code, "too_common");
        assert_eq!(
            check("aaaaaaaaaaaa").expect_err("repeat").code,
            "too_common"
        );
        assert_eq!(
            check("my-ada.lovelace-pass").expect_err("email").code,
            "contains_email"
        );
        assert!(check("correct horse battery").is_ok());
    }

    #[test]
    fn debug_never_shows_the_password() {
        let p = check("correct horse battery").expect("valid");
        assert!(!format!("{p:?}").contains("horse"));
    }
}
