//! The checks, their rules, and the report in text, JSON or JUnit XML.

use std::fmt::Write as _;

use serde_json::json;

/// Every check the tool knows, in the order of the report: id, rule (its id in docs/requirements.md), and
/// what it looks at. A check that was not run stays a skip naming the input it needs.
pub const CATALOG: &[(&str, &str, &str)] = &[
    ("probes.liveness-up", "R11", "liveness answers 200 once up"),
    (
        "probes.readiness-up",
        "R10",
        "readiness answers 200 once up",
    ),
    (
        "logs.model",
        "R13",
        "every stdout line is one JSON object in the eHealth logging model",
    ),
    (
        "logs.no-secrets",
        "R13",
        "no CPR number, token, credential or secret parameter in any output line",
    ),
    (
        "logs.bad-request-alert",
        "R14",
        "a bad request is answered 4xx and leaves an `alert` line",
    ),
    (
        "propagation.b3-multi",
        "R16",
        "B3 multi headers: same trace and decision, the inbound span or a child of it",
    ),
    (
        "propagation.b3-single",
        "R16",
        "B3 single header: same trace and decision, the inbound span or a child of it",
    ),
    (
        "propagation.forwarded-headers",
        "R16",
        "x-request-id, x-ot-span-context, W3C and audit headers passed on",
    ),
    (
        "propagation.user-agent",
        "R17",
        "outbound calls carry a User-Agent naming the application",
    ),
    (
        "propagation.log-id",
        "R13",
        "the request's log lines carry its trace id as `id`",
    ),
    (
        "shutdown.readiness-503",
        "R10",
        "readiness turns 503 within 1 s of SIGTERM",
    ),
    (
        "shutdown.liveness-200",
        "R11",
        "liveness stays 200 after SIGTERM",
    ),
    (
        "shutdown.serves-new-connections",
        "R8",
        "new connections are served for --min-delay after SIGTERM",
    ),
    (
        "shutdown.drains-slow-request",
        "R8",
        "a --slow-path request in flight at SIGTERM completes 2xx",
    ),
    (
        "shutdown.exit-0",
        "R8",
        "the process exits 0 inside the grace period",
    ),
    (
        "shutdown.second-sigterm",
        "R8",
        "a second SIGTERM still ends the process inside the grace period",
    ),
    (
        "shutdown.stuck-request",
        "R8",
        "requests that never finish still let the process end inside the grace period",
    ),
    (
        "image.user",
        "R5",
        "the image's user is numeric and not root",
    ),
    (
        "image.read-only",
        "R1",
        "the container serves with a read-only root filesystem",
    ),
    (
        "image.capabilities",
        "R5",
        "the container serves with every capability dropped and has none",
    ),
    (
        "image.pid1",
        "R8",
        "the service itself is PID 1 (no shell in front to swallow SIGTERM)",
    ),
    (
        "image.no-shell",
        "R4",
        "no shell, as on the platform's distroless bases (a warning)",
    ),
    (
        "chart.render",
        "R7",
        "the chart renders with the Helm engine",
    ),
    (
        "chart.probes",
        "R10",
        "liveness and readiness probes on the given paths",
    ),
    (
        "chart.grace-period",
        "R8",
        "terminationGracePeriodSeconds consistent with the service's delay and deadline",
    ),
    ("chart.replicas", "R9", "at least 2 replicas"),
    ("chart.zone-spread", "R9", "replicas spread over zones"),
    (
        "chart.max-unavailable",
        "R12",
        "rolling update with maxUnavailable: 0",
    ),
    (
        "chart.pdb",
        "R9",
        "a PodDisruptionBudget selecting the pods",
    ),
    (
        "chart.security-context",
        "R5",
        "non-root, no privilege escalation, capabilities dropped, read-only root fs",
    ),
    (
        "chart.resources",
        "R9",
        "resource requests and limits on every container",
    ),
];

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Skip => "skip",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone)]
pub struct Check {
    pub id: &'static str,
    pub rule: &'static str,
    pub status: Status,
    pub detail: String,
}

/// Every check of the catalog, each a skip until a run sets it.
#[derive(Debug, Clone)]
pub struct Report {
    checks: Vec<Check>,
}

/// What the text output prefixes to a passing check's detail that is a warning.
pub const WARNING: &str = "warning: ";

impl Report {
    /// All checks skipped; `why(id)` says which input each one would have needed.
    pub fn new(why: impl Fn(&str) -> &'static str) -> Self {
        let checks = CATALOG
            .iter()
            .map(|&(id, rule, _)| Check {
                id,
                rule,
                status: Status::Skip,
                detail: why(id).to_owned(),
            })
            .collect();
        Self { checks }
    }

    /// Records a result; an unknown id is a programming error that the tests catch.
    pub fn set(&mut self, id: &str, status: Status, detail: impl Into<String>) {
        let detail = one_line(&detail.into());
        match self.checks.iter_mut().find(|check| check.id == id) {
            Some(check) => {
                check.status = status;
                check.detail = detail;
            }
            None => debug_assert!(false, "unknown check id {id}"),
        }
    }

    /// Records a pass or a fail: `Ok(detail)` passes, `Err(detail)` fails.
    pub fn result(&mut self, id: &str, outcome: Result<String, String>) {
        match outcome {
            Ok(detail) => self.set(id, Status::Pass, detail),
            Err(detail) => self.set(id, Status::Fail, detail),
        }
    }

    pub fn count(&self, status: Status) -> usize {
        self.checks
            .iter()
            .filter(|check| check.status == status)
            .count()
    }

    pub fn failed(&self) -> bool {
        self.count(Status::Fail) > 0
    }

    pub fn json(&self) -> String {
        let checks: Vec<_> = self
            .checks
            .iter()
            .map(|check| {
                json!({"id": check.id, "rule": check.rule, "status": check.status.as_str(), "detail": check.detail})
            })
            .collect();
        let summary = json!({
            "pass": self.count(Status::Pass),
            "fail": self.count(Status::Fail),
            "skip": self.count(Status::Skip),
        });
        json!({"checks": checks, "summary": summary}).to_string()
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        for check in &self.checks {
            let label = match check.status {
                Status::Pass if check.detail.starts_with(WARNING) => "WARN",
                Status::Pass => "PASS",
                Status::Fail => "FAIL",
                Status::Skip => "skip",
            };
            let _ = writeln!(
                out,
                "{label} {:<4} {:<32} {}",
                check.rule, check.id, check.detail
            );
        }
        let _ = writeln!(
            out,
            "{} passed, {} failed, {} skipped",
            self.count(Status::Pass),
            self.count(Status::Fail),
            self.count(Status::Skip)
        );
        out
    }

    pub fn junit(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<testsuites><testsuite name=\"telemed-conform\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">",
            self.checks.len(),
            self.count(Status::Fail),
            self.count(Status::Skip)
        );
        for check in &self.checks {
            let _ = write!(
                out,
                "<testcase classname=\"{}\" name=\"{}\">",
                check.rule, check.id
            );
            let detail = xml_escape(&check.detail);
            match check.status {
                Status::Pass => {
                    let _ = write!(out, "<system-out>{detail}</system-out>");
                }
                Status::Fail => {
                    let _ = write!(out, "<failure message=\"{detail}\"/>");
                }
                Status::Skip => {
                    let _ = write!(out, "<skipped message=\"{detail}\"/>");
                }
            }
            out.push_str("</testcase>\n");
        }
        out.push_str("</testsuite></testsuites>\n");
        out
    }
}

/// Details are one line each, whatever a service wrote into them.
fn one_line(text: &str) -> String {
    text.split(['\n', '\r'])
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_ids_are_unique_and_rules_are_r1_to_r19() {
        for (index, (id, rule, _)) in CATALOG.iter().enumerate() {
            assert!(
                !CATALOG[..index].iter().any(|(other, _, _)| other == id),
                "{id} twice"
            );
            let number: u8 = rule.trim_start_matches('R').parse().unwrap_or(0);
            assert!(
                rule.starts_with('R') && (1..=19).contains(&number),
                "{id}: {rule}"
            );
        }
    }

    #[test]
    fn the_conformance_page_documents_every_check_with_its_rule() {
        let page = include_str!("../../../docs/conformance.md");
        for (id, rule, _) in CATALOG {
            assert!(
                page.contains(&format!("| `{id}` | {rule} |")),
                "docs/conformance.md has no row for {id} ({rule})"
            );
        }
    }

    #[test]
    fn json_has_the_documented_shape_and_counts() {
        let mut report = Report::new(|_| "not given");
        report.set("probes.liveness-up", Status::Pass, "200");
        report.set("probes.readiness-up", Status::Fail, "saw 503\nthen more");
        let value: serde_json::Value = serde_json::from_str(&report.json()).unwrap_or_default();
        assert_eq!(value["summary"]["pass"], 1);
        assert_eq!(value["summary"]["fail"], 1);
        assert_eq!(value["summary"]["skip"], CATALOG.len() - 2);
        assert_eq!(value["checks"][1]["rule"], "R10");
        assert_eq!(value["checks"][1]["status"], "fail");
        assert_eq!(value["checks"][1]["detail"], "saw 503 | then more");
        assert!(report.failed());
    }

    #[test]
    fn junit_escapes_details() {
        let mut report = Report::new(|_| "not given");
        report.set("logs.model", Status::Fail, "line <\"x\"> & more");
        let xml = report.junit();
        assert!(
            xml.contains("message=\"line &lt;&quot;x&quot;&gt; &amp; more\""),
            "{xml}"
        );
    }
}
