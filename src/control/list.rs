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
    /// The project names are stored under and the one the caller sees them under: a filter's
    /// `name=projects/p/models/m` compares with the names as they are answered.
    pub projects: Option<(String, String)>,
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
    let bad = |why: &str| {
        Error::invalid(format!(
            "invalid filter {filter:?}: {why}; terms like field:value, field=value or \
             field!=value joined with AND are supported (not OR, NOT, lowercase and, < or >)"
        ))
        .on_field("filter")
    };
    filter
        .split(" AND ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|term| {
            // The first operator splits the term: a value may hold ':' or '=' (a name, a URI).
            let at = term
                .find([':', '=', '!'])
                .ok_or_else(|| bad("a term has no operator"))?;
            let (field, rest) = term.split_at(at);
            let (negate, value) = if let Some(v) = rest.strip_prefix("!=") {
                (true, v)
            } else if let Some(v) = rest.strip_prefix(['=', ':']) {
                (false, v)
            } else {
                return Err(bad("'!' goes only in !="));
            };
            let field = field.trim();
            let field_ok = field
                .split('.')
                .all(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
            if !field_ok {
                return Err(bad(&format!("{field:?} is not a field path")));
            }
            let value = value.trim();
            // Anything else after the value is syntax this filter does not have (an OR, a
            // lowercase and): refused, not read as part of the value, which would match nothing.
            let value = match value.strip_prefix('"') {
                Some(quoted) => quoted
                    .strip_suffix('"')
                    .filter(|v| !v.contains('"'))
                    .ok_or_else(|| bad("a quoted value must end its term"))?,
                None if value.contains(char::is_whitespace)
                    || value.contains(['<', '>', '(', ')', '"']) =>
                {
                    return Err(bad(&format!("{value:?} is not one value")));
                }
                None => value,
            };
            Ok(Term {
                path: field.split('.').map(str::to_string).collect(),
                negate,
                value: value.to_string(),
            })
        })
        .collect()
}

fn matches(item: &Value, term: &Term, projects: Option<&(String, String)>) -> bool {
    let mut v = item;
    for key in &term.path {
        match v.get(key) {
            Some(next) => v = next,
            None => return term.negate,
        }
    }
    let mut text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if let Some((stored, answered)) = projects {
        if let Some(rest) = text.strip_prefix(&format!("projects/{stored}/")) {
            text = format!("projects/{answered}/{rest}");
        }
    }
    let hit = match term.value.strip_suffix('*') {
        Some(prefix) => text.starts_with(prefix),
        None => text == term.value,
    };
    hit != term.negate
}

/// The page of `items` (already in list order) the query asks for, and the token of the next
/// page when there is one; the items' positions are their indexes.
pub fn page(items: Vec<Value>, query: &ListQuery) -> Result<(Vec<Value>, Option<String>)> {
    let keyed = items
        .into_iter()
        .enumerate()
        .map(|(i, v)| (i64::try_from(i).unwrap_or(i64::MAX), v))
        .collect();
    page_keyed(keyed, query, false)
}

/// The page of `items` the query asks for, each with its position in the store (a row id or a
/// version's number, which never changes), in list order: ascending positions, or descending
/// ones for lists that are newest first. The next page's token holds the last position
/// answered, not a count: items created or deleted between two pages neither repeat nor go
/// missing.
pub fn page_keyed(
    items: Vec<(i64, Value)>,
    query: &ListQuery,
    descending: bool,
) -> Result<(Vec<Value>, Option<String>)> {
    let terms = match &query.filter {
        Some(f) => parse_filter(f)?,
        None => Vec::new(),
    };
    let size = match query.page_size {
        None | Some(0) => DEFAULT_PAGE,
        Some(n) => n.min(MAX_PAGE),
    };
    let after = match &query.page_token {
        None => None,
        Some(t) if t.is_empty() => None,
        Some(t) => Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.strip_prefix("after:")?.parse::<i64>().ok())
                .ok_or_else(|| Error::invalid("invalid page token").on_field("page_token"))?,
        ),
    };
    let mut rest = items.into_iter().filter(|(key, item)| {
        let past = match after {
            None => true,
            Some(a) if descending => *key < a,
            Some(a) => *key > a,
        };
        past && terms
            .iter()
            .all(|t| matches(item, t, query.projects.as_ref()))
    });
    let page: Vec<(i64, Value)> = rest.by_ref().take(size).collect();
    let next = match (rest.next(), page.last()) {
        (Some(_), Some((last, _))) => {
            Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("after:{last}")))
        }
        _ => None,
    };
    Ok((page.into_iter().map(|(_, v)| v).collect(), next))
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
