//! The posture report as Markdown (for a pull request or a ticket) and as a self-contained HTML
//! page (for an auditor): per dataset a grid of the checks, then each finding with its fix.

use crate::Report;
use std::fmt::Write;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Markdown.
#[must_use]
pub fn markdown(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Backup posture (3-2-1-1-0)\n");
    let _ = writeln!(
        o,
        "Assessed {} from `{}`: **{}**.\n",
        r.assessed_at,
        r.inventory,
        if r.passed {
            "every check holds"
        } else {
            "checks FAIL"
        }
    );
    for d in &r.datasets {
        let _ = writeln!(
            o,
            "## {} — {}\n",
            md(&d.dataset),
            if d.passed { "pass" } else { "FAIL" }
        );
        let _ = writeln!(o, "| check | result | measured | controls |");
        let _ = writeln!(o, "|---|---|---|---|");
        for c in &d.checks {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} |",
                c.title,
                if c.passed { "pass" } else { "**FAIL**" },
                md(&c.measured),
                c.controls.join("; ")
            );
        }
        let _ = writeln!(
            o,
            "\n| copy | platform | site | newest held | lock | last verified |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|");
        for c in &d.copies {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} |",
                md(&c.copy),
                c.platform,
                md(c.site.as_deref().unwrap_or("unknown")),
                if c.newest.is_some() { "yes" } else { "no" },
                c.retention.as_ref().map_or_else(
                    || "none".to_owned(),
                    |l| md(&format!("{} {}", l.mode, l.retain_until))
                ),
                c.last_verified.as_ref().map_or_else(
                    || "never".to_owned(),
                    |v| format!("{} ({})", v.at, v.outcome)
                )
            );
        }
        let findings: Vec<_> = d
            .checks
            .iter()
            .flat_map(|c| c.findings.iter().map(move |f| (c.id, f)))
            .collect();
        if !findings.is_empty() {
            let _ = writeln!(o, "\n### Findings\n");
            for (id, f) in findings {
                let _ = writeln!(o, "- **{id}**: {}  \n  Fix: `{}`", md(&f.message), f.fix);
            }
        }
        let _ = writeln!(o);
    }
    o
}

/// A self-contained HTML page.
#[must_use]
pub fn html(r: &Report) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Backup posture</title><style>\
body{{font:15px/1.45 system-ui,sans-serif;margin:2rem;color:#1b1b1b}}table{{border-collapse:collapse;margin:.6rem 0 1.2rem}}\
td,th{{border:1px solid #c8c8c8;padding:.3rem .6rem;text-align:left;vertical-align:top}}th{{background:#f1f1f1}}\
.pass{{color:#0b6b2f;font-weight:600}}.fail{{color:#a30d0d;font-weight:700}}code{{background:#f4f4f4;padding:0 .2rem}}\
</style></head><body><h1>Backup posture (3-2-1-1-0)</h1><p>Assessed {} from <code>{}</code>: <span class=\"{}\">{}</span></p>",
        esc(&r.assessed_at),
        esc(&r.inventory),
        if r.passed { "pass" } else { "fail" },
        if r.passed {
            "every check holds"
        } else {
            "checks fail"
        }
    );
    for d in &r.datasets {
        let _ = write!(
            o,
            "<h2>{} — <span class=\"{}\">{}</span></h2><table><tr><th scope=\"col\">Check</th><th scope=\"col\">Result</th><th scope=\"col\">Measured</th><th scope=\"col\">Controls</th></tr>",
            esc(&d.dataset),
            if d.passed { "pass" } else { "fail" },
            if d.passed { "pass" } else { "FAIL" }
        );
        for c in &d.checks {
            let _ = write!(
                o,
                "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(c.title),
                if c.passed { "pass" } else { "fail" },
                if c.passed { "✓ pass" } else { "✗ FAIL" },
                esc(&c.measured),
                esc(&c.controls.join("; "))
            );
        }
        let _ = write!(
            o,
            "</table><table><tr><th scope=\"col\">Copy</th><th scope=\"col\">Platform</th><th scope=\"col\">Site</th><th scope=\"col\">Newest held</th><th scope=\"col\">Lock</th><th scope=\"col\">Last verified</th></tr>"
        );
        for c in &d.copies {
            let _ = write!(
                o,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&c.copy),
                c.platform,
                esc(c.site.as_deref().unwrap_or("unknown")),
                if c.newest.is_some() { "yes" } else { "no" },
                esc(&c.retention.as_ref().map_or_else(
                    || "none".to_owned(),
                    |l| format!("{} {}", l.mode, l.retain_until)
                )),
                esc(&c.last_verified.as_ref().map_or_else(
                    || "never".to_owned(),
                    |v| format!("{} ({})", v.at, v.outcome)
                ))
            );
        }
        o.push_str("</table>");
        let findings: Vec<_> = d
            .checks
            .iter()
            .flat_map(|c| c.findings.iter().map(move |f| (c.id, f)))
            .collect();
        if !findings.is_empty() {
            o.push_str("<h3>Findings</h3><ul>");
            for (id, f) in findings {
                let _ = write!(
                    o,
                    "<li><strong>{id}</strong>: {}<br>Fix: <code>{}</code></li>",
                    esc(&f.message),
                    esc(&f.fix)
                );
            }
            o.push_str("</ul>");
        }
    }
    o.push_str("</body></html>\n");
    o
}
