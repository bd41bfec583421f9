//! List paging and filters as the `ml` API takes them: `pageSize` (20 by default, at most 100),
//! an opaque `pageToken` from the previous page's `nextPageToken`, and `filter` terms like
//! `jobId:census*`, `state=FAILED` or `labels.owner=x`, joined with `AND`.

use base64::Engine;
use serde_json::Value;

use crate::status::{Error, Result};

const DEFAULT_PAGE: usize = 20;
const MAX_PAGE: usize = 100;

#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub page_size: Option<usize>,
    pub page_token: Option<String>,
    pub filter: Option<String>,
}

/// One filter term: a dotted field path, how to compare, the value (a trailing `*` matches any
/// suffix).
#[derive(Debug, Clone, PartialEq)]
struct Term {
    path: Vec<String>,
    negate: bool,
    value: String,
}

fn parse_filter(filter: &str) -> Result<Vec<Term>> {
    let bad = || {
        Error::invalid(format!("invalid filter {filter:?}: expected terms like field:value or field=value joined with AND")).on_field("filter")
    };
    filter
        .split(" AND ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|term| {
            let (field, negate, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once(':') {
                (f, false, v)
            } else {
                return Err(bad());
            };
            let field = field.trim();
            if field.is_empty() {
                return Err(bad());
            }
            Ok(Term {
                path: field.split('.').map(str::to_string).collect(),
                negate,
                value: value.trim().trim_matches('"').to_string(),
            })
        })
        .collect()
}

fn matches(item: &Value, term: &Term) -> bool {
    let mut v = item;
    for key in &term.path {
        match v.get(key) {
            Some(next) => v = next,
            None => return term.negate,
        }
    }
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let hit = match term.value.strip_suffix('*') {
        Some(prefix) => text.starts_with(prefix),
        None => text == term.value,
    };
    hit != term.negate
}

/// The page of `items` (already in list order) the query asks for, and the token of the next
/// page when there is one.
pub fn page(items: Vec<Value>, query: &ListQuery) -> Result<(Vec<Value>, Option<String>)> {
    let terms = match &query.filter {
        Some(f) => parse_filter(f)?,
        None => Vec::new(),
    };
    let items: Vec<Value> = items
        .into_iter()
        .filter(|i| terms.iter().all(|t| matches(i, t)))
        .collect();
    let size = match query.page_size {
        None | Some(0) => DEFAULT_PAGE,
        Some(n) => n.min(MAX_PAGE),
    };
    let start = match &query.page_token {
        None => 0,
        Some(t) if t.is_empty() => 0,
        Some(t) => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("offset:")?.parse::<usize>().ok())
            .ok_or_else(|| Error::invalid("invalid page token").on_field("page_token"))?,
    };
    let end = (start + size).min(items.len());
    let next = (end < items.len())
        .then(|| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("offset:{end}")));
    let page = items
        .into_iter()
        .skip(start)
        .take(end.saturating_sub(start))
        .collect();
    Ok((page, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn jobs() -> Vec<Value> {
        (0..45)
            .map(|i| {
                json!({"jobId": format!("{}_{i}", if i % 2 == 0 { "census" } else { "other" }),
                       "state": if i % 3 == 0 { "FAILED" } else { "SUCCEEDED" },
                       "labels": {"owner": if i < 5 { "ann" } else { "bob" }}})
            })
            .collect()
    }

    #[test]
    fn pages_cover_everything_once() {
        let mut seen = Vec::new();
        let mut query = ListQuery::default();
        loop {
            let (page, next) = page(jobs(), &query).unwrap();
            assert!(page.len() <= 20);
            seen.extend(page);
            match next {
                Some(t) => query.page_token = Some(t),
                None => break,
            }
        }
        assert_eq!(seen, jobs());
        let (all, next) = page(
            jobs(),
            &ListQuery {
                page_size: Some(500),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!((all.len(), next), (45, None));
    }

    #[test]
    fn filters_as_the_api_documents_them() {
        let q = |f: &str| ListQuery {
            page_size: Some(100),
            filter: Some(f.into()),
            ..Default::default()
        };
        let n = |f: &str| page(jobs(), &q(f)).unwrap().0.len();
        assert_eq!(n("jobId:census*"), 23);
        assert_eq!(n("jobId:census* AND state:FAILED"), 8);
        assert_eq!(n("labels.owner=ann"), 5);
        assert_eq!(n("state!=FAILED"), 30);
        assert!(page(jobs(), &q("nonsense")).is_err());
        let bad = ListQuery {
            page_token: Some("zzz".into()),
            ..Default::default()
        };
        assert!(page(jobs(), &bad)
            .unwrap_err()
            .message
            .contains("page token"));
    }
}
