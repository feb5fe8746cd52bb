//! Helpers shared by the integration tests: a small parser of the Prometheus
//! text format, strict enough to catch malformed output.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::collections::BTreeMap;

/// A parsed exposition.
#[derive(Debug, Default)]
pub struct Exposition {
    /// Sample value by `name{labels}` exactly as printed.
    pub samples: BTreeMap<String, f64>,
    /// Sample keys in output order.
    pub order: Vec<String>,
    /// `# TYPE` by family name.
    pub types: BTreeMap<String, String>,
    /// Families that have a `# HELP` line.
    pub helps: Vec<String>,
}

impl Exposition {
    /// Value of a sample; panics with the key if it is missing.
    pub fn value(&self, key: &str) -> f64 {
        *self
            .samples
            .get(key)
            .unwrap_or_else(|| panic!("sample {key} missing"))
    }

    /// Cumulative bucket values of a histogram, in output order, with their
    /// `le` labels.
    pub fn buckets(&self, family: &str) -> Vec<(String, f64)> {
        let prefix = format!("{family}_bucket{{le=\"");
        self.order
            .iter()
            .filter_map(|k| {
                k.strip_prefix(&prefix)
                    .and_then(|rest| rest.strip_suffix("\"}"))
                    .map(|le| (le.to_owned(), self.samples[k]))
            })
            .collect()
    }
}

/// The family a sample belongs to (histogram suffixes stripped when the
/// base name was declared a histogram).
fn family_of<'a>(name: &'a str, types: &BTreeMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types.get(base).map(String::as_str) == Some("histogram") {
                return base;
            }
        }
    }
    name
}

/// Parses the text format; panics on any line it does not understand, on a
/// sample whose family has no preceding `# TYPE`, and on duplicate samples.
pub fn parse_exposition(text: &str) -> Exposition {
    assert!(text.ends_with('\n'), "exposition must end with a newline");
    let mut exp = Exposition::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP has text");
            assert!(!help.is_empty());
            exp.helps.push(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a type");
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "bad type {kind}"
            );
            assert!(exp.types.insert(name.to_owned(), kind.to_owned()).is_none());
        } else {
            let (key, value) = line.rsplit_once(' ').expect("sample has a value");
            let name = key.split('{').next().expect("sample has a name");
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "bad name {name}"
            );
            let family = family_of(name, &exp.types);
            assert!(exp.types.contains_key(family), "no TYPE before {key}");
            let value: f64 = value.parse().expect("value is a float");
            assert!(
                exp.samples.insert(key.to_owned(), value).is_none(),
                "duplicate sample {key}"
            );
            exp.order.push(key.to_owned());
        }
    }
    exp
}
