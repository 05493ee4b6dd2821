//! The router's own answers: where an app finds its company.

use serde::{Deserialize, Serialize};

/// How a company's cell takes requests now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    Active,
    /// Moving between cells: requests wait briefly for the cut-over.
    Frozen,
    /// Requests are refused with 403 `tenant_suspended`.
    Suspended,
    /// A status newer than this client (an app built before it existed reads it as this).
    #[serde(other)]
    Unknown,
}

/// `GET /v1/resolve?tenant=` or `?email=`: the company and the endpoint its apps call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    pub tenant: String,
    pub cell: String,
    /// Always through the router (`<router>/t/<tenant>`), never a service address.
    pub endpoint: String,
    pub status: TenantStatus,
}

crate::wire!(Resolved);

#[cfg(test)]
mod tests {
    use super::*;

    /// An app keeps working when the router names a status it does not know yet.
    #[test]
    fn a_newer_status_reads_as_unknown() {
        let said =
            r#"{"tenant":"acme","cell":"c-1","endpoint":"https://r/t/acme","status":"migrating"}"#;
        let resolved: Resolved = serde_json::from_str(said).expect("resolved");
        assert_eq!(resolved.status, TenantStatus::Unknown);
        let known: TenantStatus = serde_json::from_str(r#""suspended""#).expect("status");
        assert_eq!(known, TenantStatus::Suspended);
    }
}
