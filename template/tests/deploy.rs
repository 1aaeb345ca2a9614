//! The deployment files agree with the crate: one version, one port, one User-Agent. A release bumps the
//! version in Cargo.toml; this test then names every file that still carries the old one.

#![allow(clippy::unwrap_used)]

use std::path::Path;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const PORT: &str = "{{port}}";

/// The User-Agent the service identifies itself with on outbound calls (R17).
fn user_agent() -> String {
    format!("{{vendor}}-{}/{VERSION}", env!("CARGO_PKG_NAME"))
}

/// The file's lines, trimmed, so that a check names a whole line and not a fragment of one.
fn lines(path: &str) -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|error| panic!("{path}: {error}"));
    text.lines().map(|line| line.trim().to_owned()).collect()
}

fn assert_has_line(path: &str, expected: &str) {
    assert!(
        lines(path).iter().any(|line| line == expected),
        "{path} should have the line `{expected}`"
    );
}

/// The value of the `env` entry `name` (a `- name: NAME` line, then its `value: ...` line), so that a check
/// reads that variable's value and not any `value:` line of the file.
fn env_value(path: &str, name: &str) -> Option<String> {
    let lines = lines(path);
    let at = lines.iter().position(|line| *line == format!("- name: {name}"))?;
    lines
        .get(at + 1)
        .and_then(|line| line.strip_prefix("value: "))
        .map(str::to_owned)
}

#[test]
fn ehealth_platform_values_carry_the_version_port_and_user_agent() {
    let path = "deploy/ehealth-values.yaml";
    assert_has_line(path, &format!("imageTag: \"{VERSION}\""));
    assert_has_line(path, &format!("appVersion: \"{VERSION}\""));
    assert_has_line(path, &format!("containerPort: {PORT}"));
    assert_eq!(env_value(path, "PORT"), Some(format!("\"{PORT}\"")), "{path}: PORT");
    assert_eq!(env_value(path, "USER_AGENT"), Some(user_agent()), "{path}: USER_AGENT");
}
{%- if chart %}

#[test]
fn chart_carries_the_version_port_and_user_agent() {
    assert_has_line("chart/Chart.yaml", &format!("appVersion: \"{VERSION}\""));
    assert_has_line("chart/values.yaml", &format!("containerPort: {PORT}"));
    assert_has_line("chart/values.yaml", &format!("USER_AGENT: {}", user_agent()));
}
{%- endif %}

#[test]
fn the_image_exposes_the_port() {
    assert_has_line("Dockerfile", &format!("EXPOSE {PORT}"));
}
