//! A container registry, read the way a kubelet reads it: an image reference split into its
//! registry and repository, the login a `kubernetes.io/dockerconfigjson` Secret holds for that
//! registry, and the tags of a repository through the OCI distribution API
//! (`GET /v2/<name>/tags/list`, with the registry's Basic or Bearer token challenge and its
//! `Link` pages). Check for Update reads the newest released version from it.

use base64::Engine;
use std::time::Duration;

/// One registry request's limit.
const REQUEST_LIMIT: Duration = Duration::from_secs(10);
/// At most this many pages of tags are read (1,000 tags a page).
const MAX_PAGES: usize = 20;

/// An image reference: `registry/repository[:tag][@digest]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// The registry host, with its port: `ghcr.io`, `registry.local:5000`, `docker.io`.
    pub registry: String,
    /// The repository within it: `cloudmigrate/cloudmigrate`, `library/busybox`.
    pub repository: String,
}

/// An image reference without its tag and digest: `registry:5000/cm:0.1.0` →
/// `registry:5000/cm` (a port is not a tag).
pub fn repository(image: &str) -> &str {
    let name = image.split('@').next().unwrap_or(image);
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => name,
    }
}

impl Reference {
    /// Parses an image reference as Docker and the kubelet do: the first part names a registry
    /// when it has a dot or a port or is `localhost`; otherwise the image is on Docker Hub
    /// (`library/` for a one-part name).
    pub fn parse(image: &str) -> Result<Self, String> {
        let name = repository(image);
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(format!("{image:?} is not an image reference"));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            Some(_) => ("docker.io".to_string(), name.to_string()),
            None => ("docker.io".to_string(), format!("library/{name}")),
        };
        Ok(Self {
            registry,
            repository,
        })
    }

    /// The base URL of the registry's API. A registry on the loopback interface is spoken to
    /// in plain HTTP, as Docker and containerd do; every other over HTTPS.
    pub fn endpoint(&self) -> String {
        let host = self
            .registry
            .rsplit_once(':')
            .map_or(self.registry.as_str(), |(h, p)| {
                if p.chars().all(|c| c.is_ascii_digit()) {
                    h
                } else {
                    self.registry.as_str()
                }
            });
        if self.registry == "docker.io" {
            "https://registry-1.docker.io".to_string()
        } else if host == "localhost" || host.starts_with("127.") || host == "[::1]" {
            format!("http://{}", self.registry)
        } else {
            format!("https://{}", self.registry)
        }
    }

    /// `registry/repository`, as a message names it.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

/// A registry login.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <password>)", self.username)
    }
}

/// The login for `registry` in the `.dockerconfigjson` of a pull secret: its `auths` entry
/// for the host (also written as a URL, and Docker Hub's `https://index.docker.io/v1/`),
/// from `username`/`password` or `auth` (base64 of `user:password`).
pub fn credentials(dockerconfigjson: &[u8], registry: &str) -> Option<Credentials> {
    let config: serde_json::Value = serde_json::from_slice(dockerconfigjson).ok()?;
    let auths = config.get("auths")?.as_object()?;
    let host_of = |key: &str| {
        let key = key
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        key.split('/').next().unwrap_or(key).to_string()
    };
    let wanted = |key: &str| {
        let host = host_of(key);
        host == registry
            || (registry == "docker.io"
                && matches!(
                    host.as_str(),
                    "index.docker.io" | "registry-1.docker.io" | "docker.io"
                ))
    };
    let entry = auths.iter().find(|(k, _)| wanted(k))?.1;
    let field = |name: &str| entry.get(name).and_then(|v| v.as_str()).map(str::to_string);
    if let (Some(username), Some(password)) = (field("username"), field("password")) {
        return Some(Credentials { username, password });
    }
    let auth = base64::engine::general_purpose::STANDARD
        .decode(field("auth")?)
        .ok()?;
    let (username, password) = String::from_utf8(auth)
        .ok()?
        .split_once(':')
        .map(|(u, p)| (u.to_string(), p.to_string()))?;
    Some(Credentials { username, password })
}

/// Why the tags could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// No answer: DNS, TCP, TLS, or a timeout.
    #[error("the registry cannot be reached: {0}")]
    Unreachable(String),
    /// The registry answered with an error: 401/403 (a login is needed or refused), 404 (no
    /// such repository), or another status.
    #[error("the registry refused ({status}): {message}")]
    Refused { status: u16, message: String },
}

impl RegistryError {
    /// The condition reason: `RegistryUnreachable` or `RegistryRefused`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "RegistryUnreachable",
            Self::Refused { .. } => "RegistryRefused",
        }
    }
}

/// An HTTP client for registries: TLS by rustls with the ring provider (as the database
/// connections) and the Mozilla roots of `webpki-roots`.
pub fn client() -> reqwest::Client {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let builder = reqwest::Client::builder()
        .timeout(REQUEST_LIMIT)
        .user_agent(concat!("cloudmigrate/", env!("CARGO_PKG_VERSION")));
    let builder = match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(b) => {
            builder.tls_backend_preconfigured(b.with_root_certificates(roots).with_no_client_auth())
        }
        // The ring provider supports the safe default versions; without TLS a registry over
        // HTTPS is Unreachable with the reason.
        Err(_) => builder,
    };
    // Building fails only when the TLS configuration is not rustls', which it is.
    builder.build().unwrap_or_default()
}

/// Every tag of the repository.
pub async fn tags(
    http: &reqwest::Client,
    r: &Reference,
    login: Option<&Credentials>,
) -> Result<Vec<String>, RegistryError> {
    let base = r.endpoint();
    let mut url = format!("{base}/v2/{}/tags/list?n=1000", r.repository);
    let mut auth: Option<String> = None;
    let mut tags = Vec::new();
    for _ in 0..MAX_PAGES {
        let response = authorized(http, r, &url, &mut auth, login, None).await?;
        let status = response.status();
        let next = next_page(&response, &base);
        let body = response.text().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(refused(status.as_u16(), &body, login.is_some()));
        }
        let page: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| RegistryError::Refused {
                status: status.as_u16(),
                message: format!("the tag list is not JSON: {e}"),
            })?;
        tags.extend(
            page.get("tags")
                .and_then(|t| t.as_array())
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str().map(str::to_string)),
        );
        match next {
            Some(n) => url = n,
            None => break,
        }
    }
    Ok(tags)
}

/// Whether the image's manifest can be read, as a kubelet's pull begins: Ok(()) when it can,
/// else why not (a 404 names the missing tag).
pub async fn pullable(
    http: &reqwest::Client,
    image: &str,
    login: Option<&Credentials>,
) -> Result<(), RegistryError> {
    let r = Reference::parse(image).map_err(|e| RegistryError::Refused {
        status: 0,
        message: e,
    })?;
    let reference = match image.split_once('@') {
        Some((_, digest)) => digest,
        None => image
            .strip_prefix(repository(image))
            .and_then(|t| t.strip_prefix(':'))
            .unwrap_or("latest"),
    };
    let url = format!("{}/v2/{}/manifests/{reference}", r.endpoint(), r.repository);
    let accept = "application/vnd.oci.image.index.v1+json, \
                  application/vnd.oci.image.manifest.v1+json, \
                  application/vnd.docker.distribution.manifest.list.v2+json, \
                  application/vnd.docker.distribution.manifest.v2+json";
    let mut auth = None;
    let response = authorized(http, &r, &url, &mut auth, login, Some(accept)).await?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.map_err(unreachable)?;
    Err(match status.as_u16() {
        404 => RegistryError::Refused {
            status: 404,
            message: format!(
                "{} has no {reference}; push it, or set spec.runtime.image to a tag that exists",
                r.name()
            ),
        },
        code => refused(code, &body, login.is_some()),
    })
}

/// A GET of `url`, answering the registry's 401 challenge once (the header is kept in `auth`
/// for the next pages).
async fn authorized(
    http: &reqwest::Client,
    r: &Reference,
    url: &str,
    auth: &mut Option<String>,
    login: Option<&Credentials>,
    accept: Option<&str>,
) -> Result<reqwest::Response, RegistryError> {
    let response = get(http, url, auth.as_deref(), accept).await?;
    if response.status() != reqwest::StatusCode::UNAUTHORIZED || auth.is_some() {
        return Ok(response);
    }
    let header = authorize(http, r, &response, login).await?;
    let response = get(http, url, Some(&header), accept).await?;
    *auth = Some(header);
    Ok(response)
}

/// The newest released version among `tags`: semantic versions (with or without a leading
/// `v`), pre-releases left out.
pub fn newest_release(tags: &[String]) -> Option<semver::Version> {
    tags.iter()
        .filter_map(|t| semver::Version::parse(t.strip_prefix('v').unwrap_or(t)).ok())
        .filter(|v| v.pre.is_empty())
        .max()
}

async fn get(
    http: &reqwest::Client,
    url: &str,
    auth: Option<&str>,
    accept: Option<&str>,
) -> Result<reqwest::Response, RegistryError> {
    let mut request = http.get(url);
    if let Some(a) = auth {
        request = request.header(reqwest::header::AUTHORIZATION, a);
    }
    if let Some(a) = accept {
        request = request.header(reqwest::header::ACCEPT, a);
    }
    request.send().await.map_err(unreachable)
}

fn unreachable(e: reqwest::Error) -> RegistryError {
    // The error's chain names the cause (DNS, connection refused, certificate).
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    RegistryError::Unreachable(message)
}

/// A refusal, with what to do about it.
fn refused(status: u16, body: &str, logged_in: bool) -> RegistryError {
    let said = body.chars().take(300).collect::<String>();
    let fix = match status {
        401 | 403 if logged_in => {
            "the pull secret's login was refused: check the Secret named in \
             spec.runtime.imagePullSecrets (or the chart's workers.imagePullSecrets)"
        }
        401 | 403 => {
            "the registry needs a login: name a Secret of type kubernetes.io/dockerconfigjson \
             in spec.runtime.imagePullSecrets (or the chart's workers.imagePullSecrets)"
        }
        404 => "no such repository: check spec.runtime.image",
        _ => "the registry's own message is above",
    };
    RegistryError::Refused {
        status,
        message: format!("{}; {fix}", said.trim()),
    }
}

/// The `Authorization` header for a registry's 401 challenge: Basic with the login, or a
/// Bearer token from the challenge's realm (anonymous when there is no login).
async fn authorize(
    http: &reqwest::Client,
    r: &Reference,
    challenge: &reqwest::Response,
    login: Option<&Credentials>,
) -> Result<String, RegistryError> {
    let header = challenge
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let basic = |c: &Credentials| {
        let pair = format!("{}:{}", c.username, c.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    };
    let (scheme, params) = header.split_once(' ').unwrap_or((header.as_str(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return login
            .map(basic)
            .ok_or_else(|| refused(401, "a login is needed", false));
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(refused(
            401,
            &format!("an unknown challenge: {header}"),
            login.is_some(),
        ));
    }
    let params = challenge_params(params);
    let realm = params
        .iter()
        .find(|(k, _)| k == "realm")
        .map(|(_, v)| v.clone())
        .ok_or_else(|| refused(401, "a Bearer challenge without a realm", login.is_some()))?;
    let mut query: Vec<(String, String)> =
        params.into_iter().filter(|(k, _)| k == "service").collect();
    query.push(("scope".into(), format!("repository:{}:pull", r.repository)));
    let mut request = http.get(&realm).query(&query);
    if let Some(c) = login {
        request = request.header(reqwest::header::AUTHORIZATION, basic(c));
    }
    let response = request.send().await.map_err(unreachable)?;
    let status = response.status();
    let body = response.text().await.map_err(unreachable)?;
    if !status.is_success() {
        return Err(refused(status.as_u16(), &body, login.is_some()));
    }
    let token: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let token = token
        .get("token")
        .or_else(|| token.get("access_token"))
        .and_then(|t| t.as_str())
        .ok_or_else(|| {
            refused(
                status.as_u16(),
                "the token answer holds no token",
                login.is_some(),
            )
        })?;
    Ok(format!("Bearer {token}"))
}

/// The `key="value"` pairs of a challenge.
fn challenge_params(params: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = params.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_string();
        let after = after.trim_start();
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.split_once('"') {
                Some((v, next)) => (v.to_string(), next),
                None => (quoted.to_string(), ""),
            },
            None => match after.split_once(',') {
                Some((v, next)) => (v.trim().to_string(), next),
                None => (after.trim().to_string(), ""),
            },
        };
        out.push((key, value));
        rest = next.trim_start().trim_start_matches(',');
    }
    out
}

/// The next page of a tag list, from its `Link` header.
fn next_page(response: &reqwest::Response, base: &str) -> Option<String> {
    let link = response
        .headers()
        .get(reqwest::header::LINK)?
        .to_str()
        .ok()?;
    let target = link.split(';').next()?.trim();
    let target = target.strip_prefix('<')?.strip_suffix('>')?;
    Some(if target.starts_with("http") {
        target.to_string()
    } else {
        format!("{base}{target}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_their_registry_as_docker_does() {
        let r = Reference::parse("ghcr.io/cloudmigrate/cloudmigrate:0.1.0").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("ghcr.io", "cloudmigrate/cloudmigrate")
        );
        assert_eq!(r.endpoint(), "https://ghcr.io");
        let r = Reference::parse("127.0.0.1:5000/team/cm@sha256:abc").unwrap();
        assert_eq!(r.repository, "team/cm");
        assert_eq!(r.endpoint(), "http://127.0.0.1:5000");
        let r = Reference::parse("localhost/cm").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.endpoint().as_str()),
            ("localhost", "http://localhost")
        );
        let r = Reference::parse("busybox:1.36").unwrap();
        assert_eq!(r.name(), "docker.io/library/busybox");
        assert_eq!(r.endpoint(), "https://registry-1.docker.io");
        let r = Reference::parse("myteam/cm").unwrap();
        assert_eq!(r.name(), "docker.io/myteam/cm");
        assert!(Reference::parse("").is_err());
    }

    #[test]
    fn a_pull_secret_gives_the_login_of_its_registry() {
        let auth = base64::engine::general_purpose::STANDARD.encode("robot:s3cret");
        let config = serde_json::json!({"auths": {
            "https://registry.local:5000": {"auth": auth},
            "https://index.docker.io/v1/": {"username": "hub", "password": "pw"},
        }});
        let bytes = serde_json::to_vec(&config).unwrap();
        let c = credentials(&bytes, "registry.local:5000").unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("robot", "s3cret")
        );
        assert_eq!(credentials(&bytes, "docker.io").unwrap().username, "hub");
        assert_eq!(credentials(&bytes, "ghcr.io"), None);
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn the_newest_release_skips_pre_releases_and_other_tags() {
        let tags: Vec<String> = [
            "0.1.0",
            "v0.3.1",
            "0.4.0-rc.1",
            "latest",
            "0.3.0",
            "sha-abc",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(newest_release(&tags), Some(semver::Version::new(0, 3, 1)));
        assert_eq!(newest_release(&["latest".to_string()]), None);
    }

    #[test]
    fn a_bearer_challenge_is_read_whole() {
        let p = challenge_params(
            r#"realm="https://auth.example/token",service="registry.example",scope="repository:cm:pull""#,
        );
        assert_eq!(
            p,
            vec![
                (
                    "realm".to_string(),
                    "https://auth.example/token".to_string()
                ),
                ("service".to_string(), "registry.example".to_string()),
                ("scope".to_string(), "repository:cm:pull".to_string()),
            ]
        );
    }
}
