//! A node's Puppet classes, as Puppet's classes file lists them.

/// A node's Puppet classes, sorted and without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Classes(Vec<String>);

impl Classes {
    /// Parses a classes file: one class per line, surrounding whitespace trimmed, blank lines
    /// ignored.
    pub fn parse(text: &str) -> Classes {
        Classes::from_names(text.lines().map(str::trim).filter(|line| !line.is_empty()))
    }

    pub fn from_names<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Classes {
        let mut names: Vec<String> = names.into_iter().map(Into::into).collect();
        names.sort();
        names.dedup();
        Classes(names)
    }

    pub fn contains(&self, class: &str) -> bool {
        self.0.binary_search_by(|name| name.as_str().cmp(class)).is_ok()
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<String> {
        self.0
    }
}
