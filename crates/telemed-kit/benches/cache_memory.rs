//! Shows that a cache's memory stays bounded under a stream of distinct keys: a property to look at, not a
//! timing target.
//!
//! Run with: `cargo bench -p telemed-kit --bench cache_memory`
//!
//! Two caches receive a million distinct keys each, every value a fresh allocation, through
//! `get_or_try_load` (the path requests take). Without a bound, they would hold about 1 GiB and 1.9 GiB. After
//! every 100 000 keys the program prints the cache's own figures (after moka's housekeeping) and the process's
//! resident memory (`VmRSS`, Linux only). Results are recorded in `docs/cache.md`.

use std::convert::Infallible;
use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use telemed_kit::cache::{Cache, CachePolicy, CacheSettings, Capacity};

const KEYS: u64 = 1_000_000;
const REPORT_EVERY: u64 = 100_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let settings = CacheSettings::default();
    let ttl = Duration::from_secs(3600);

    let entries: Cache<u64, Arc<[u8]>, Infallible> = Cache::new(
        "bench-entries",
        CachePolicy::new(Capacity::Entries(10_000), ttl),
        &settings,
    )?;
    println!("## Capacity::Entries(10_000), 1 KiB values");
    fill(&entries, |_| 1024).await;

    let weighted: Cache<u64, Arc<[u8]>, Infallible> = Cache::weighted(
        "bench-weight",
        CachePolicy::new(Capacity::Weight(16 * 1024 * 1024), ttl),
        &settings,
        // The value's bytes plus a fixed allowance for the key, the Arc and moka's bookkeeping.
        |_, value: &Arc<[u8]>| {
            u32::try_from(value.len())
                .unwrap_or(u32::MAX)
                .saturating_add(128)
        },
    )?;
    println!("\n## Capacity::Weight(16 MiB), values of 100 to 3 900 bytes");
    fill(&weighted, |key| 100 + (key * 7919 % 3800) as usize).await;
    Ok(())
}

async fn fill(cache: &Cache<u64, Arc<[u8]>, Infallible>, size: impl Fn(u64) -> usize) {
    println!("| keys inserted | entries | weighted size | evictions | VmRSS |");
    println!("|---:|---:|---:|---:|---:|");
    for key in 0..KEYS {
        let value: Arc<[u8]> = Arc::from(vec![1_u8; size(key)]);
        let _ = cache.get_or_try_load(key, async { Ok(value) }).await;
        if (key + 1) % REPORT_EVERY == 0 {
            cache.run_pending_tasks().await;
            let stats = cache.stats();
            println!(
                "| {} | {} | {} | {} | {} |",
                key + 1,
                stats.entries,
                stats.weighted_size,
                stats.evictions,
                resident_memory().unwrap_or_else(|| "n/a".to_owned())
            );
        }
    }
}

/// The process's resident set size from `/proc/self/status`.
fn resident_memory() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    Some(line.trim_start_matches("VmRSS:").trim().to_owned())
}
