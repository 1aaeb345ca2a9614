//! `log_lines_dropped_total`: the writer's drop counts, read at scrape time.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;

use super::format::Severity;
use super::writer::{DropCounter, LogGuard};

/// Encodes the drop counts of one writer, by severity.
#[derive(Debug)]
pub(super) struct DropCollector {
    counter: DropCounter,
}

impl DropCollector {
    pub(super) fn new(guard: &LogGuard) -> Self {
        Self {
            counter: guard.drop_counter(),
        }
    }
}

impl Collector for DropCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let dropped = self.counter.dropped();
        let mut family = encoder.encode_descriptor(
            "log_lines_dropped",
            "Log lines dropped under overload",
            None,
            MetricType::Counter,
        )?;
        for severity in Severity::ALL {
            let labels = [("severity", severity.as_str())];
            ConstCounter::new(dropped.get(severity)).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
