//! `LOG_LEVEL` and `LOG_FORMAT`.

use tracing_subscriber::EnvFilter;

use crate::config::{ConfigError, Env};

/// `LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (the platform's format).
    Json,
    /// tracing-subscriber's human-readable format, for local development only.
    Pretty,
}

/// Log settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LogSettings {
    /// `LOG_LEVEL`: a level (`error`, `warn`, `info`, `debug`, `trace`, `off`) or tracing `EnvFilter`
    /// directives such as `info,telemed_kit=debug`. A single word must be a level: to `EnvFilter` a bare
    /// word is a target, so a typo like `inf` would silently turn off every other log line. Defaults to
    /// `info`.
    pub directives: String,
    /// `LOG_FORMAT`: `json` or `pretty`. Defaults to `json`.
    pub format: LogFormat,
}

impl LogSettings {
    /// Reads `LOG_LEVEL` and `LOG_FORMAT`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let directives = env
            .parse_with(
                "LOG_LEVEL",
                "a level (error, warn, info, debug, trace, off) or tracing directives in ASCII without spaces",
                |raw| valid_directives(raw).then(|| raw.to_owned()),
            )?
            .unwrap_or_else(|| "info".to_owned());
        let format = env
            .parse_with("LOG_FORMAT", "json or pretty", |raw| match raw {
                "json" => Some(LogFormat::Json),
                "pretty" => Some(LogFormat::Pretty),
                _ => None,
            })?
            .unwrap_or(LogFormat::Json);
        Ok(Self { directives, format })
    }

    /// The filter for `directives` (already validated by [`LogSettings::from_env`]).
    pub fn filter(&self) -> EnvFilter {
        EnvFilter::builder().parse_lossy(&self.directives)
    }
}

fn valid_directives(raw: &str) -> bool {
    // tracing-subscriber 0.3.23's directive parser slices the untrimmed string at offsets counted in the trimmed
    // one, and panics when leading whitespace meets a multi-byte character (found by the `config` fuzz target).
    // Directives name modules, levels and fields: ASCII without spaces is all they need.
    if !raw.bytes().all(|byte| byte.is_ascii_graphic()) {
        return false;
    }
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    let single_word = !raw.contains([',', '=', '[']);
    if single_word && !LEVELS.iter().any(|level| raw.eq_ignore_ascii_case(level)) {
        return false;
    }
    EnvFilter::builder().parse(raw).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_info_and_json() {
        let settings = LogSettings::from_env(&Env::from_pairs::<&str, &str>([])).unwrap();
        assert_eq!(settings.directives, "info");
        assert_eq!(settings.format, LogFormat::Json);
    }

    #[test]
    fn levels_and_directives_are_accepted_and_bad_values_named() {
        for level in [
            "debug",
            "WARN",
            "off",
            "info,telemed_kit=debug,hyper=warn",
            "my_crate=trace",
        ] {
            let env = Env::from_pairs([("LOG_LEVEL", level), ("LOG_FORMAT", "pretty")]);
            let settings = LogSettings::from_env(&env).unwrap();
            assert_eq!(settings.directives, level);
            assert_eq!(settings.format, LogFormat::Pretty);
        }
        // The last two panicked inside tracing-subscriber before the kit checked for them.
        for bad in [
            "inf",
            "verbose",
            "info,hyper=loud",
            "[{",
            "info, hyper=debug",
            " a\u{fffd}=info,b",
        ] {
            let error = LogSettings::from_env(&Env::from_pairs([("LOG_LEVEL", bad)])).unwrap_err();
            assert_eq!(error.variable(), "LOG_LEVEL", "{bad}");
        }
        let error = LogSettings::from_env(&Env::from_pairs([("LOG_FORMAT", "xml")])).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"LOG_FORMAT="xml": expected json or pretty"#
        );
    }
}
