//! The command line: the names are an interface that scripts and CI jobs call.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use http::{HeaderName, HeaderValue};

/// Checks a service, in any language, against the eHealth Infrastructure's container rules (R1 to R19 of
/// docs/requirements.md). Exit status: 0 when every check that applies passes, 1 when any fails, 2 for bad usage.
#[derive(Debug, Parser)]
#[command(
    name = "telemed-conform",
    version,
    override_usage = "telemed-conform [OPTIONS] -- COMMAND [ARGS...]\n       \
                      telemed-conform [OPTIONS] --image IMAGE\n       \
                      telemed-conform --chart DIR [--values FILE]"
)]
pub struct Cli {
    /// Check a container image, run with podman as the platform runs it.
    #[arg(long, value_name = "IMAGE", conflicts_with = "command")]
    pub image: Option<String>,

    /// Check a Helm chart's rendered manifests (may be given with a service or an image too).
    #[arg(long, value_name = "DIR")]
    pub chart: Option<PathBuf>,

    /// A values file for --chart (repeatable; later files win).
    #[arg(long, value_name = "FILE", requires = "chart")]
    pub values: Vec<PathBuf>,

    /// The port the service listens on; also passed to it as PORT. Default: a free port.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// An environment variable for the service (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,

    /// The liveness probe's path.
    #[arg(long, value_name = "PATH", default_value = "/livez", value_parser = parse_path)]
    pub liveness_path: String,

    /// The readiness probe's path.
    #[arg(long, value_name = "PATH", default_value = "/healthz", value_parser = parse_path)]
    pub readiness_path: String,

    /// The platform's grace period between SIGTERM and SIGKILL.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub grace_period: Duration,

    /// How long the service must keep accepting new connections after SIGTERM.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub min_delay: Duration,

    /// A route that takes about a second, used to check draining.
    #[arg(long, value_name = "PATH", value_parser = parse_path)]
    pub slow_path: Option<String>,

    /// The variable through which the service reads the base URL of a service it calls.
    #[arg(long, value_name = "NAME", requires = "trigger", value_parser = parse_env_name)]
    pub upstream_env: Option<String>,

    /// A route of the service that makes one outbound call to the upstream.
    #[arg(long, value_name = "PATH", requires = "upstream_env", value_parser = parse_path)]
    pub trigger: Option<String>,

    /// A header added to every request the checker sends (repeatable), e.g. 'Authorization: Bearer ...'.
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    pub headers: Vec<(HeaderName, HeaderValue)>,

    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,

    /// A route that must answer bad input with 4xx and log an `alert` line.
    #[arg(long, value_name = "PATH", default_value = "/telemed-conform/bad-request", value_parser = parse_path)]
    pub bad_request_path: String,

    /// How long the service may take to answer readiness 200 after it starts.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = parse_duration)]
    pub startup_timeout: Duration,

    /// An extra argument for `podman run` (repeatable), e.g. `--podman-arg=--ulimit=nofile=20000:20000`;
    /// TELEMED_CONFORM_PODMAN_ARGS adds more, split at whitespace.
    #[arg(long = "podman-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub podman_args: Vec<String>,

    /// The Python that renders charts: it must import helm_python (PyPI helm-python-sdk) and yaml.
    #[arg(
        long,
        value_name = "PATH",
        env = "TELEMED_CONFORM_PYTHON",
        default_value = "python3"
    )]
    pub python: String,

    /// The service's command and arguments, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// How the report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Junit,
}

fn parse_env(raw: &str) -> Result<(String, String), String> {
    let (key, value) = raw
        .split_once('=')
        .ok_or_else(|| format!("{raw:?} is not KEY=VALUE"))?;
    Ok((parse_env_name(key)?, value.to_owned()))
}

fn parse_env_name(raw: &str) -> Result<String, String> {
    let valid = raw.bytes().next().is_some_and(|b| !b.is_ascii_digit())
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if valid {
        Ok(raw.to_owned())
    } else {
        Err(format!(
            "{raw:?} is not a variable name (letters, digits and _, not starting with a digit)"
        ))
    }
}

fn parse_path(raw: &str) -> Result<String, String> {
    if raw.starts_with('/')
        && !raw
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        Ok(raw.to_owned())
    } else {
        Err(format!(
            "{raw:?} is not a request path (it starts with / and has no spaces)"
        ))
    }
}

fn parse_duration(raw: &str) -> Result<Duration, String> {
    humantime::parse_duration(raw)
        .map_err(|error| format!("{raw:?} is not a duration such as 10s or 1500ms: {error}"))
}

fn parse_header(raw: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = raw
        .split_once(':')
        .ok_or_else(|| format!("{raw:?} is not 'NAME: VALUE'"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("{:?} is not a header name", name.trim()))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("the value of header {name} has characters a header cannot carry"))?;
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked() {
        assert!(parse_env("A_B=x=y").is_ok_and(|(k, v)| k == "A_B" && v == "x=y"));
        assert!(parse_env("1A=x").is_err());
        assert!(parse_env("novalue").is_err());
        assert!(parse_path("livez").is_err());
        assert!(parse_duration("10").is_err());
        assert!(parse_header("Authorization: Bearer x").is_ok());
        assert!(parse_header("Bad Name: x").is_err());
    }
}
