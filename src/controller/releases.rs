//! Check for Update's look at the registry: the newest released cloudmigrate version in the
//! repository of a schedule's runtime image, read in the background with the image pull
//! secret, at most once an hour per repository and login. A schedule that asks gets the last
//! answer at once (none the first time), and is woken when a new one arrives.

use crate::api::MigrationSchedule;
use crate::registry::{self, Credentials, Reference, RegistryError};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long an answer of the registry is used before it is asked again.
pub const ASK_EVERY: Duration = Duration::from_secs(3600);

/// What the registry said: the newest release (None: no tag is a release), or why it could
/// not be read.
pub type Answer = Result<Option<semver::Version>, RegistryError>;

struct Entry {
    asked: Instant,
    answer: Option<Answer>,
    /// Asked now, in the background.
    asking: bool,
    /// The schedules to wake when the answer arrives.
    waiting: HashSet<ObjectRef<MigrationSchedule>>,
}

/// The registry answers, by repository and login.
#[derive(Clone)]
pub struct Releases {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    /// None: registries are never asked (tests of the reconcilers, tools).
    http: Option<reqwest::Client>,
    wake: Option<tokio::sync::mpsc::UnboundedSender<ObjectRef<MigrationSchedule>>>,
}

/// Never asks a registry: every schedule's answer stays None.
impl Default for Releases {
    fn default() -> Self {
        Self {
            entries: Default::default(),
            http: None,
            wake: None,
        }
    }
}

/// Where a schedule's runtime image comes from: its reference, and the pull secrets in its
/// namespace.
pub struct Lookup {
    pub image: String,
    pub reference: Reference,
    pub namespace: String,
    pub secrets: Vec<String>,
}

impl Lookup {
    /// The schedule's runtime image (`spec.runtime.image`, else the workers' default, which
    /// the in-process runner's controller runs too) and its pull secrets; None for an image
    /// reference that does not parse.
    pub fn of(schedule: &MigrationSchedule) -> Option<Self> {
        let rt = &schedule.spec.runtime;
        let image = rt
            .image
            .clone()
            .unwrap_or_else(crate::runner::job::default_image);
        let reference = Reference::parse(&image).ok()?;
        Some(Self {
            image,
            reference,
            namespace: schedule.namespace().unwrap_or_default(),
            secrets: crate::runner::job::image_pull_secrets(rt)
                .into_iter()
                .map(|s| s.name)
                .collect(),
        })
    }

    /// The cache key: the repository, and where its login comes from.
    fn key(&self) -> String {
        if self.secrets.is_empty() {
            self.reference.name()
        } else {
            format!(
                "{} {}/{}",
                self.reference.name(),
                self.namespace,
                self.secrets.join(",")
            )
        }
    }
}

impl Releases {
    pub fn new(
        wake: Option<tokio::sync::mpsc::UnboundedSender<ObjectRef<MigrationSchedule>>>,
    ) -> Self {
        Self {
            entries: Default::default(),
            http: Some(registry::client()),
            wake,
        }
    }

    /// The last answer for the schedule's repository. Asks the registry in the background when
    /// it was never asked or `ASK_EVERY` has passed; the schedule is woken when it answers.
    pub fn latest(
        &self,
        client: &kube::Client,
        schedule: &MigrationSchedule,
        lookup: Lookup,
    ) -> Option<Answer> {
        self.http.as_ref()?;
        let key = lookup.key();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.entry(key.clone()).or_insert_with(|| Entry {
            asked: Instant::now(),
            answer: None,
            asking: false,
            waiting: HashSet::new(),
        });
        let stale = entry.answer.is_none() || entry.asked.elapsed() >= ASK_EVERY;
        if stale && !entry.asking {
            entry.asking = true;
            entry.asked = Instant::now();
            let (this, client) = (self.clone(), client.clone());
            tokio::spawn(async move {
                let answer = this.ask(&client, &lookup).await;
                this.answered(&key, answer);
            });
        }
        if stale {
            entry.waiting.insert(ObjectRef::from_obj(schedule));
        }
        entry.answer.clone()
    }

    /// Stores an answer and wakes the schedules that wait for it.
    fn answered(&self, key: &str, answer: Answer) {
        let waiting = {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(entry) = entries.get_mut(key) else {
                return;
            };
            entry.answer = Some(answer);
            entry.asking = false;
            entry.asked = Instant::now();
            std::mem::take(&mut entry.waiting)
        };
        if let Some(wake) = &self.wake {
            for s in waiting {
                // The receiver lives as long as the schedule controller.
                let _ = wake.send(s);
            }
        }
    }

    /// Reads the login from the pull secrets, then the tags.
    async fn ask(&self, client: &kube::Client, lookup: &Lookup) -> Answer {
        let Some(http) = &self.http else {
            return Ok(None);
        };
        let login = login(client, lookup).await?;
        let tags = registry::tags(http, &lookup.reference, login.as_ref()).await?;
        tracing::debug!(repository = %lookup.reference.name(), tags = tags.len(), "registry tags read");
        Ok(registry::newest_release(&tags))
    }
}

/// The login for the image's registry from the first pull secret that has one. A Secret that
/// cannot be read is a refusal that names it.
pub async fn login(
    client: &kube::Client,
    lookup: &Lookup,
) -> Result<Option<Credentials>, RegistryError> {
    let secrets: kube::Api<Secret> = kube::Api::namespaced(client.clone(), &lookup.namespace);
    for name in &lookup.secrets {
        let secret = secrets
            .get_opt(name)
            .await
            .map_err(|e| RegistryError::Refused {
                status: 0,
                message: format!("the pull secret {name} could not be read: {e}"),
            })?;
        let Some(secret) = secret else {
            return Err(RegistryError::Refused {
                status: 0,
                message: format!(
                    "the pull secret {name} does not exist in namespace {}; create it \
                     (kubectl create secret docker-registry {name} ...) or correct \
                     spec.runtime.imagePullSecrets",
                    lookup.namespace
                ),
            });
        };
        let config = secret
            .data
            .as_ref()
            .and_then(|d| d.get(".dockerconfigjson"))
            .map(|b| b.0.clone());
        if let Some(c) = config.and_then(|c| registry::credentials(&c, &lookup.reference.registry))
        {
            return Ok(Some(c));
        }
    }
    Ok(None)
}
