//! The `sarif` format: SARIF 2.1.0 for code-scanning dashboards (GitHub's
//! `upload-sarif`, GitLab, Azure DevOps). One rule per check that ran, one result
//! per finding, located logically (`schema.table.column`) and, for the services
//! that need a file, at the audited schema file or the config file; each with a
//! fingerprint that stays the same from run to run so that dashboards can track a
//! finding across commits. Errored checks are tool notifications.

use super::finding_text;
use crate::audit::gate::{stable_key, Assessed, Assessment, Finding};
use crate::model::{Kind, Severity, Status};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The OASIS schema (2.1.0 with errata 01), the one `tests/fixtures` ships.
pub const SCHEMA_URI: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";
/// The key of our entry in `partialFingerprints`; bump the version if the hashed
/// input ever changes, so that dashboards do not mistake old for new.
pub const FINGERPRINT_KEY: &str = "pgIntegrity/v1";

pub fn render(a: &Assessment) -> String {
    // Manual checks never run: they have nothing to report in SARIF.
    let ran: Vec<&Assessed> = a
        .checks
        .iter()
        .filter(|c| c.result.check.kind != Kind::Manual)
        .collect();
    let rules: Vec<Value> = ran.iter().map(|c| rule(c)).collect();
    // GitHub code scanning rejects a result located only logically, so each one is
    // also anchored to line 1 of a file of the repository (the schema file, else the
    // configuration), as a path relative to the working directory; the database
    // object stays the logical location. With neither file there is nothing true to
    // point at: results are located logically only.
    let artifact = a.artifact.as_deref().map(relative_uri);
    let mut results = vec![];
    let mut notifications = vec![];
    for (index, c) in ran.iter().enumerate() {
        for f in &c.findings {
            results.push(result(c, index, f, artifact.as_deref()));
        }
        if c.result.status == Status::Error {
            notifications.push(json!({
                "level": "error",
                "message": {"text": format!(
                    "{} errored: {}",
                    c.result.check.id,
                    c.result.reason.as_deref().unwrap_or("")
                )},
                "associatedRule": {"id": c.result.check.id, "index": index},
            }));
        }
    }
    let mut driver = json!({
        "name": "pg-integrity",
        "version": env!("CARGO_PKG_VERSION"),
        "semanticVersion": env!("CARGO_PKG_VERSION"),
        "rules": rules,
    });
    let uri = option_env!("CARGO_PKG_HOMEPAGE")
        .filter(|s| !s.is_empty())
        .or(option_env!("CARGO_PKG_REPOSITORY").filter(|s| !s.is_empty()));
    if let Some(uri) = uri {
        driver["informationUri"] = json!(uri);
    }
    let doc = json!({
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": driver},
            "invocations": [{
                "executionSuccessful": true,
                "toolExecutionNotifications": notifications,
            }],
            "results": results,
            "properties": {
                "database": a.run.database,
                "serverVersion": a.run.server_version,
                "gatePassed": a.gate.passed,
            },
        }],
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}

fn rule(c: &Assessed) -> Value {
    let check = &c.result.check;
    let mut help = if check.remediation.trim().is_empty() {
        check.description.trim().to_string()
    } else {
        check.remediation.trim().to_string()
    };
    if !check.fixed_by.is_empty() {
        help.push_str(&format!("\nFixed by: {}", check.fixed_by.join(", ")));
    } else if check.fix.is_some() {
        help.push_str(&format!("\nFix: pg-integrity fix --only {}", check.id));
    }
    json!({
        "id": check.id,
        "name": rule_name(&check.id),
        "shortDescription": {"text": check.title},
        "fullDescription": {"text": check.description.trim()},
        "help": {"text": help},
        "defaultConfiguration": {"level": level(c.result.severity)},
        "properties": {
            "tags": [check.section],
            // GitHub code scanning ranks security alerts by this CVSS-like score.
            "security-severity": security_severity(c.result.severity),
        },
    })
}

/// `path` as a URI relative to the working directory when it lies under it (code
/// scanning matches results to repository files by relative path), with `/`.
fn relative_uri(path: &str) -> String {
    let p = std::path::Path::new(path);
    let rel = std::env::current_dir()
        .ok()
        .and_then(|cwd| p.strip_prefix(cwd).ok().map(|r| r.to_path_buf()))
        .unwrap_or_else(|| p.to_path_buf());
    let s = rel.display().to_string().replace('\\', "/");
    s.strip_prefix("./").map(str::to_string).unwrap_or(s)
}

fn result(c: &Assessed, rule_index: usize, f: &Finding, artifact: Option<&str>) -> Value {
    let id = &c.result.check.id;
    let text = finding_text(&f.object, &f.evidence);
    let mut r = json!({
        "ruleId": id,
        "ruleIndex": rule_index,
        "level": level(c.result.severity),
        "message": {"text": text},
        "locations": [{
            "logicalLocations": [{
                "fullyQualifiedName": f.object,
                "kind": object_kind(id, &f.object),
            }],
        }],
        "partialFingerprints": {FINGERPRINT_KEY: fingerprint(id, stable_key(&f.object))},
    });
    if let Some(uri) = artifact {
        r["locations"][0]["physicalLocation"] = json!({
            "artifactLocation": {"uri": uri},
            "region": {"startLine": 1},
        });
    }
    let mut suppressions = vec![];
    if f.waived {
        suppressions.push(json!({
            "kind": "external",
            "justification": format!(
                "waived in pg-integrity.toml: {}",
                f.waiver_reason.as_deref().unwrap_or("")
            ),
        }));
    }
    if f.baseline {
        suppressions.push(json!({
            "kind": "external",
            "justification": "in the pg-integrity baseline (known before this change)",
        }));
    }
    if !suppressions.is_empty() {
        r["suppressions"] = json!(suppressions);
    }
    r
}

/// A stable fingerprint of a finding: hex SHA-256 of `check id \0 object`, the object
/// as baselines key it (`database`, not `database <name>`).
pub fn fingerprint(check: &str, object: &str) -> String {
    let mut h = Sha256::new();
    h.update(check.as_bytes());
    h.update([0u8]);
    h.update(object.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

pub fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "note",
    }
}

fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
    }
}

/// `schema.foreign_keys` → `SchemaForeignKeys` (SARIF's rule `name` is an identifier).
fn rule_name(id: &str) -> String {
    id.split(['.', '_'])
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

/// What kind of database object a finding names, guessed from the check and the
/// object's shape (SPEC §3: `schema.table`, `schema.table.column`,
/// `schema.table.name` for a constraint, index or policy, `schema.f(args)`, a role).
pub fn object_kind(check: &str, object: &str) -> &'static str {
    if object.contains('(') {
        return "function";
    }
    let name = check.split_once('.').map_or(check, |(_, n)| n);
    match object.split('.').count() {
        1 if name.contains("role") || name.ends_with("_timeout") => "role",
        1 => "object",
        2 if name.contains("view") => "view",
        2 => "table",
        3 if name.contains("index") && !name.contains("foreign_key") => "index",
        3 if name.contains("polic") || matches!(name, "write_check" | "fail_closed") => "policy",
        3 if matches!(
            name,
            "foreign_key_indexes"
                | "constraints_validated"
                | "tenant_scoped_uniques"
                | "tenant_scoped_foreign_keys"
        ) =>
        {
            "constraint"
        }
        3 => "column",
        _ => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_uris_are_relative_to_the_working_directory() {
        let cwd = std::env::current_dir().unwrap();
        let inside = cwd.join("db").join("schema.sql");
        assert_eq!(relative_uri(&inside.display().to_string()), "db/schema.sql");
        assert_eq!(relative_uri("./db/schema.sql"), "db/schema.sql");
        assert_eq!(
            relative_uri("/elsewhere/schema.sql"),
            "/elsewhere/schema.sql"
        );
    }

    #[test]
    fn fingerprints_are_stable_and_separate_id_from_object() {
        // A real finding's value is pinned (SHA-256 of "schema.primary_keys\0public.audit_log"),
        // and another object or check gives another one.
        assert_eq!(
            fingerprint("schema.primary_keys", "public.audit_log"),
            "87bc266b63d6203ea528df5cbf154dbb6f0f0bb68a82e12abf3f350fcc344ab3"
        );
        assert_ne!(
            fingerprint("schema.primary_keys", "public.audit_log"),
            fingerprint("schema.primary_keys", "public.audit_logs")
        );
        assert_ne!(
            fingerprint("schema.primary_keys", "public.audit_log"),
            fingerprint("schema.foreign_keys", "public.audit_log")
        );
        assert_ne!(fingerprint("a", "bc"), fingerprint("ab", "c"));
        // SHA-256 of "a\0b", so that the value never changes between releases.
        assert_eq!(
            fingerprint("a", "b"),
            "59b271ae1bbcb1d31d41929817f4b16fb439eb4f31520b5ad1d5ce98920a7138"
        );
    }

    #[test]
    fn object_kinds_follow_the_object_names() {
        assert_eq!(object_kind("schema.primary_keys", "public.t"), "table");
        assert_eq!(object_kind("schema.foreign_keys", "public.t.c"), "column");
        assert_eq!(object_kind("schema.invalid_indexes", "public.t.i"), "index");
        assert_eq!(
            object_kind("schema.foreign_key_indexes", "public.t.fk"),
            "constraint"
        );
        assert_eq!(object_kind("rls.write_check", "public.t.p"), "policy");
        assert_eq!(object_kind("rls.app_role_bypass", "ticket_app"), "role");
        assert_eq!(object_kind("pool.statement_timeout", "ticket_app"), "role");
        assert_eq!(
            object_kind("rls.security_definer_search_path", "public.f(uuid)"),
            "function"
        );
        assert_eq!(
            object_kind("rls.views_security_invoker", "public.v"),
            "view"
        );
        assert_eq!(rule_name("schema.foreign_keys"), "SchemaForeignKeys");
    }
}
