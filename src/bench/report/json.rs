//! The report as JSON: one object on one line, for scripts (`bench --json`).
//! The field order is [`Report`]'s: the contract's fields first.

use super::Report;

impl Report {
    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report always serialises")
    }
}
