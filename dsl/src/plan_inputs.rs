//! A step's inputs in the plan: a map from input name to value, kept as one sorted vector.
//!
//! A step has a handful of inputs; a `BTreeMap` would give each step a node with room for
//! eleven (about 900 bytes), which at 50,000 steps was the compiler's largest allocation. The
//! JSON and the methods the workspace uses are the same as a `BTreeMap`'s: an object with its keys
//! in order.

use crate::plan::PlanValue;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Input name → value, in name order, each name once.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlanInputs {
    entries: Vec<(String, PlanValue)>,
}

impl PlanInputs {
    /// No inputs.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// Room for `n` inputs without growing.
    #[must_use]
    pub fn with_capacity(n: usize) -> Self {
        Self {
            entries: Vec::with_capacity(n),
        }
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    /// The value of an input.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&PlanValue> {
        self.position(key).ok().map(|i| &self.entries[i].1)
    }

    /// Whether the input is set.
    #[must_use]
    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_ok()
    }

    /// Sets an input; returns the value it replaces.
    pub fn insert(&mut self, key: String, value: PlanValue) -> Option<PlanValue> {
        match self.position(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    /// Removes an input; returns its value.
    pub fn remove(&mut self, key: &str) -> Option<PlanValue> {
        self.position(key).ok().map(|i| self.entries.remove(i).1)
    }

    /// How many inputs are set.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Name and value of each input, in name order.
    pub fn iter(&self) -> Iter<'_> {
        Iter(self.entries.iter())
    }

    /// Each name, in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.entries.iter().map(|(k, _)| k)
    }

    /// Each value, in name order.
    pub fn values(&self) -> impl Iterator<Item = &PlanValue> {
        self.entries.iter().map(|(_, v)| v)
    }
}

/// Iterator over a step's inputs, as `(&name, &value)` in name order.
#[derive(Debug, Clone)]
pub struct Iter<'a>(std::slice::Iter<'a, (String, PlanValue)>);

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a String, &'a PlanValue);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (k, v))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a PlanInputs {
    type Item = (&'a String, &'a PlanValue);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl FromIterator<(String, PlanValue)> for PlanInputs {
    /// Later values of a name replace earlier ones, as in a `BTreeMap`.
    fn from_iter<I: IntoIterator<Item = (String, PlanValue)>>(iter: I) -> Self {
        let mut entries: Vec<(String, PlanValue)> = iter.into_iter().collect();
        // Stable: equal names keep their order, so the last written is last.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, PlanValue)> = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            match out.last_mut() {
                Some(last) if last.0 == k => last.1 = v,
                _ => out.push((k, v)),
            }
        }
        out.shrink_to_fit();
        Self { entries: out }
    }
}

impl Serialize for PlanInputs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (k, v) in &self.entries {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for PlanInputs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = PlanInputs;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of input names to values")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<PlanInputs, A::Error> {
                let mut entries = Vec::with_capacity(access.size_hint().unwrap_or(0).min(64));
                while let Some(entry) = access.next_entry::<String, PlanValue>()? {
                    entries.push(entry);
                }
                // A plan written by Drover is already in order; anything else is put in order.
                if entries.windows(2).all(|w| w[0].0 < w[1].0) {
                    entries.shrink_to_fit();
                    Ok(PlanInputs { entries })
                } else {
                    Ok(entries.into_iter().collect())
                }
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn s(v: &str) -> PlanValue {
        PlanValue::String(v.to_owned())
    }

    #[test]
    fn behaves_as_the_sorted_map_it_replaces() {
        let mut inputs = PlanInputs::new();
        let mut map = BTreeMap::new();
        for (k, v) in [
            ("zone", "a"),
            ("name", "b"),
            ("ttl", "c"),
            ("name", "d"),
            ("a", "e"),
        ] {
            assert_eq!(
                inputs.insert(k.to_owned(), s(v)),
                map.insert(k.to_owned(), s(v))
            );
        }
        assert_eq!(inputs.len(), map.len());
        assert!(inputs.iter().eq(map.iter()));
        assert_eq!(inputs.get("name"), Some(&s("d")));
        assert_eq!(inputs.get("nope"), None);
        assert_eq!(inputs.remove("ttl"), map.remove("ttl"));
        assert!(!inputs.contains_key("ttl"));
        assert_eq!(
            serde_json::to_string(&inputs).ok(),
            serde_json::to_string(&map).ok()
        );
        let collected: PlanInputs = [("b", "1"), ("a", "2"), ("b", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), s(v)))
            .collect();
        assert_eq!(collected.get("b"), Some(&s("3")), "the last of a name wins");
        assert_eq!(collected.keys().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn reads_the_json_a_map_wrote_in_any_order() -> Result<(), serde_json::Error> {
        let unordered = r#"{"zone":{"string":"a"},"name":{"string":"b"},"zone":{"string":"c"}}"#;
        let inputs: PlanInputs = serde_json::from_str(unordered)?;
        let map: BTreeMap<String, PlanValue> = serde_json::from_str(unordered)?;
        assert!(inputs.iter().eq(map.iter()));
        let back: PlanInputs = serde_json::from_str(&serde_json::to_string(&inputs)?)?;
        assert_eq!(back, inputs);
        assert!(serde_json::from_str::<PlanInputs>("[1]").is_err());
        Ok(())
    }
}
