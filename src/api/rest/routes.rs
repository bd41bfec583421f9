//! The `/v1` path grammar: Cloud ML Engine (`projects/{p}/models/{m}[/versions/{v}]:predict`),
//! Vertex (`projects/{p}/locations/{l}/endpoints/{e}:predict`) and TensorFlow Serving
//! (`models/{m}[/versions/{n}|/labels/{l}][:predict|/metadata]`), parsed into a [`Route`].

use axum::http::Method;

use crate::repository::VersionSelector;
use crate::status::{Code, Error, Result};

/// Which API a `/v1` path belongs to; it decides the answer's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    CloudMl,
    Vertex,
    TfServing,
}

impl Api {
    /// The `api` label of the request metrics.
    pub fn name(self) -> &'static str {
        match self {
            Api::CloudMl => "cloudml",
            Api::Vertex => "vertex",
            Api::TfServing => "tfserving",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Predict {
        api: Api,
        model: String,
        version: VersionSelector,
    },
    /// TF Serving's model status; `Default` asks for every version.
    Status {
        model: String,
        version: VersionSelector,
    },
    Metadata {
        model: String,
        version: VersionSelector,
    },
    /// TF Serving's `:classify` and `:regress` of tf.Examples.
    Classify {
        model: String,
        version: VersionSelector,
    },
    Regress {
        model: String,
        version: VersionSelector,
    },
}

/// Splits `a/b/c:verb` into segments and the custom verb (a colon in the last segment).
pub fn split(path: &str) -> (Vec<&str>, Option<&str>) {
    let (path, verb) = match path.rsplit_once(':') {
        Some((p, v)) if !v.contains('/') => (p, Some(v)),
        _ => (path, None),
    };
    (path.split('/').filter(|s| !s.is_empty()).collect(), verb)
}

/// TF Serving's `models/{m}[/versions/{n}|/labels/{l}][:verb|/metadata]`.
fn tf_serving(
    method: &Method,
    segs: &[&str],
    verb: Option<&str>,
    unknown: impl Fn() -> Error,
    wrong_method: impl Fn(&str) -> Error,
) -> Result<Route> {
    let ["models", m, tail @ ..] = segs else {
        return Err(unknown());
    };
    let (version, tail) = match tail {
        ["versions", v, t @ ..] => match v.parse::<u64>() {
            Ok(n) => (VersionSelector::Number(n), t),
            Err(_) => {
                return Err(Error::invalid(format!(
                    "version '{v}' is not a number; use /labels/{v}"
                )))
            }
        },
        ["labels", l, t @ ..] => (VersionSelector::Label(l.to_string()), t),
        t => (VersionSelector::Default, t),
    };
    let model = m.to_string();
    match (tail, verb) {
        ([], Some(v)) if method != Method::POST => Err(wrong_method(&format!("POST for :{v}"))),
        ([], Some("predict")) => Ok(Route::Predict {
            api: Api::TfServing,
            model,
            version,
        }),
        ([], Some("classify")) => Ok(Route::Classify { model, version }),
        ([], Some(_)) => Ok(Route::Regress { model, version }),
        ([], None) if method == Method::GET => Ok(Route::Status { model, version }),
        (["metadata"], None) if method == Method::GET => Ok(Route::Metadata { model, version }),
        ([] | ["metadata"], None) => Err(wrong_method("GET")),
        _ => Err(unknown()),
    }
}

/// The route of a `/v1/...` request.
pub fn parse(method: &Method, path: &str) -> Result<Route> {
    let rest = path.strip_prefix("/v1/").unwrap_or(path);
    let (segs, verb) = split(rest);
    let unknown = || Error::not_found(format!("no such endpoint: {method} /v1/{rest}"));
    let wrong_method = |allowed: &str| {
        Error::new(
            Code::InvalidArgument,
            format!("{method} is not allowed on /v1/{rest}; use {allowed}"),
        )
    };
    let predict = |api, model: &str, version| {
        if method != Method::POST {
            return Err(wrong_method("POST"));
        }
        Ok(Route::Predict {
            api,
            model: model.to_string(),
            version,
        })
    };
    match (segs.as_slice(), verb) {
        (["models", ..], Some(v)) if !["predict", "classify", "regress"].contains(&v) => {
            Err(Error::invalid(format!(
                "unsupported method ':{v}'; TF Serving's paths take :predict, :classify and :regress"
            )))
        }
        (["models", ..], _) => tf_serving(method, &segs, verb, unknown, wrong_method),
        (_, Some(v)) if v != "predict" => Err(Error::invalid(format!(
            "unsupported method ':{v}'; this server implements :predict"
        ))),
        (["projects", _, "models", m], Some(_)) => {
            predict(Api::CloudMl, m, VersionSelector::Default)
        }
        (["projects", _, "models", m, "versions", v], Some(_)) => {
            predict(Api::CloudMl, m, VersionSelector::parse(Some(v)))
        }
        (["projects", _, "locations", _, "endpoints", e], Some(_)) => {
            predict(Api::Vertex, e, VersionSelector::Default)
        }
        _ => Err(unknown()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: Method, path: &str) -> Result<Route> {
        parse(&method, path)
    }

    #[test]
    fn predict_paths_of_the_three_apis() {
        use VersionSelector::*;
        let p = |api, model: &str, version| Route::Predict {
            api,
            model: model.into(),
            version,
        };
        for (path, want) in [
            (
                "/v1/projects/p/models/census:predict",
                p(Api::CloudMl, "census", Default),
            ),
            (
                "/v1/projects/p/models/census/versions/v1:predict",
                p(Api::CloudMl, "census", Label("v1".into())),
            ),
            (
                "/v1/projects/p/models/census/versions/7:predict",
                p(Api::CloudMl, "census", Number(7)),
            ),
            (
                "/v1/projects/p/locations/us/endpoints/123:predict",
                p(Api::Vertex, "123", Default),
            ),
            (
                "/v1/models/census:predict",
                p(Api::TfServing, "census", Default),
            ),
            (
                "/v1/models/census/versions/3:predict",
                p(Api::TfServing, "census", Number(3)),
            ),
            (
                "/v1/models/census/labels/stable:predict",
                p(Api::TfServing, "census", Label("stable".into())),
            ),
        ] {
            assert_eq!(route(Method::POST, path).unwrap(), want, "{path}");
        }
    }

    #[test]
    fn status_and_metadata() {
        assert_eq!(
            route(Method::GET, "/v1/models/census").unwrap(),
            Route::Status {
                model: "census".into(),
                version: VersionSelector::Default
            }
        );
        assert_eq!(
            route(Method::GET, "/v1/models/census/versions/2/metadata").unwrap(),
            Route::Metadata {
                model: "census".into(),
                version: VersionSelector::Number(2)
            }
        );
    }

    #[test]
    fn refusals_say_why() {
        for (method, path, code, want) in [
            (
                Method::POST,
                "/v1/models/census:explain",
                Code::InvalidArgument,
                ":explain",
            ),
            (
                Method::GET,
                "/v1/models/census:predict",
                Code::InvalidArgument,
                "use POST",
            ),
            (
                Method::POST,
                "/v1/models/census",
                Code::InvalidArgument,
                "use GET",
            ),
            (
                Method::GET,
                "/v1/models/census/versions/x",
                Code::InvalidArgument,
                "not a number",
            ),
            (
                Method::GET,
                "/v1/nothing/here",
                Code::NotFound,
                "no such endpoint",
            ),
            (
                Method::GET,
                "/v1/models/census/other",
                Code::NotFound,
                "no such endpoint",
            ),
        ] {
            let e = route(method, path).unwrap_err();
            assert_eq!(e.code, code, "{path}");
            assert!(e.message.contains(want), "{path}: {}", e.message);
        }
    }
}
