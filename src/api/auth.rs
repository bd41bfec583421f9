//! Who may call what. The management API writes files and runs programs, so without tokens it
//! answers only clients from `--admin-allowed-networks` (loopback by default). With
//! `--auth-tokens-file` (lines of `<token> <scope>`, scopes `predict` and `admin`) every route but
//! health and metrics needs `Authorization: Bearer <token>`: 401 without one or with an unknown
//! one, 403 with a token of the wrong scope; admin tokens open the management API from anywhere.
//! Tokens are compared in constant time and never logged.

use std::net::IpAddr;
use std::path::Path;

use anyhow::{bail, Context, Result};
use ipnet::IpNet;
use subtle::ConstantTimeEq;

use crate::status::{Code, Error};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Predict,
    Admin,
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Health and metrics: open to everyone.
    Nothing,
    /// Predictions, status and metadata.
    Predict,
    /// The management API.
    Admin,
}

#[derive(Clone)]
pub struct Auth {
    tokens: Vec<(Vec<u8>, Scope)>,
    admin_networks: Vec<IpNet>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("tokens", &self.tokens.len())
            .field("admin_networks", &self.admin_networks)
            .finish()
    }
}

impl Auth {
    /// `networks`: comma-separated CIDRs (a bare address is a /32 or /128).
    pub fn new(tokens_file: Option<&Path>, networks: &str) -> Result<Auth> {
        let admin_networks = networks
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| {
                n.parse::<IpNet>()
                    .or_else(|_| n.parse::<IpAddr>().map(IpNet::from))
                    .with_context(|| format!("--admin-allowed-networks: {n:?} is not a network"))
            })
            .collect::<Result<_>>()?;
        let mut tokens = Vec::new();
        if let Some(path) = tokens_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --auth-tokens-file {}", path.display()))?;
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let (Some(token), Some(scope), None) = (parts.next(), parts.next(), parts.next())
                else {
                    bail!(
                        "--auth-tokens-file {}:{}: expected `<token> <scope>`",
                        path.display(),
                        i + 1
                    );
                };
                let scope = match scope {
                    "predict" => Scope::Predict,
                    "admin" => Scope::Admin,
                    other => bail!(
                        "--auth-tokens-file {}:{}: scope {other:?} is not predict or admin",
                        path.display(),
                        i + 1
                    ),
                };
                tokens.push((token.as_bytes().to_vec(), scope));
            }
            if tokens.is_empty() {
                bail!("--auth-tokens-file {} holds no token", path.display());
            }
        }
        Ok(Auth {
            tokens,
            admin_networks,
        })
    }

    pub fn tokens_required(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The scope of a bearer token; every token is compared, in constant time.
    fn scope_of(&self, token: &[u8]) -> Option<Scope> {
        let mut found = None;
        for (known, scope) in &self.tokens {
            if bool::from(known.as_slice().ct_eq(token)) {
                found = Some(*scope);
            }
        }
        found
    }

    /// Whether a call may go on: `authorization` is its header's value, `peer` its address.
    pub fn check(
        &self,
        need: Need,
        authorization: Option<&[u8]>,
        peer: Option<IpAddr>,
    ) -> Result<(), Error> {
        if need == Need::Nothing {
            return Ok(());
        }
        if !self.tokens_required() {
            if need == Need::Predict {
                return Ok(());
            }
            let allowed = peer.is_some_and(|ip| {
                let ip = match ip {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
                    v4 => v4,
                };
                self.admin_networks.iter().any(|n| n.contains(&ip))
            });
            return if allowed {
                Ok(())
            } else {
                Err(Error::new(
                    Code::PermissionDenied,
                    "the management API answers only clients from --admin-allowed-networks \
                     unless the server has --auth-tokens-file",
                ))
            };
        }
        // The scheme is case-insensitive and followed by spaces or tabs (RFC 9110, 11.4).
        let token = authorization
            .map(<[u8]>::trim_ascii)
            .filter(|v| v.len() > 6 && v[..6].eq_ignore_ascii_case(b"bearer"))
            .map(|v| &v[6..])
            .filter(|rest| rest.first().is_some_and(|b| matches!(b, b' ' | b'\t')))
            .map(<[u8]>::trim_ascii);
        let Some(token) = token else {
            return Err(Error::new(
                Code::Unauthenticated,
                "this server requires `Authorization: Bearer <token>`",
            ));
        };
        match self.scope_of(token) {
            None => Err(Error::new(
                Code::Unauthenticated,
                "the bearer token is not valid",
            )),
            Some(scope) if need == Need::Admin && scope < Scope::Admin => Err(Error::new(
                Code::PermissionDenied,
                "the token's scope is predict; the management API needs an admin token",
            )),
            Some(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn networks_without_tokens_and_scopes_with_them() {
        let open = Auth::new(None, "127.0.0.0/8,::1").unwrap();
        assert!(open.check(Need::Admin, None, ip("127.0.0.1")).is_ok());
        assert!(open
            .check(Need::Admin, None, ip("::ffff:127.0.0.1"))
            .is_ok());
        assert_eq!(
            open.check(Need::Admin, None, ip("10.0.0.1"))
                .unwrap_err()
                .code,
            Code::PermissionDenied
        );
        assert!(open.check(Need::Predict, None, ip("10.0.0.1")).is_ok());

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(&file, "# tokens\nsecret-a admin\nsecret-p predict\n").unwrap();
        let auth = Auth::new(Some(&file), "::1/128").unwrap();
        let check = |need, header: Option<&str>| {
            auth.check(need, header.map(str::as_bytes), ip("10.0.0.1"))
        };
        assert!(check(Need::Admin, Some("Bearer secret-a")).is_ok());
        assert!(check(Need::Predict, Some("Bearer secret-p")).is_ok());
        assert!(check(Need::Predict, Some("BEARER secret-p")).is_ok());
        assert!(check(Need::Predict, Some("bearer\t secret-p ")).is_ok());
        assert!(check(Need::Predict, Some("Bearersecret-p")).is_err());
        assert!(check(Need::Nothing, None).is_ok());
        assert_eq!(
            check(Need::Predict, None).unwrap_err().code,
            Code::Unauthenticated
        );
        assert_eq!(
            check(Need::Predict, Some("Bearer nope")).unwrap_err().code,
            Code::Unauthenticated
        );
        assert_eq!(
            check(Need::Admin, Some("Bearer secret-p"))
                .unwrap_err()
                .code,
            Code::PermissionDenied
        );
        std::fs::write(&file, "secret-a root\n").unwrap();
        assert!(Auth::new(Some(&file), "").is_err());
    }
}
