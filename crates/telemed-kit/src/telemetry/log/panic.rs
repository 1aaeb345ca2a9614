//! The panic hook: a panic becomes one `critical` log line instead of a message on stderr.

/// Replaces the default panic message on stderr with one `critical`/`alarm` log line, redacted, carrying the
/// trace id of the request that panicked (the hook runs on the panicking task).
///
/// The kit's server stack turns the panic into a 500 ([`http::panic_response`](crate::http::panic_response));
/// the line says where it happened. Installing it again replaces the hook with an identical one.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("non-text panic payload");
        let location = info
            .location()
            .map(|location| format!("{}:{}", location.file(), location.line()));
        tracing::error!(
            severity = "critical",
            r#type = "alarm",
            location = location.as_deref().unwrap_or("unknown"),
            "panic: {payload}"
        );
    }));
}
