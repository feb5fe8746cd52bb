//! Parsing of the Prometheus text exposition format (0.0.4) and quantile
//! estimation from histogram buckets.
//!
//! Only what the runner needs: samples with labels and a value (timestamps
//! are accepted and ignored), `# HELP`/`# TYPE` comments skipped.

use std::collections::BTreeMap;

use thiserror::Error;

/// A malformed exposition line.
#[derive(Debug, Error, PartialEq)]
pub enum PromError {
    /// The line does not start with a metric name.
    #[error("line {line}: no metric name")]
    NoName {
        /// 1-based line number.
        line: usize,
    },
    /// A label set is not `{name="value",...}`.
    #[error("line {line}: malformed label set")]
    BadLabels {
        /// 1-based line number.
        line: usize,
    },
    /// The sample value is not a number.
    #[error("line {line}: bad sample value {value:?}")]
    BadValue {
        /// 1-based line number.
        line: usize,
        /// The text that failed to parse.
        value: String,
    },
}

/// One sample: a metric name, its labels and a value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric name, e.g. `vugpu_commands_total`.
    pub name: String,
    /// Label names to values, unescaped.
    pub labels: BTreeMap<String, String>,
    /// The sample value.
    pub value: f64,
}

/// All samples of one scrape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    /// Samples in exposition order.
    pub samples: Vec<Sample>,
}

/// Cumulative histogram buckets of one histogram metric.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    /// `(upper bound, cumulative count)` sorted by bound; the last bound is
    /// `f64::INFINITY` when the scrape contained the `+Inf` bucket.
    pub buckets: Vec<(f64, f64)>,
    /// The `_count` sample, or the `+Inf` bucket when `_count` is missing.
    pub count: f64,
    /// The `_sum` sample (0 when missing).
    pub sum: f64,
}

impl Metrics {
    /// Parses a whole exposition text.
    ///
    /// # Errors
    /// [`PromError`] naming the first malformed line.
    pub fn parse(text: &str) -> Result<Self, PromError> {
        let mut samples = Vec::new();
        for (idx, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            samples.push(parse_sample(line, idx + 1)?);
        }
        Ok(Self { samples })
    }

    /// Returns the value of the sample `name` whose labels include all of
    /// `labels` (the first one in exposition order).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }

    /// Returns the value of an unlabelled sample.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.get(name, &[])
    }

    /// Sums every sample called `name`, whatever its labels (`None` when
    /// there is none).
    pub fn sum(&self, name: &str) -> Option<f64> {
        let mut values = self.samples.iter().filter(|s| s.name == name).peekable();
        values.peek()?;
        Some(values.map(|s| s.value).sum())
    }

    /// Returns the value of `vugpu_commands_total{cmd="<cmd>"}`.
    pub fn command(&self, cmd: &str) -> Option<f64> {
        self.get("vugpu_commands_total", &[("cmd", cmd)])
    }

    /// Collects the `<base>_bucket`, `<base>_count` and `<base>_sum` samples.
    ///
    /// Returns `None` when there is no bucket sample at all.
    pub fn histogram(&self, base: &str) -> Option<Histogram> {
        let bucket_name = format!("{base}_bucket");
        let mut buckets: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter(|s| s.name == bucket_name)
            .filter_map(|s| Some((parse_float(s.labels.get("le")?)?, s.value)))
            .collect();
        if buckets.is_empty() {
            return None;
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let inf = buckets
            .last()
            .filter(|(le, _)| le.is_infinite())
            .map(|&(_, c)| c);
        let count = self
            .value(&format!("{base}_count"))
            .or(inf)
            .unwrap_or_default();
        let sum = self.value(&format!("{base}_sum")).unwrap_or_default();
        Some(Histogram {
            buckets,
            count,
            sum,
        })
    }
}

impl Histogram {
    /// Estimates the `q`-quantile (0 ≤ q ≤ 1) the way Prometheus'
    /// `histogram_quantile` does: find the bucket holding rank `q * count`
    /// and interpolate linearly between its lower and upper bound (the first
    /// bucket's lower bound is 0). A rank that lands in the `+Inf` bucket
    /// returns the largest finite bound.
    ///
    /// Returns `None` for an empty histogram, `q` outside [0, 1], or buckets
    /// without any finite bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if !(0.0..=1.0).contains(&q) || self.count <= 0.0 {
            return None;
        }
        let rank = q * self.count;
        let mut lower = 0.0;
        let mut below = 0.0;
        for &(le, cumulative) in &self.buckets {
            if cumulative >= rank && cumulative > below {
                if le.is_infinite() {
                    return (lower > 0.0 || below > 0.0).then_some(lower);
                }
                let fraction = (rank - below) / (cumulative - below);
                return Some(lower + (le - lower) * fraction);
            }
            if le.is_finite() {
                lower = le;
            }
            below = cumulative;
        }
        // Rank beyond every bucket (inconsistent scrape): clamp to the largest
        // finite bound.
        self.buckets
            .iter()
            .rev()
            .find(|(le, _)| le.is_finite())
            .map(|&(le, _)| le)
    }

    /// Mean observation, `sum / count`.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }
}

/// Parses a float the way the exposition format writes them.
fn parse_float(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        other => other.parse().ok(),
    }
}

fn parse_sample(line: &str, lineno: usize) -> Result<Sample, PromError> {
    let name_end = line
        .char_indices()
        .find(|&(i, c)| {
            !(c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit()))
        })
        .map_or(line.len(), |(i, _)| i);
    if name_end == 0 {
        return Err(PromError::NoName { line: lineno });
    }
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, remaining) =
            parse_labels(after).ok_or(PromError::BadLabels { line: lineno })?;
        labels = parsed;
        rest = remaining;
    }
    let value_text = rest.split_whitespace().next().unwrap_or("");
    let value = parse_float(value_text).ok_or_else(|| PromError::BadValue {
        line: lineno,
        value: value_text.to_owned(),
    })?;
    Ok(Sample {
        name,
        labels,
        value,
    })
}

/// Parses `name="value",...}` (the text after `{`); returns the labels and
/// the text after the closing brace.
fn parse_labels(mut text: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        text = text.trim_start();
        if let Some(rest) = text.strip_prefix('}') {
            return Some((labels, rest));
        }
        let eq = text.find('=')?;
        let key = text[..eq].trim();
        if key.is_empty() {
            return None;
        }
        let quoted = text[eq + 1..].trim_start();
        let body = quoted.strip_prefix('"')?;
        let mut value = String::new();
        let mut end = None;
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            if escaped {
                value.push(match c {
                    'n' => '\n',
                    other => other,
                });
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                end = Some(i);
                break;
            } else {
                value.push(c);
            }
        }
        let end = end?;
        labels.insert(key.to_owned(), value);
        text = body[end + 1..].trim_start();
        if let Some(rest) = text.strip_prefix(',') {
            text = rest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = r#"# HELP vugpu_commands_total Commands by type.
# TYPE vugpu_commands_total counter
vugpu_commands_total{cmd="set_scanout"} 2
vugpu_commands_total{cmd="resource_flush"} 57
vugpu_detach_backing_total 40
vugpu_refused_guest_accesses_total 0
vugpu_detach_latency_seconds_bucket{le="0.00001"} 0
vugpu_detach_latency_seconds_bucket{le="0.0001"} 10
vugpu_detach_latency_seconds_bucket{le="0.001"} 30
vugpu_detach_latency_seconds_bucket{le="0.01"} 40
vugpu_detach_latency_seconds_bucket{le="+Inf"} 40
vugpu_detach_latency_seconds_sum 0.08
vugpu_detach_latency_seconds_count 40
"#;

    #[test]
    fn test_parse_labelled_counter_returns_value() {
        let metrics = Metrics::parse(SCRAPE).expect("valid scrape");

        let flush = metrics.command("resource_flush");

        assert_eq!(flush, Some(57.0));
    }

    #[test]
    fn test_sum_adds_all_label_sets() {
        let metrics = Metrics::parse(SCRAPE).expect("valid scrape");

        assert_eq!(metrics.sum("vugpu_commands_total"), Some(59.0));
    }

    #[test]
    fn test_parse_unlabelled_missing_returns_none() {
        let metrics = Metrics::parse(SCRAPE).expect("valid scrape");

        let missing = metrics.value("vugpu_attach_backing_total");

        assert_eq!(missing, None);
    }

    #[test]
    fn test_parse_escaped_label_value_unescapes() {
        let text = "m{a=\"x\\\"y\",b=\"z\"} 3 1700000000\n";

        let metrics = Metrics::parse(text).expect("valid line");

        assert_eq!(metrics.get("m", &[("a", "x\"y"), ("b", "z")]), Some(3.0));
    }

    #[test]
    fn test_parse_bad_value_fails_with_line_number() {
        let text = "ok 1\nbroken{a=\"b\"} twelve\n";

        let err = Metrics::parse(text).expect_err("bad value");

        assert_eq!(
            err,
            PromError::BadValue {
                line: 2,
                value: "twelve".to_owned()
            }
        );
    }

    #[test]
    fn test_parse_unterminated_labels_fails() {
        let err = Metrics::parse("m{a=\"b\" 1\n").expect_err("no closing brace");

        assert_eq!(err, PromError::BadLabels { line: 1 });
    }

    #[test]
    fn test_histogram_quantile_interpolates_within_bucket() {
        let hist = Metrics::parse(SCRAPE)
            .expect("valid scrape")
            .histogram("vugpu_detach_latency_seconds")
            .expect("histogram present");

        // Rank 20 of 40 lies halfway through the (0.0001, 0.001] bucket,
        // which holds observations 11..=30.
        let p50 = hist.quantile(0.5).expect("non-empty");

        assert!((p50 - 0.00055).abs() < 1e-9, "p50 = {p50}");
    }

    #[test]
    fn test_histogram_quantile_in_inf_bucket_returns_largest_finite_bound() {
        let text =
            "h_bucket{le=\"0.1\"} 1\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 10\nh_count 10\n";
        let hist = Metrics::parse(text)
            .expect("valid")
            .histogram("h")
            .expect("present");

        let p99 = hist.quantile(0.99);

        assert_eq!(p99, Some(1.0));
    }

    #[test]
    fn test_histogram_quantile_empty_returns_none() {
        let text = "h_bucket{le=\"0.1\"} 0\nh_bucket{le=\"+Inf\"} 0\nh_count 0\n";
        let hist = Metrics::parse(text)
            .expect("valid")
            .histogram("h")
            .expect("present");

        assert_eq!(hist.quantile(0.5), None);
    }

    #[test]
    fn test_histogram_missing_returns_none() {
        let metrics = Metrics::parse(SCRAPE).expect("valid scrape");

        assert!(metrics.histogram("no_such_histogram").is_none());
    }
}
