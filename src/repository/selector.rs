//! Which version a request asks for.

/// A version number, a label (Cloud ML version names, TF Serving labels), or the model's
/// default (its default version when it has one, else the latest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSelector {
    Default,
    Number(u64),
    Label(String),
}

impl VersionSelector {
    /// A URL or request segment: digits are a version number, anything else a label, nothing
    /// the default.
    pub fn parse(segment: Option<&str>) -> Self {
        match segment {
            None | Some("") => VersionSelector::Default,
            Some(s) => match s.parse::<u64>() {
                Ok(n) if s.bytes().all(|b| b.is_ascii_digit()) => VersionSelector::Number(n),
                _ => VersionSelector::Label(s.to_string()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments() {
        assert_eq!(VersionSelector::parse(None), VersionSelector::Default);
        assert_eq!(VersionSelector::parse(Some("")), VersionSelector::Default);
        assert_eq!(
            VersionSelector::parse(Some("12")),
            VersionSelector::Number(12)
        );
        assert_eq!(
            VersionSelector::parse(Some("+12")),
            VersionSelector::Label("+12".into())
        );
        assert_eq!(
            VersionSelector::parse(Some("v1")),
            VersionSelector::Label("v1".into())
        );
    }
}
