//! Version policies, as TF Serving and Triton name them: `latest[:N]`, `all`, `specific:V1,V2`.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionPolicy {
    Latest(usize),
    All,
    Specific(Vec<u64>),
}

impl Default for VersionPolicy {
    fn default() -> Self {
        VersionPolicy::Latest(1)
    }
}

impl FromStr for VersionPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad =
            || format!("invalid version policy {s:?}: expected latest[:N], all or specific:V1,V2");
        match s.split_once(':') {
            None if s == "latest" => Ok(VersionPolicy::Latest(1)),
            None if s == "all" => Ok(VersionPolicy::All),
            Some(("latest", n)) => match n.parse::<usize>() {
                Ok(n) if n > 0 => Ok(VersionPolicy::Latest(n)),
                _ => Err(bad()),
            },
            Some(("specific", list)) => {
                let versions: Result<Vec<u64>, _> =
                    list.split(',').map(|v| v.trim().parse::<u64>()).collect();
                match versions {
                    Ok(v) if !v.is_empty() => Ok(VersionPolicy::Specific(v)),
                    _ => Err(bad()),
                }
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for VersionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionPolicy::Latest(n) => write!(f, "latest:{n}"),
            VersionPolicy::All => f.write_str("all"),
            VersionPolicy::Specific(v) => {
                let list: Vec<String> = v.iter().map(u64::to_string).collect();
                write!(f, "specific:{}", list.join(","))
            }
        }
    }
}

impl VersionPolicy {
    /// Whether `version` may be served at all under this policy (before counting for `latest`).
    pub fn admits(&self, version: u64) -> bool {
        match self {
            VersionPolicy::Specific(v) => v.contains(&version),
            _ => true,
        }
    }

    /// How many of the newest admissible, loadable versions to serve.
    pub fn limit(&self) -> usize {
        match self {
            VersionPolicy::Latest(n) => *n,
            _ => usize::MAX,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(
            "latest".parse::<VersionPolicy>().unwrap(),
            VersionPolicy::Latest(1)
        );
        assert_eq!(
            "latest:3".parse::<VersionPolicy>().unwrap(),
            VersionPolicy::Latest(3)
        );
        assert_eq!("all".parse::<VersionPolicy>().unwrap(), VersionPolicy::All);
        assert_eq!(
            "specific:1, 7".parse::<VersionPolicy>().unwrap(),
            VersionPolicy::Specific(vec![1, 7])
        );
        for bad in ["latest:0", "latest:x", "specific:", "newest", "specific:a"] {
            assert!(bad.parse::<VersionPolicy>().is_err(), "{bad}");
        }
    }
}
