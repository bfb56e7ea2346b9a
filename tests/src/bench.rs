//! Figures the benchmarks (`src/bin/bench_*.rs`) share.

use std::time::Duration;

/// Throughput of `bytes` moved in `took`, in MiB/s.
pub fn mib_per_sec(bytes: usize, took: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / took.as_secs_f64()
}

/// The median of `values` (the upper one of an even count); sorts them.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}
