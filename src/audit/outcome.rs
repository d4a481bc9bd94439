//! What a check's rows say: the (object, ok, evidence) rows become a status, its
//! findings, and the result an audit reports.

use crate::checks::catalog::Check;
use crate::config::LoadedConfig;
use crate::model::{derive_status, finding_text, ObjectResult, Severity, Status};
use std::sync::Arc;

/// One row of a check's result: (object, ok, evidence); ok NULL means unknown.
pub(crate) type Row3 = (String, Option<bool>, String);

impl From<Row3> for ObjectResult {
    fn from((object, ok, evidence): Row3) -> Self {
        ObjectResult {
            object,
            ok,
            evidence,
            related: vec![],
        }
    }
}

/// The outcome of one check.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub check: Arc<Check>,
    /// After `[checks] severity` overrides.
    pub severity: Severity,
    pub status: Status,
    /// Why a check was skipped, or the error message.
    pub reason: Option<String>,
    /// Every row the check returned (ok and not ok), sorted by object.
    pub objects: Vec<ObjectResult>,
    pub duration_ms: u64,
}

impl CheckResult {
    /// The objects that are not ok.
    pub fn findings(&self) -> impl Iterator<Item = &ObjectResult> {
        self.objects.iter().filter(|o| o.is_finding())
    }
    /// The objects whose verdict the database cannot show (SPEC §3).
    pub fn unknowns(&self) -> impl Iterator<Item = &ObjectResult> {
        self.objects.iter().filter(|o| o.is_unknown())
    }
}

#[derive(Debug, Clone)]
pub struct AuditRun {
    pub database: String,
    pub server_version: String,
    pub server_version_num: i32,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub duration_ms: u64,
    pub results: Vec<CheckResult>,
}

/// The severity `check` reports with, after `[checks] severity` overrides.
pub(crate) fn severity_of(check: &Check, config: &LoadedConfig) -> Severity {
    config
        .severity_override(&check.id)
        .unwrap_or(check.severity)
}

/// A check's result from the (object, ok, evidence) rows it returned, or its error.
pub(crate) fn from_rows(
    check: &Arc<Check>,
    config: &LoadedConfig,
    rows: Result<Vec<impl Into<ObjectResult>>, String>,
    duration_ms: u64,
) -> CheckResult {
    let mut result = CheckResult {
        check: check.clone(),
        severity: severity_of(check, config),
        status: Status::Error,
        reason: None,
        objects: vec![],
        duration_ms,
    };
    match rows {
        Ok(rows) => {
            let mut objects: Vec<ObjectResult> = rows.into_iter().map(Into::into).collect();
            // sorted first: the rows arrive in any order, and a skip's reason names the
            // first of them
            objects.sort_by(|a, b| a.object.cmp(&b.object));
            if !objects.is_empty() && objects.iter().all(ObjectResult::is_unknown) {
                // Nothing could be judged: skipped, with the reason (SPEC §3). A
                // check that cannot run at all says so in one row with no object.
                result.status = Status::Skipped;
                result.reason = Some(unknown_reason(&objects));
            } else {
                result.status = derive_status(&objects, check.strict);
                result.objects = objects;
            }
        }
        Err(message) => result.reason = Some(message),
    }
    result
}

/// Why a check whose every row is unknown was skipped: the reason they share, or
/// the first reason with how many objects it stands for.
fn unknown_reason(objects: &[ObjectResult]) -> String {
    let first = &objects[0].evidence;
    if objects.len() == 1 || objects.iter().all(|o| &o.evidence == first) {
        return first.clone();
    }
    format!(
        "{} objects could not be judged, e.g. {}",
        objects.len(),
        finding_text(&objects[0].object, first)
    )
}
