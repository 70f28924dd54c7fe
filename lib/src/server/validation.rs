//! The one check of an order, run by the main process before its state takes the order and by
//! every worker before applying it, so that an order the main process accepts is never refused
//! by a worker.
//!
//! [`validate`] checks every field against [`rules`], then what only the worker's code can
//! check: custom answers compile, the TLS settings and certificates load in rustls, and a
//! frontend's patterns and templates compile. [`ConfigState::apply`] then checks the order
//! against the state (duplicates, dangling references). [`validate`] hands back what it built,
//! so a worker applies the order without building it twice. What is left can only fail in a
//! worker for reasons of the machine (a listener that cannot be bound), never because of the
//! order's content.
//!
//! Time is not judged here: whether a certificate has expired is decided once, by the main
//! process, for the orders of its clients (see
//! [`sozu_command_lib::certificate::check_not_expired`]).

use std::{net::SocketAddr, sync::Arc};

use sozu_command_lib::{
    certificate::CertificateFacts,
    request::{
        CertificateAndKey, FrontendKey, HttpFrontend, HttpListenerConfig, ListenerType, Order,
        TcpScript, TlsListenerConfig,
    },
    rules::{self, FieldsChecked, InvalidField},
    state::{Checked, ConfigState},
};

use crate::{
    https::HttpsSettings,
    protocol::{
        http::{
            answers::{AnswerError, Answers, Template, parse_answers},
            auth::Authorized,
        },
        tls::{self, KeyCheck, LoadedCertificate, TlsError},
    },
    router::{
        Route, RouterError,
        content::{Script, ScriptError},
    },
};

/// Why an order is refused.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// A field of the order is out of its bounds or malformed.
    #[error(transparent)]
    Field(#[from] InvalidField),
    /// The order names a listener the worker does not have, or has one of another kind there.
    #[error("no {kind} listener on {address}")]
    NoListener {
        /// The address the order names.
        address: SocketAddr,
        /// The kind of listener the order needs there.
        kind: ListenerType,
    },
    /// A listener's custom answers do not parse as answer templates.
    #[error("listener {address}")]
    ListenerAnswers {
        /// The listener's address.
        address: SocketAddr,
        /// What is wrong with the answer.
        source: AnswerError,
    },
    /// A cluster's custom answers do not parse as answer templates.
    #[error("cluster `{cluster}`")]
    ClusterAnswers {
        /// The cluster's id.
        cluster: String,
        /// What is wrong with the answer.
        source: AnswerError,
    },
    /// An HTTPS listener's TLS settings (versions, cipher suites, groups…) are not usable.
    #[error("listener {address}")]
    Tls {
        /// The listener's address.
        address: SocketAddr,
        /// What rustls refused.
        source: TlsError,
    },
    /// A certificate, its chain or its key do not parse, or do not match.
    #[error("invalid certificate for {address}")]
    Certificate {
        /// The HTTPS listener the certificate is for.
        address: SocketAddr,
        /// What is wrong with the certificate.
        source: TlsError,
    },
    /// A TCP listener's content routing script does not load.
    #[error("listener {address}")]
    Script {
        /// The listener's address.
        address: SocketAddr,
        /// Why the script was refused.
        source: Box<ScriptError>,
    },
    /// A frontend cannot be added or removed: duplicate or unknown frontend, invalid hostname,
    /// path regex or template.
    #[error("frontend {key}")]
    Route {
        /// The frontend's hostname, path and method.
        key: Box<FrontendKey>,
        /// What the router refused.
        source: RouterError,
    },
}

/// What [`validate`] built for the order, ready for a worker to apply.
pub enum Validated {
    /// A new HTTP or HTTPS listener: its answers (with those of every cluster of the state)
    /// and, for HTTPS, its TLS settings.
    Listener {
        /// The listener's answer templates.
        answers: Answers,
        /// The TLS settings of an HTTPS listener; `None` for HTTP.
        tls: Option<HttpsSettings>,
    },
    /// A listener's new settings after an update, and the TLS settings for HTTPS (applied to
    /// the listener's existing certificate resolver).
    ListenerUpdate {
        /// The listener's configuration after the update (boxed: the other variants are
        /// much smaller).
        config: Box<HttpListenerConfig>,
        /// The listener's answer templates after the update.
        answers: Answers,
        /// The HTTPS listener's TLS settings after the update; `None` for HTTP (boxed too).
        tls: Option<Box<TlsListenerConfig>>,
    },
    /// A certificate parsed and checked against its key, ready to add to a listener.
    Certificate(LoadedCertificate),
    /// A cluster's custom answers.
    Cluster {
        /// The cluster's answer templates, by status.
        answers: std::collections::BTreeMap<u16, Template>,
        /// The credentials the cluster's Basic auth accepts.
        authorized: Authorized,
    },
    /// A frontend's routing rule, built and ready to insert into a listener's router.
    Route(Route),
    /// Nothing to build: the state's checks are all.
    Nothing,
}

/// Checks `order` against `state` and against what the worker's code accepts. The state is
/// not changed; [`ConfigState::apply`] then changes it (and makes the checks that depend on
/// what the state holds: duplicates, dangling references).
///
/// `keys` says how the private key of a certificate order is checked here (see [`KeyCheck`]):
/// with [`KeyCheck::OnFirstUse`], a key that does not match passes here and fails the
/// handshakes that need it.
pub fn validate(
    state: &ConfigState,
    order: &Order,
    keys: KeyCheck,
) -> Result<Validated, OrderError> {
    validate_checked(state, order, keys).map(|(validated, _)| validated)
}

/// [`validate`], with what the state then takes to apply the order without finding it again
/// ([`ConfigState::apply_checked`]): the proof that its fields are checked, the facts of the
/// certificate it brings, the frontend it adds (the one its route holds, so that the state and
/// the router share it).
pub fn validate_checked(
    state: &ConfigState,
    order: &Order,
    keys: KeyCheck,
) -> Result<(Validated, Checked), OrderError> {
    validate_checked_given(state, order, keys, None)
}

/// [`validate_checked`] of an order given with the facts of the certificate it brings
/// (`ADD_CERTIFICATE`, `REPLACE_CERTIFICATE`), read by the worker's main process while it
/// checked the order: the worker trusts them as it trusts the order, and with
/// [`KeyCheck::OnFirstUse`] reads nothing of the certificate before its first handshake
/// ([`tls::load_certificate_given_facts`]). Without facts, or for another order, the same as
/// [`validate_checked`].
pub fn validate_checked_given(
    state: &ConfigState,
    order: &Order,
    keys: KeyCheck,
    facts: Option<CertificateFacts>,
) -> Result<(Validated, Checked), OrderError> {
    if let Order::AddHttpFrontend(frontend) | Order::AddHttpsFrontend(frontend) = order {
        let (route, fields) = validate_frontend(frontend.clone())?;
        let checked = Checked::new(fields).with_frontend(route.shared_frontend());
        return Ok((Validated::Route(route), checked));
    }
    let checked = Checked::new(rules::check_order(order)?);
    let validated = match order {
        Order::AddCertificate(add) => {
            return load(add.address, &add.certificate, keys, facts, checked);
        }
        Order::ReplaceCertificate(replace) => {
            return load(
                replace.address,
                &replace.new_certificate,
                keys,
                facts,
                checked,
            );
        }
        order => validated(state, order)?,
    };
    Ok((validated, checked))
}

/// [`validate_checked`] of an `ADD_HTTP_FRONTEND` or `ADD_HTTPS_FRONTEND` order's frontend,
/// taken out of the order by a caller that gives it away (a worker): the route is compiled
/// from the frontend itself, not from a copy of it, and holds it (see
/// [`Route::shared_frontend`]); with it, the proof that its fields are checked, for
/// [`ConfigState::add_checked_frontend`].
pub fn validate_frontend(frontend: HttpFrontend) -> Result<(Route, FieldsChecked), OrderError> {
    let fields = rules::check_frontend(&frontend)?;
    let frontend = Arc::new(frontend);
    let route =
        Route::compile(Arc::clone(&frontend)).map_err(|source| route_error(&frontend, source))?;
    Ok((route, fields))
}

/// What [`validate`] builds for an order whose fields are checked, but a certificate's or a
/// frontend's.
fn validated(state: &ConfigState, order: &Order) -> Result<Validated, OrderError> {
    match order {
        Order::AddHttpListener(config) => Ok(Validated::Listener {
            answers: listener_answers(state, config)?,
            tls: None,
        }),
        Order::AddHttpsListener(config) => {
            let address = config.http.address;
            let tls = HttpsSettings::new(&config.tls)
                .map_err(|source| OrderError::Tls { address, source })?;
            Ok(Validated::Listener {
                answers: listener_answers(state, &config.http)?,
                tls: Some(tls),
            })
        }
        Order::UpdateHttpListenerConfig(update) => {
            let mut config = state
                .http_listeners
                .get(&update.address)
                .map(|listener| listener.config.clone())
                .ok_or(OrderError::NoListener {
                    address: update.address,
                    kind: ListenerType::Http,
                })?;
            update.http.apply(&mut config);
            Ok(Validated::ListenerUpdate {
                answers: listener_answers(state, &config)?,
                config: Box::new(config),
                tls: None,
            })
        }
        Order::UpdateHttpsListenerConfig(update) => {
            let address = update.address;
            let listener = state
                .https_listeners
                .get(&address)
                .ok_or(OrderError::NoListener {
                    address,
                    kind: ListenerType::Https,
                })?;
            let mut config = listener.config.http.clone();
            update.http.apply(&mut config);
            let mut tls = listener.config.tls.clone();
            update.tls.apply(&mut tls);
            // What the listener's settings will be built with: the same checks as
            // `HttpsSettings::updated`.
            HttpsSettings::check(&tls).map_err(|source| OrderError::Tls { address, source })?;
            Ok(Validated::ListenerUpdate {
                answers: listener_answers(state, &config)?,
                config: Box::new(config),
                tls: Some(Box::new(tls)),
            })
        }
        Order::AddCluster(cluster) => parse_answers(&cluster.answers)
            .map(|answers| Validated::Cluster {
                answers,
                authorized: Authorized::parse(&cluster.authorized_hashes),
            })
            .map_err(|source| OrderError::ClusterAnswers {
                cluster: cluster.cluster_id.clone(),
                source,
            }),
        Order::AddTcpListener(config) => load_script(config.address, config.script.as_ref()),
        Order::UpdateTcpListenerConfig(update) => load_script(
            update.address,
            update.script.as_ref().and_then(Option::as_ref),
        ),
        _ => Ok(Validated::Nothing),
    }
}

/// [`validate_checked`] for a caller that keeps nothing it builds (the main process): the same
/// verdict and error, but a frontend's route is built only when checking it needs that (see
/// [`Route::check`]), a certificate is not kept (its facts are), and an HTTPS listener's
/// settings are checked without the ticketer's keys ([`HttpsSettings::check`]).
pub fn check(state: &ConfigState, order: &Order, keys: KeyCheck) -> Result<Checked, OrderError> {
    match order {
        Order::AddHttpFrontend(frontend) | Order::AddHttpsFrontend(frontend) => {
            let fields = rules::check_order(order)?;
            Route::check(frontend, fields).map_err(|source| route_error(frontend, source))?;
            Ok(Checked::new(fields))
        }
        Order::AddCertificate(add) => {
            let checked = Checked::new(rules::check_order(order)?);
            let facts = check_certificate(add.address, &add.certificate, keys)?;
            Ok(checked.with_certificate(facts))
        }
        Order::ReplaceCertificate(replace) => {
            let checked = Checked::new(rules::check_order(order)?);
            let facts = check_certificate(replace.address, &replace.new_certificate, keys)?;
            Ok(checked.with_certificate(facts))
        }
        Order::AddHttpsListener(config) => {
            let checked = Checked::new(rules::check_order(order)?);
            let address = config.http.address;
            HttpsSettings::check(&config.tls)
                .map_err(|source| OrderError::Tls { address, source })?;
            listener_answers(state, &config.http)?;
            Ok(checked)
        }
        _ => validate_checked(state, order, keys).map(|(_, checked)| checked),
    }
}

fn check_certificate(
    address: SocketAddr,
    certificate: &CertificateAndKey,
    keys: KeyCheck,
) -> Result<CertificateFacts, OrderError> {
    tls::check_certificate(certificate, keys)
        .map_err(|source| OrderError::Certificate { address, source })
}

fn route_error(frontend: &HttpFrontend, source: RouterError) -> OrderError {
    OrderError::Route {
        key: Box::new(frontend.key()),
        source,
    }
}

/// A TCP listener's routing script must load (content routing, issue 13).
fn load_script(address: SocketAddr, script: Option<&TcpScript>) -> Result<Validated, OrderError> {
    match script {
        Some(script) => Script::load(script)
            .map(|_| Validated::Nothing)
            .map_err(|source| OrderError::Script {
                address,
                source: Box::new(source),
            }),
        None => Ok(Validated::Nothing),
    }
}

/// A listener's answers, with those of every cluster of the state.
pub(super) fn listener_answers(
    state: &ConfigState,
    config: &HttpListenerConfig,
) -> Result<Answers, OrderError> {
    let mut answers =
        Answers::new(&config.answers).map_err(|source| OrderError::ListenerAnswers {
            address: config.address,
            source,
        })?;
    for cluster in state.clusters.values() {
        answers
            .set_cluster(&cluster.cluster_id, &cluster.answers)
            .map_err(|source| OrderError::ClusterAnswers {
                cluster: cluster.cluster_id.clone(),
                source,
            })?;
    }
    Ok(answers)
}

/// Loads a certificate, with the facts the main process gave when there are some; the state
/// then keeps the copy of its text the loaded certificate holds (each key's text held once by
/// a worker).
fn load(
    address: SocketAddr,
    certificate: &CertificateAndKey,
    keys: KeyCheck,
    facts: Option<CertificateFacts>,
    checked: Checked,
) -> Result<(Validated, Checked), OrderError> {
    let shared = Arc::new(certificate.clone());
    let (loaded, facts) = match facts {
        Some(facts) => tls::load_certificate_given_facts(&shared, facts, keys),
        None => tls::load_shared_certificate_with_facts(&shared, keys),
    }
    .map_err(|source| OrderError::Certificate { address, source })?;
    Ok((
        Validated::Certificate(loaded),
        checked
            .with_certificate(facts)
            .with_shared_certificate(shared),
    ))
}

#[cfg(test)]
mod tests;
