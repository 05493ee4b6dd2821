//! Account self-service: open sign-up with a mailed code, forgot and reset password, change
//! password, profile.

use reqwest::Method;
use serde_json::json;
use wire_types::auth::{RegistrationPending, TokenResponse, User};

use crate::client::MrBill;
use crate::error::CoreError;

#[uniffi::export(async_runtime = "tokio")]
impl MrBill {
    /// Signs up without an invite (companies with open registration, for addresses at their
    /// email domains): a six-digit code is mailed; [`MrBill::confirm_email`] with it creates the
    /// account. Returns when the code stops working (epoch ms).
    pub async fn sign_up(&self, email: String, password: String) -> Result<i64, CoreError> {
        let body = json!({ "email": email, "password": password });
        let pending: RegistrationPending = self
            .call(Method::POST, "/v1/auth/register", Some(body), None)
            .await?;
        Ok(
            i64::try_from(pending.expires_at.unix_timestamp_nanos() / 1_000_000)
                .unwrap_or(i64::MAX),
        )
    }

    /// The mailed code: creates the account and signs in.
    pub async fn confirm_email(&self, email: String, code: String) -> Result<User, CoreError> {
        let body = json!({ "email": email, "code": code });
        let tokens: TokenResponse = self
            .call(Method::POST, "/v1/auth/confirm-email", Some(body), None)
            .await?;
        Ok(self.keep(tokens))
    }

    /// Mails a reset code if the address has an account (the answer is the same either way).
    pub async fn forgot_password(&self, email: String) -> Result<(), CoreError> {
        let body = json!({ "email": email });
        self.call::<serde_json::Value>(Method::POST, "/v1/auth/forgot-password", Some(body), None)
            .await
            .map(drop)
    }

    /// Sets a new password with a mailed or admin-issued reset code; every session of the
    /// account ends (sign in again).
    pub async fn reset_password(
        &self,
        token: String,
        new_password: String,
    ) -> Result<(), CoreError> {
        let body = json!({ "token": token, "new_password": new_password });
        self.call::<serde_json::Value>(Method::POST, "/v1/auth/password-reset", Some(body), None)
            .await
            .map(drop)
    }

    /// Changes the password (the current one is required); the user's other sessions end,
    /// this one continues with fresh tokens.
    pub async fn change_password(
        &self,
        current_password: String,
        new_password: String,
    ) -> Result<User, CoreError> {
        let body = json!({ "current_password": current_password, "new_password": new_password });
        let tokens: TokenResponse = self
            .authed(Method::POST, "/v1/users/me/password", Some(body))
            .await?;
        Ok(self.keep(tokens))
    }

    /// Sets the user's display name.
    pub async fn update_profile(&self, display_name: String) -> Result<User, CoreError> {
        let body = json!({ "display_name": display_name });
        self.authed(Method::PATCH, "/v1/users/me", Some(body)).await
    }
}
