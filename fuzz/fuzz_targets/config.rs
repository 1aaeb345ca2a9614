//! The configuration parser: arbitrary `NAME=value` lines through every kit variable's validation.
//!
//! Invariants: no panic; a rejected value gives one line that names the variable it is about; an accepted
//! configuration keeps the shutdown phases inside the grace period.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telemed_kit::ServiceSettings;
use telemed_kit::config::{Env, ServiceInfo};

const INFO: ServiceInfo = ServiceInfo {
    name: "fuzz-service",
    version: "0.0.0",
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let pairs: Vec<(String, String)> = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    let env = Env::from_pairs(pairs);
    match ServiceSettings::from_env(&env, INFO) {
        Ok(settings) => {
            let shutdown = &settings.shutdown;
            assert!(
                shutdown.delay < shutdown.grace_period,
                "delay must leave room to drain"
            );
            assert!(settings.port != 0);
        }
        Err(error) => {
            let line = error.to_string();
            assert!(!line.contains('\n'), "one line: {line:?}");
            assert!(
                line.starts_with(error.variable()),
                "names the variable first: {line:?}"
            );
            assert!(env.names_read().iter().any(|name| name == error.variable()));
        }
    }
});
