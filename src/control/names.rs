//! Resource names and the rules for them: `projects/{p}/models/{m}`, ids of letters, digits and
//! underscores starting with a letter, at most 128 characters (Cloud ML Engine's rule).

use crate::status::{Error, Result};

/// Checks a model, version or job id.
pub fn check_id(id: &str, field: &str) -> Result<()> {
    let ok = id.len() <= 128
        && id.starts_with(|c: char| c.is_ascii_alphabetic())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "A name should start with a letter and contain only letters, numbers and \
             underscores, at most 128 characters; got {id:?}."
        ))
        .on_field(field))
    }
}

pub fn model_name(project: &str, model: &str) -> String {
    format!("projects/{project}/models/{model}")
}

pub fn version_name(project: &str, model: &str, version: &str) -> String {
    format!("projects/{project}/models/{model}/versions/{version}")
}

pub fn job_name(project: &str, job: &str) -> String {
    format!("projects/{project}/jobs/{job}")
}

pub fn operation_name(project: &str, id: &str) -> String {
    format!("projects/{project}/operations/{id}")
}

/// The short id at the end of a full name (`projects/p/models/census` -> `census`).
pub fn basename(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// `(project, model, version)` of `projects/P/models/M[/versions/V]`.
pub fn parse_version_name(name: &str) -> Option<(&str, &str, Option<&str>)> {
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        ["projects", p, "models", m] => Some((p, m, None)),
        ["projects", p, "models", m, "versions", v] => Some((p, m, Some(v))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_cloud_ml_s_rule() {
        for ok in ["census", "census_v2", "A", &"a".repeat(128)] {
            assert!(check_id(ok, "model.name").is_ok(), "{ok}");
        }
        for bad in [
            "",
            "2census",
            "census-v2",
            "cen sus",
            "_x",
            &"a".repeat(129),
        ] {
            let e = check_id(bad, "model.name").unwrap_err();
            assert_eq!(
                e.message,
                format!(
                    "Field: model.name Error: A name should start with a letter and contain \
                     only letters, numbers and underscores, at most 128 characters; got {bad:?}."
                )
            );
        }
        assert_eq!(
            parse_version_name("projects/p/models/m/versions/v1"),
            Some(("p", "m", Some("v1")))
        );
        assert_eq!(
            parse_version_name("projects/p/models/m"),
            Some(("p", "m", None))
        );
        assert_eq!(parse_version_name("models/m"), None);
    }
}
