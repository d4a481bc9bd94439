//! Shared vocabulary: severities, kinds, statuses, and the result of one audit.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Catalog,
    Runtime,
    Data,
    Probe,
    Manual,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Catalog => "catalog",
            Kind::Runtime => "runtime",
            Kind::Data => "data",
            Kind::Probe => "probe",
            Kind::Manual => "manual",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Partial,
    Fail,
    NotApplicable,
    Skipped,
    Error,
    Manual,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Pass,
        Status::Partial,
        Status::Fail,
        Status::NotApplicable,
        Status::Skipped,
        Status::Error,
        Status::Manual,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Partial => "partial",
            Status::Fail => "fail",
            Status::NotApplicable => "not_applicable",
            Status::Skipped => "skipped",
            Status::Error => "error",
            Status::Manual => "manual",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }
    /// Counted in the score (SPEC §3).
    pub fn is_applicable(self) -> bool {
        matches!(
            self,
            Status::Pass | Status::Partial | Status::Fail | Status::Error
        )
    }
    /// Has findings that can fail the gate.
    pub fn is_failing(self) -> bool {
        matches!(self, Status::Partial | Status::Fail)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row a check returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectResult {
    pub object: String,
    /// `None`: unknown. The database cannot show whether the object is fine (the
    /// application does it, the role cannot see the rows); the evidence says why and
    /// what to verify. Never counted as failing (SPEC §3).
    pub ok: Option<bool>,
    pub evidence: String,
    /// The other objects this finding stands for (the policies a helper serves, the
    /// foreign keys of a child table); baselines and waivers match them too.
    pub related: Vec<String>,
}

impl ObjectResult {
    pub fn is_finding(&self) -> bool {
        self.ok == Some(false)
    }
    pub fn is_unknown(&self) -> bool {
        self.ok.is_none()
    }
}

/// Derive a status from a check's rows exactly as SPEC §3 says: from the rows whose
/// verdict is known. (A check whose rows are all unknown is `skipped`; the runner
/// says so with their reason before it gets here.)
pub fn derive_status(rows: &[ObjectResult], strict: bool) -> Status {
    let known = rows.iter().filter(|r| r.ok.is_some()).count();
    if known == 0 {
        return Status::NotApplicable;
    }
    let ok = rows.iter().filter(|r| r.ok == Some(true)).count();
    if ok == known {
        Status::Pass
    } else if ok == 0 || strict {
        Status::Fail
    } else {
        Status::Partial
    }
}

/// A finding in one line: its evidence, prefixed with the object unless the
/// evidence already names it.
pub fn finding_text(object: &str, evidence: &str) -> String {
    if evidence.is_empty() {
        object.to_string()
    } else if evidence.contains(object) {
        evidence.to_string()
    } else {
        format!("{object}: {evidence}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ok: bool) -> ObjectResult {
        ObjectResult {
            object: "o".into(),
            ok: Some(ok),
            evidence: String::new(),
            related: vec![],
        }
    }

    #[test]
    fn unknown_rows_are_not_counted() {
        let unknown = ObjectResult {
            ok: None,
            ..row(true)
        };
        assert_eq!(
            derive_status(&[unknown.clone(), row(true)], false),
            Status::Pass
        );
        assert_eq!(
            derive_status(&[unknown.clone(), row(false)], false),
            Status::Fail
        );
        assert_eq!(
            derive_status(&[unknown.clone(), row(true), row(false)], false),
            Status::Partial
        );
    }

    #[test]
    fn status_derivation_follows_the_spec() {
        assert_eq!(derive_status(&[], false), Status::NotApplicable);
        assert_eq!(derive_status(&[row(true), row(true)], false), Status::Pass);
        assert_eq!(
            derive_status(&[row(false), row(false)], false),
            Status::Fail
        );
        assert_eq!(
            derive_status(&[row(true), row(false)], false),
            Status::Partial
        );
        assert_eq!(derive_status(&[row(true), row(false)], true), Status::Fail);
        assert_eq!(derive_status(&[row(true)], true), Status::Pass);
    }

    #[test]
    fn only_counted_statuses_are_applicable() {
        let counted: Vec<_> = Status::ALL
            .into_iter()
            .filter(|s| s.is_applicable())
            .collect();
        assert_eq!(
            counted,
            vec![Status::Pass, Status::Partial, Status::Fail, Status::Error]
        );
    }
}
