//! Postfix parameters as the admin wrote them: name, value and where it was written.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where a parameter value was written, for errors that say `file:line`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
}

/// One parameter value in `main.cf` syntax (a TOML array is joined with ", " by the loader).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamValue {
    pub value: String,
    pub origin: Origin,
}

/// The effective Postfix parameters for one listener: `[policy]` with that listener's overrides
/// applied on top, as master.cf `-o name=value` is applied on top of main.cf.
#[derive(Clone, Debug, Default)]
pub struct ParamMap {
    values: BTreeMap<String, ParamValue>,
}

impl ParamMap {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, name: impl Into<String>, value: ParamValue) {
        self.values.insert(name.into(), value);
    }

    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.values.get(name)
    }

    pub fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(|v| v.value.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &ParamValue)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// This map with `overrides` applied on top.
    pub fn overlaid(&self, overrides: &ParamMap) -> ParamMap {
        let mut merged = self.clone();
        for (k, v) in overrides.iter() {
            merged.insert(k, v.clone());
        }
        merged
    }
}
