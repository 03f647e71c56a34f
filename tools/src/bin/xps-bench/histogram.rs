//! A latency histogram: log-linear buckets, constant memory, quantiles.

/// Latencies in nanoseconds, in buckets about 1.5% wide (log-linear, as an
/// HDR histogram): constant memory however long the run.
pub(crate) struct Histogram {
    counts: Vec<u64>,
    total: u64,
    pub(crate) max: u64,
}

/// Sub-buckets per power of two.
const SUB_BUCKETS: u64 = 64;

impl Histogram {
    pub(crate) fn new() -> Histogram {
        Histogram { counts: vec![0; bucket_of(u64::MAX) + 1], total: 0, max: 0 }
    }

    pub(crate) fn record(&mut self, nanos: u64) {
        self.counts[bucket_of(nanos)] += 1;
        self.total += 1;
        self.max = self.max.max(nanos);
    }

    /// The smallest value at or above which lies the fraction `1 - q` of the
    /// samples, rounded up to its bucket's upper end (and at most the max).
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return bucket_high(bucket).min(self.max);
            }
        }
        self.max
    }
}

/// The bucket of `value`: exact below 128, then 64 per power of two.
fn bucket_of(value: u64) -> usize {
    if value < 2 * SUB_BUCKETS {
        return value as usize;
    }
    let shift = 63 - value.leading_zeros() as u64 - 6;
    let mantissa = value >> shift; // 64..128
    ((shift + 1) * SUB_BUCKETS + mantissa - SUB_BUCKETS) as usize
}

/// The largest value in `bucket`.
fn bucket_high(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < 2 * SUB_BUCKETS {
        return bucket;
    }
    let shift = bucket / SUB_BUCKETS - 1;
    let mantissa = bucket % SUB_BUCKETS + SUB_BUCKETS;
    ((mantissa + 1) << shift).wrapping_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut last = 0;
        for value in (0..100_000u64).chain([1 << 40, u64::MAX - 1, u64::MAX]) {
            let bucket = bucket_of(value);
            assert!(bucket >= last, "{value}");
            assert!(bucket_high(bucket) >= value, "{value}");
            assert!(bucket == 0 || bucket_high(bucket - 1) < value, "{value}");
            last = bucket;
        }
    }

    #[test]
    fn quantiles_are_within_two_percent() {
        let mut histogram = Histogram::new();
        for value in 1..=10_000u64 {
            histogram.record(value * 1000);
        }
        let p50 = histogram.quantile(0.5) as f64;
        let p99 = histogram.quantile(0.99) as f64;
        assert!((p50 / 5_000_000.0 - 1.0).abs() < 0.02, "{p50}");
        assert!((p99 / 9_900_000.0 - 1.0).abs() < 0.02, "{p99}");
        assert_eq!(histogram.quantile(1.0), 10_000_000);
        assert_eq!(Histogram::new().quantile(0.5), 0);
    }
}
