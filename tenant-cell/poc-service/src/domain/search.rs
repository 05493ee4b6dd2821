//! What a search index holds of a PoC and whose eyes a search is for: the values the index
//! port and the store share.

use uuid::Uuid;
use wire_types::pocs::Visibility;

/// A PoC as the index stores it (everything search, filters, facets and sorting need).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PocDoc {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub name: String,
    pub description: String,
    pub language: String,
    pub tags: Vec<String>,
    pub frameworks: Vec<String>,
    pub visibility: Visibility,
    /// Unix time in microseconds.
    pub created_at: i64,
    pub updated_at: i64,
}

/// Whose eyes the search is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Viewer {
    /// Admins see every PoC of the cell.
    Everything,
    /// Members see tenant-wide PoCs and their own private ones.
    User(Uuid),
}
