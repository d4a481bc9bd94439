//! The `html` format: one self-contained page (inline style and script, no fetch of
//! any kind) for people who would rather look than read: the score and the gate, a
//! bar per section, and a table of every finding — filterable by severity, section
//! and status, searchable by object — with its evidence, the remediation and the fix.
//!
//! The rows are written as HTML, so the page reads without script; the script only
//! filters. The filter is kept in the address's fragment
//! (`report.html#severity=high&section=rls&status=fail&q=tickets`), so a filtered
//! view can be linked to, and a headless browser can open one.

use super::{by_section, disposition, looks_like_sql, short, summary_evidence, tally};
use crate::audit::gate::{score, Assessed, Assessment, TrendPoint};
use crate::checks::catalog::section_title;
use crate::model::{Severity, Status};
use std::fmt::Write;

pub fn render(a: &Assessment) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let service = a.service.as_deref().unwrap_or(&a.run.database);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"pg-integrity {}\">\n\
         <title>{} - Database Integrity Audit</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        env!("CARGO_PKG_VERSION"),
        esc(service)
    );
    header(&mut out, a, service);
    trend(&mut out, a);
    sections(&mut out, a);
    findings(&mut out, a);
    let _ = write!(
        out,
        "<footer>pg-integrity {} · the JSON report (<code>--format json</code>) carries \
         the same audit for tools</footer>\n<script>{SCRIPT}</script>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION")
    );
    out
}

fn header(out: &mut String, a: &Assessment, service: &str) {
    let (passed, applicable, pct) = score(&a.run.results);
    let _ = writeln!(
        out,
        "<header>\n<h1>{} <span>Database Integrity Audit</span></h1>",
        esc(service)
    );
    let mut meta = vec![
        format!(
            "<b>Database</b> {} (PostgreSQL {})",
            esc(&a.run.database),
            esc(&a.run.server_version)
        ),
        format!("<b>Date</b> {}", a.run.started_at.format("%Y-%m-%d")),
        format!(
            "<b>Configuration</b> {}",
            a.config_file
                .as_deref()
                .map_or("built-in defaults".to_string(), |f| format!(
                    "<code>{}</code>",
                    esc(f)
                ))
        ),
    ];
    if let Some((model, reason)) = &a.tenancy {
        meta.push(format!(
            "<b>Tenancy model</b> <span title=\"{}\">{}</span>",
            esc(reason),
            esc(model)
        ));
    }
    let _ = writeln!(out, "<p class=\"meta\">{}</p>", meta.join(" · "));
    for line in a.activity.iter().chain(&a.load_warnings) {
        let _ = writeln!(out, "<p class=\"meta\">{}</p>", esc(line));
    }
    out.push_str("<div class=\"cards\">\n");
    let _ = writeln!(
        out,
        "<div class=\"card\" id=\"score\"><div class=\"big\">{}</div>Pass rate: {passed} of \
         {applicable} applicable checks pass</div>",
        pct.map_or("n/a".to_string(), |p| format!("{p:.0}%"))
    );
    let (verdict, class) = if a.gate.passed {
        ("PASS", "gate-pass")
    } else {
        ("FAIL", "gate-fail")
    };
    let _ = write!(
        out,
        "<div class=\"card gate {class}\" id=\"gate\"><div class=\"big\">Gate {verdict}</div>\
         fail-on {}",
        esc(&a.gate.fail_on)
    );
    if !a.gate.reasons.is_empty() {
        out.push_str("<ul>");
        for r in &a.gate.reasons {
            let _ = write!(out, "<li>{}</li>", esc(r));
        }
        out.push_str("</ul>");
    }
    out.push_str("</div>\n<div class=\"card\" id=\"severities\"><table>");
    for sev in Severity::ALL {
        let checks = a
            .checks
            .iter()
            .filter(|c| c.result.severity == sev && is_issue(c))
            .count();
        let new = a
            .checks
            .iter()
            .filter(|c| c.result.severity == sev)
            .flat_map(|c| &c.findings)
            .filter(|f| f.counts())
            .count();
        let _ = write!(
            out,
            "<tr><td><span class=\"sev {s}\">{s}</span></td><td>{checks} check{}</td>\
             <td>{new} new finding{}</td></tr>",
            plural(checks),
            plural(new),
            s = sev.as_str()
        );
    }
    out.push_str("</table></div>\n</div>\n");
    for e in &a.expired_waivers {
        let _ = writeln!(out, "<p class=\"warning\">Warning: {}</p>", esc(e));
    }
    out.push_str("</header>\n");
}

/// With `--history`: the score and the findings per severity over the earlier audits
/// and this one, drawn inline (SVG), and the same as a table with the findings per
/// section.
fn trend(out: &mut String, a: &Assessment) {
    if a.history.is_empty() {
        return;
    }
    let mut points: Vec<TrendPoint> = a.history.clone();
    points.push(TrendPoint::of(a));
    let _ = writeln!(
        out,
        "<section id=\"trend\">\n<h2>Trend</h2>\n<p class=\"note\">{} audits from the \
         history directory, the last one this audit.</p>\n<div class=\"charts\">",
        points.len()
    );
    let scores: Vec<Option<f64>> = points.iter().map(|p| p.score).collect();
    chart(
        out,
        "trend-score",
        "Score (%)",
        100.0,
        &[("score", "score", scores)],
        &points,
    );
    let series: Vec<(&str, &str, Vec<Option<f64>>)> = Severity::ALL
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                s.as_str(),
                s.as_str(),
                points
                    .iter()
                    .map(|p| Some(p.by_severity[i] as f64))
                    .collect(),
            )
        })
        .collect();
    let max = points
        .iter()
        .flat_map(|p| p.by_severity)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    chart(
        out,
        "trend-findings",
        "Findings per severity",
        max,
        &series,
        &points,
    );
    out.push_str("</div>\n<table id=\"trend-table\">\n<thead><tr><th>Date</th><th>Database</th><th>Score</th>");
    for s in Severity::ALL {
        let _ = write!(
            out,
            "<th><span class=\"sev {0}\">{0}</span></th>",
            s.as_str()
        );
    }
    let sections: Vec<&str> = by_section(a).into_iter().map(|(s, _)| s).collect();
    for s in &sections {
        let _ = write!(out, "<th>{}</th>", esc(section_title(s)));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for p in &points {
        let date = chrono::DateTime::parse_from_rfc3339(&p.started_at)
            .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_else(|_| p.started_at.clone());
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td>",
            esc(&date),
            esc(&p.database),
            p.score.map_or("n/a".into(), |s| format!("{s:.0}%"))
        );
        for n in p.by_severity {
            let _ = write!(out, "<td>{n}</td>");
        }
        for s in &sections {
            let _ = write!(
                out,
                "<td>{}</td>",
                p.by_section.get(*s).copied().unwrap_or(0)
            );
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

/// A line chart: one polyline per series over the points, y from 0 to `max`, a dot
/// per value with its date and value as a tooltip.
fn chart(
    out: &mut String,
    id: &str,
    title: &str,
    max: f64,
    series: &[(&str, &str, Vec<Option<f64>>)],
    points: &[TrendPoint],
) {
    const W: f64 = 420.0;
    const H: f64 = 150.0;
    const PAD: f64 = 24.0;
    let n = points.len();
    let x = |i: usize| PAD + (W - 2.0 * PAD) * i as f64 / (n.max(2) - 1) as f64;
    let y = |v: f64| PAD + (H - 2.0 * PAD) * (1.0 - (v / max).clamp(0.0, 1.0));
    let _ = write!(
        out,
        "<figure class=\"chart\" id=\"{id}\"><figcaption>{}</figcaption>\
         <svg viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"{}\">\
         <line class=\"axis\" x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\"/>\
         <text class=\"tick\" x=\"2\" y=\"{t}\">{max:.0}</text><text class=\"tick\" x=\"2\" y=\"{b}\">0</text>",
        esc(title),
        esc(title),
        b = H - PAD,
        r = W - PAD,
        t = PAD + 4.0,
    );
    for (class, name, values) in series {
        let coords: Vec<String> = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x(i), y(v))))
            .collect();
        let _ = write!(
            out,
            "<polyline class=\"line {class}\" points=\"{}\"><title>{}</title></polyline>",
            coords.join(" "),
            esc(name)
        );
        for (i, v) in values.iter().enumerate() {
            if let Some(v) = v {
                let _ = write!(
                    out,
                    "<circle class=\"dot {class}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\"><title>{} {}: {v:.0}</title></circle>",
                    x(i),
                    y(*v),
                    esc(&points[i].started_at),
                    esc(name)
                );
            }
        }
    }
    out.push_str("</svg>");
    if series.len() > 1 {
        out.push_str("<div class=\"keys\">");
        for (class, name, _) in series {
            let _ = write!(out, "<span class=\"key {class}\">{}</span> ", esc(name));
        }
        out.push_str("</div>");
    }
    out.push_str("</figure>\n");
}

/// One bar per section: how many of its checks pass, are partial, fail or errored,
/// and how many were not counted.
fn sections(out: &mut String, a: &Assessment) {
    out.push_str("<section id=\"sections\">\n<h2>Sections</h2>\n<table class=\"bars\">\n");
    for (section, checks) in by_section(a) {
        let (passed, applicable) = tally(&checks);
        let count = |s: Status| checks.iter().filter(|c| c.result.status == s).count();
        let uncounted = checks.len() - applicable;
        let _ = write!(
            out,
            "<tr data-section=\"{}\"><th>{}</th><td class=\"ratio\">{passed}/{applicable}</td>\
             <td><div class=\"bar\" role=\"img\" aria-label=\"",
            esc(section),
            esc(section_title(section))
        );
        let parts = [
            ("pass", count(Status::Pass)),
            ("partial", count(Status::Partial)),
            ("fail", count(Status::Fail)),
            ("error", count(Status::Error)),
            ("other", uncounted),
        ];
        let label: Vec<String> = parts
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| format!("{n} {}", if *s == "other" { "not counted" } else { s }))
            .collect();
        let _ = write!(out, "{}\">", label.join(", "));
        for (class, n) in parts {
            if n > 0 {
                let _ = write!(
                    out,
                    "<span class=\"{class}\" style=\"flex-grow:{n}\" title=\"{n} {}\">{n}</span>",
                    if class == "other" {
                        "not counted (skipped, not applicable, manual)"
                    } else {
                        class
                    }
                );
            }
        }
        out.push_str("</div></td></tr>\n");
    }
    out.push_str(
        "</table>\n<p class=\"legend\"><span class=\"pass\">pass</span> \
                  <span class=\"partial\">partial</span> <span class=\"fail\">fail</span> \
                  <span class=\"error\">error</span> <span class=\"other\">not counted</span></p>\n\
                  </section>\n",
    );
}

/// The table: a row per finding of a failing check, a row per other check (what it
/// found, or why it did not judge).
fn findings(out: &mut String, a: &Assessment) {
    let sections = by_section(a);
    let mut statuses: Vec<Status> = vec![];
    for s in Status::ALL {
        if a.checks.iter().any(|c| c.result.status == s) {
            statuses.push(s);
        }
    }
    out.push_str("<section id=\"findings\">\n<h2>Findings</h2>\n<form id=\"filters\">\n");
    out.push_str("<label>Severity <select name=\"severity\"><option value=\"\">all</option>");
    for sev in Severity::ALL {
        let _ = write!(out, "<option>{}</option>", sev.as_str());
    }
    out.push_str("</select></label>\n<label>Section <select name=\"section\"><option value=\"\">all</option>");
    for (section, _) in &sections {
        let _ = write!(
            out,
            "<option value=\"{}\">{}</option>",
            esc(section),
            esc(section_title(section))
        );
    }
    out.push_str(
        "</select></label>\n<label>Status <select name=\"status\">\
                  <option value=\"issues\" selected>needs work (partial, fail, error)</option>\
                  <option value=\"\">all</option>",
    );
    for s in statuses {
        let _ = write!(out, "<option>{}</option>", s.as_str());
    }
    out.push_str(
        "</select></label>\n<label>Object <input name=\"q\" type=\"search\" \
                  placeholder=\"e.g. public.tickets\"></label>\n\
                  <output id=\"shown\"></output>\n</form>\n",
    );
    out.push_str(
        "<table id=\"rows\">\n<thead><tr><th>Severity</th><th>Check</th><th>Status</th>\
         <th>Object</th><th>Evidence</th><th>Remediation and fix</th></tr></thead>\n<tbody>\n",
    );
    // The most severe first; within a severity, report order (section, then check);
    // a check's findings in the assessment's order (new ones first).
    let mut ordered: Vec<&Assessed> = sections.iter().flat_map(|(_, v)| v.clone()).collect();
    ordered.sort_by_key(|c| std::cmp::Reverse(c.result.severity));
    let mut total = 0;
    for c in ordered {
        if c.findings.is_empty() {
            row(out, c, None);
            total += 1;
        }
        for f in &c.findings {
            row(out, c, Some(f));
            total += 1;
        }
    }
    let _ = write!(
        out,
        "</tbody>\n</table>\n<p id=\"none\" hidden>No row matches these filters.</p>\n\
         <p class=\"legend\">{total} rows: one per finding of a failing check, one per other check.</p>\n\
         </section>\n"
    );
}

fn row(out: &mut String, c: &Assessed, f: Option<&crate::audit::gate::Finding>) {
    let r = &c.result;
    let check = &r.check;
    let mut search = vec![check.id.to_lowercase()];
    if let Some(f) = f {
        search.push(f.object.to_lowercase());
        search.extend(f.related.iter().map(|o| o.to_lowercase()));
    } else {
        search.extend(r.objects.iter().map(|o| o.object.to_lowercase()));
    }
    let disp = f.map(|f| disposition(f).unwrap_or("new"));
    let _ = write!(
        out,
        "<tr data-severity=\"{}\" data-section=\"{}\" data-status=\"{}\"{} data-search=\"{}\">",
        r.severity.as_str(),
        esc(&check.section),
        r.status.as_str(),
        disp.map_or(String::new(), |d| format!(" data-finding=\"{d}\"")),
        esc(&search.join(" "))
    );
    let _ = write!(
        out,
        "<td><span class=\"sev {s}\">{s}</span></td><td>{}<br><code class=\"id\">{}</code></td>\
         <td><span class=\"st {st}\">{}</span></td>",
        esc(&check.title),
        esc(&check.id),
        status_label(r.status),
        s = r.severity.as_str(),
        st = r.status.as_str()
    );
    // Object and evidence.
    match f {
        Some(f) => {
            let _ = write!(out, "<td><code>{}</code>", esc(&f.object));
            if let Some(d) = disposition(f) {
                let _ = write!(out, " <span class=\"disp\">{d}</span>");
            }
            if let Some(w) = &f.waiver_reason {
                let _ = write!(out, "<div class=\"note\">waived: {}</div>", esc(w));
            }
            if !f.related.is_empty() {
                let _ = write!(
                    out,
                    "<div class=\"note\">also: {}</div>",
                    esc(&f.related.join(", "))
                );
            }
            out.push_str("</td><td>");
            evidence(
                out,
                if f.evidence.is_empty() {
                    &f.object
                } else {
                    &f.evidence
                },
            );
            out.push_str("</td>");
        }
        None => {
            out.push_str("<td></td><td>");
            evidence(out, &summary_evidence(c, 3));
            out.push_str("</td>");
        }
    }
    // Remediation and fix: only where there is something to fix.
    out.push_str("<td>");
    if r.status.is_failing() || r.status == Status::Error {
        fix(out, c);
    }
    out.push_str("</td></tr>\n");
}

/// Evidence shortened as in the other human formats; the whole of it one click away.
fn evidence(out: &mut String, text: &str) {
    let cut = short(text);
    if cut.len() == text.len() {
        out.push_str(&esc(text));
    } else {
        let _ = write!(
            out,
            "<details><summary>{}</summary>{}</details>",
            esc(&cut),
            esc(text)
        );
    }
}

fn fix(out: &mut String, c: &Assessed) {
    let check = &c.result.check;
    if !check.fixed_by.is_empty() {
        let names: Vec<String> = check
            .fixed_by
            .iter()
            .map(|m| format!("<code>{}</code>", esc(m)))
            .collect();
        let _ = write!(
            out,
            "<div class=\"fixed\" title=\"pg-integrity migrate plan shows the SQL; \
             pg-integrity migrate apply applies it\">Fixed by {} \
             (<code class=\"cmd\">pg-integrity migrate apply</code>)</div>",
            names.join(", ")
        );
    }
    if let Some(t) = &check.fix {
        // `pg-integrity fix` writes this finding's migration from the check's template.
        let _ = write!(
            out,
            "<div class=\"fixed\" title=\"{}\">Migration for this database: \
             <code>pg-integrity fix --only {}</code></div>",
            esc(&t.summary),
            esc(&check.id)
        );
    }
    let text = check.remediation.trim();
    if text.is_empty() {
        return;
    }
    let summary = first_sentence(text);
    out.push_str("<details><summary>");
    out.push_str(&esc(&summary));
    out.push_str("</summary>");
    if looks_like_sql(text) {
        let _ = write!(out, "<pre><code>{}</code></pre>", esc(text));
    } else {
        let _ = write!(out, "<p>{}</p>", esc(text));
    }
    out.push_str("</details>");
}

/// The remediation's first sentence (or line), at most about 120 characters, cut
/// at a word.
fn first_sentence(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    let end = line
        .char_indices()
        .find(|&(i, ch)| ch == '.' && line[i + 1..].starts_with(' '))
        .map_or(line.len(), |(i, _)| i + 1);
    let sentence = &line[..end];
    if sentence.chars().count() <= 120 {
        return sentence.to_string();
    }
    let cut: String = sentence.chars().take(120).collect();
    let at = cut.rfind(' ').unwrap_or(cut.len());
    format!("{}…", cut[..at].trim_end_matches([',', ';', ':']))
}

fn is_issue(c: &Assessed) -> bool {
    c.result.status.is_failing() || c.result.status == Status::Error
}

fn status_label(s: Status) -> &'static str {
    super::markdown::status_label(s)
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Text and attribute values, escaped.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(ch),
        }
    }
    o
}

const STYLE: &str = r##"
:root{--pass:#2e7d32;--partial:#f9a825;--fail:#c62828;--error:#6a1b9a;--other:#b0bec5;--fg:#1d232a;--muted:#5f6b76;--line:#dde3e8;--bg:#fff;--soft:#f4f6f8}
*{box-sizing:border-box}
body{margin:0;padding:24px 32px;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
h1{margin:0 0 4px;font-size:24px}h1 span{font-weight:400;color:var(--muted)}
h2{font-size:18px;margin:28px 0 10px}
code{font:12.5px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;word-break:break-word}
.meta{color:var(--muted);margin:0 0 16px}.meta b{color:var(--fg);font-weight:600}
.cards{display:flex;gap:16px;flex-wrap:wrap;align-items:flex-start}
.card{border:1px solid var(--line);border-radius:8px;padding:12px 16px;min-width:220px;background:var(--soft)}
.card ul{margin:6px 0 0;padding-left:18px;max-width:720px}
.card table td{padding:2px 10px 2px 0}
.big{font-size:28px;font-weight:700}
.gate{flex:1 1 420px}.gate-fail{border-color:var(--fail)}.gate-fail .big{color:var(--fail)}.gate-pass .big{color:var(--pass)}
.warning{background:#fff8e1;border:1px solid #ffe082;border-radius:6px;padding:8px 12px}
table.bars{border-collapse:collapse;width:100%;max-width:960px}
table.bars th{text-align:left;font-weight:600;padding:4px 12px 4px 0;white-space:nowrap;width:1%}
table.bars td.ratio{color:var(--muted);width:1%;padding-right:12px;white-space:nowrap}
.bar{display:flex;height:18px;border-radius:4px;overflow:hidden;font-size:11px;line-height:18px;color:#fff;text-align:center}
.bar span{min-width:18px}
.pass{background:var(--pass)}.partial{background:var(--partial);color:#222}.fail{background:var(--fail)}.error{background:var(--error)}.other{background:var(--other);color:#222}
.legend{color:var(--muted);font-size:12px}.legend span{padding:1px 6px;border-radius:3px;color:#fff}.legend .partial,.legend .other{color:#222}
#filters{display:flex;gap:16px;flex-wrap:wrap;align-items:center;margin:0 0 10px;padding:10px 12px;background:var(--soft);border:1px solid var(--line);border-radius:8px;position:sticky;top:0}
#filters select,#filters input{font:inherit;padding:3px 6px}
#shown{color:var(--muted);margin-left:auto}
#rows{border-collapse:collapse;width:100%;table-layout:fixed}
#rows th{text-align:left;background:var(--soft);border-bottom:2px solid var(--line);padding:6px 8px;position:sticky;top:52px}
#rows td{border-bottom:1px solid var(--line);padding:6px 8px;vertical-align:top;overflow-wrap:anywhere}
#rows td:nth-child(1),#rows td:nth-child(3){overflow-wrap:normal}
#rows th:nth-child(1){width:90px}#rows th:nth-child(2){width:15%}#rows th:nth-child(3){width:100px}#rows th:nth-child(4){width:18%}#rows th:nth-child(5){width:33%}
.id{color:var(--muted)}
.sev,.st,.disp{display:inline-block;padding:1px 7px;border-radius:10px;font-size:12px;font-weight:600;white-space:nowrap}
.sev.critical{background:#4a0d0d;color:#fff}.sev.high{background:var(--fail);color:#fff}.sev.medium{background:var(--partial);color:#222}.sev.low{background:#cfd8dc;color:#222}
.st.pass{color:#fff}.st.fail,.st.error{color:#fff}.st.skipped,.st.not_applicable,.st.manual{background:var(--other);color:#222}
.disp{background:#e3f2fd;color:#0d47a1}
.note{color:var(--muted);font-size:12px}
.fixed{margin-bottom:4px}.cmd{white-space:nowrap}
details summary{cursor:pointer}
pre{white-space:pre-wrap;background:var(--soft);padding:8px;border-radius:4px;margin:6px 0}
footer{margin-top:32px;color:var(--muted);font-size:12px}
.charts{display:flex;gap:24px;flex-wrap:wrap}
.chart{margin:0}.chart figcaption{font-weight:600;margin-bottom:4px}
.chart .axis{stroke:var(--line)}.chart .tick{font-size:10px;fill:var(--muted)}
.chart .line{fill:none;stroke-width:2}.chart .dot{stroke:#fff;stroke-width:1}
.line.score{stroke:#1565c0}.dot.score{fill:#1565c0}
.line.critical{stroke:#4a0d0d}.dot.critical{fill:#4a0d0d}.line.high{stroke:var(--fail)}.dot.high{fill:var(--fail)}
.line.medium{stroke:var(--partial)}.dot.medium{fill:var(--partial)}.line.low{stroke:#90a4ae}.dot.low{fill:#90a4ae}
.keys{font-size:12px;color:var(--muted)}.key{padding:0 8px 0 4px;margin-right:6px;border-left:12px solid}.key.critical{border-color:#4a0d0d}.key.high{border-color:var(--fail)}.key.medium{border-color:var(--partial)}.key.low{border-color:#90a4ae}
#trend-table{border-collapse:collapse;margin-top:8px}#trend-table th,#trend-table td{padding:3px 10px;border-bottom:1px solid var(--line);text-align:right}
#trend-table th:nth-child(-n+2),#trend-table td:nth-child(-n+2){text-align:left;white-space:nowrap}
"##;

const SCRIPT: &str = r##"
(function () {
  "use strict";
  var form = document.getElementById("filters");
  var rows = Array.prototype.slice.call(document.querySelectorAll("#rows tbody tr"));
  var shown = document.getElementById("shown");
  var none = document.getElementById("none");
  var names = ["severity", "section", "status", "q"];
  var issues = { partial: true, fail: true, error: true };
  function fromHash() {
    var h = window.location.hash.replace(/^#/, "");
    if (!h) return;
    h.split("&").forEach(function (kv) {
      var i = kv.indexOf("=");
      if (i < 0) return;
      var k = decodeURIComponent(kv.slice(0, i));
      var v = decodeURIComponent(kv.slice(i + 1).replace(/\+/g, " "));
      if (names.indexOf(k) >= 0 && form.elements[k]) form.elements[k].value = v;
    });
  }
  function apply() {
    var sev = form.elements.severity.value;
    var sec = form.elements.section.value;
    var st = form.elements.status.value;
    var q = form.elements.q.value.trim().toLowerCase();
    var n = 0;
    rows.forEach(function (r) {
      var d = r.dataset;
      var ok = (!sev || d.severity === sev) && (!sec || d.section === sec) &&
        (!st || (st === "issues" ? issues[d.status] === true : d.status === st)) &&
        (!q || d.search.indexOf(q) >= 0);
      r.hidden = !ok;
      if (ok) n++;
    });
    shown.textContent = n + " of " + rows.length + " rows";
    document.body.setAttribute("data-shown", String(n));
    none.hidden = n > 0;
    var parts = [];
    names.forEach(function (k) {
      var v = form.elements[k].value;
      // "needs work" is the default status; "all" (empty) must be kept to be restored
      if (k === "status" ? v !== "issues" : v) parts.push(k + "=" + encodeURIComponent(v));
    });
    var url = parts.length ? "#" + parts.join("&") : window.location.pathname + window.location.search;
    try { window.history.replaceState(null, "", url); } catch (e) { /* not allowed for this URL */ }
  }
  fromHash();
  form.addEventListener("input", apply);
  form.addEventListener("change", apply);
  form.addEventListener("submit", function (e) { e.preventDefault(); });
  window.addEventListener("hashchange", function () { fromHash(); apply(); });
  apply();
  document.body.setAttribute("data-ready", "1");
})();
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn the_first_sentence_is_cut_at_a_word() {
        assert_eq!(first_sentence("Add a key. Then more."), "Add a key.");
        assert_eq!(first_sentence("Use 1.5 seconds"), "Use 1.5 seconds");
        let long = "word ".repeat(40);
        let s = first_sentence(&long);
        assert!(s.ends_with("word…"), "{s}");
        assert!(s.chars().count() <= 121);
    }
}
