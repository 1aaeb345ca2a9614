//! Shorthands for the events whose `type` or `severity` is not the level's default.

/// Logs a `medium`/`alert` line: a plausible error, such as bad input from a client.
///
/// Takes what [`tracing::warn!`] takes (fields, then a message); it adds the field `type = "alert"`.
///
/// # Example
///
/// ```
/// let field = "birthDate";
/// telemed_kit::alert!(field, "rejected a questionnaire response: {field} is not a date");
/// ```
#[macro_export]
macro_rules! alert {
    (target: $target:expr, $($arg:tt)+) => {
        $crate::tracing::warn!(target: $target, r#type = "alert", $($arg)+)
    };
    ($($arg:tt)+) => {
        $crate::tracing::warn!(r#type = "alert", $($arg)+)
    };
}

/// Logs a `high`/`alarm` line: something needs manual action.
///
/// Takes what [`tracing::error!`] takes (fields, then a message); it adds the field `type = "alarm"`.
///
/// # Example
///
/// ```
/// let error = std::io::Error::other("connection refused");
/// telemed_kit::alarm!(%error, "cannot reach the key-value store");
/// ```
#[macro_export]
macro_rules! alarm {
    (target: $target:expr, $($arg:tt)+) => {
        $crate::tracing::error!(target: $target, r#type = "alarm", $($arg)+)
    };
    ($($arg:tt)+) => {
        $crate::tracing::error!(r#type = "alarm", $($arg)+)
    };
}

/// Logs a `critical`/`alarm` line: the service cannot do its job at all (the platform's FATAL).
///
/// Takes what [`tracing::error!`] takes (fields, then a message); it adds the fields
/// `severity = "critical"` and `type = "alarm"`. Like every line at `high` and above, it is kept under
/// overload while the queue's reserve has room.
///
/// # Example
///
/// ```
/// telemed_kit::critical!(path = "/etc/keys", "signing key missing: no request can be answered");
/// ```
#[macro_export]
macro_rules! critical {
    (target: $target:expr, $($arg:tt)+) => {
        $crate::tracing::error!(target: $target, severity = "critical", r#type = "alarm", $($arg)+)
    };
    ($($arg:tt)+) => {
        $crate::tracing::error!(severity = "critical", r#type = "alarm", $($arg)+)
    };
}
