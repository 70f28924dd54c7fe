//! Where `sozu top` reads its figures: the command socket, with the queries every other
//! subcommand uses. A refresh is `LIST_WORKERS`, `LIST_LISTENERS`, `QUERY_CLUSTERS_HASHES` (the
//! cluster ids), `QUERY_HEALTH_CHECKS`, `QUERY_METRICS` per worker with histograms, and
//! `QUERY_CLUSTER_BY_ID` for the selected cluster's backends. Events come on a second
//! connection, subscribed with `SUBSCRIBE_EVENTS`, read by a thread.
//!
//! When the proxy stops answering, the connections are dropped and made again at the next
//! refresh.

use std::{
    sync::mpsc::{self, Receiver, TryRecvError},
    thread,
    time::{Instant, SystemTime},
};

use anyhow::{anyhow, bail};
use sozu_command_lib::{
    request::{ClusterId, HealthCheckFilter, Order, QueryMetrics},
    response::{Event, ResponseContent},
};
use sozu_lib::server::EVENT_RESPONSE_ID;

use super::super::{
    Cli, Command,
    client::{Client, content},
};
use crate::live::{BackendFacts, Listener, Sample};

pub struct Source {
    /// The command line's options, to connect again.
    cli: Cli,
    client: Option<Client>,
    events: Option<Receiver<Event>>,
}

impl Source {
    /// Connects to the proxy, or fails like any other subcommand.
    pub fn connect(cli: &Cli) -> anyhow::Result<Source> {
        let cli = connection_options(cli);
        let client = Client::connect(&cli, cli.timeout, false)?;
        let mut source = Source {
            cli,
            client: Some(client),
            events: None,
        };
        source.subscribe();
        Ok(source)
    }

    /// A new sample, with the backends of `selected`. On failure, the connection is dropped;
    /// the next call connects again.
    pub fn sample(&mut self, selected: Option<&str>) -> anyhow::Result<Sample> {
        let result = self.try_sample(selected);
        if result.is_err() {
            self.client = None;
        }
        result
    }

    fn try_sample(&mut self, selected: Option<&str>) -> anyhow::Result<Sample> {
        if self.client.is_none() {
            self.client = Some(Client::connect(&self.cli, self.cli.timeout, false)?);
        }
        if self.events.is_none() {
            self.subscribe();
        }
        let client = self.client()?;
        let ResponseContent::Workers(workers) = content(client.order(Order::ListWorkers)?)? else {
            bail!("unexpected answer to LIST_WORKERS");
        };
        let ResponseContent::Listeners(listeners) = content(client.order(Order::ListListeners)?)?
        else {
            bail!("unexpected answer to LIST_LISTENERS");
        };
        let ResponseContent::ClusterHashes(clusters) =
            content(client.order(Order::QueryClustersHashes)?)?
        else {
            bail!("unexpected answer to QUERY_CLUSTERS_HASHES");
        };
        let query = QueryMetrics {
            workers: true,
            histograms: true,
            ..QueryMetrics::default()
        };
        let ResponseContent::Metrics(metrics) = content(client.order(Order::QueryMetrics(query))?)?
        else {
            bail!("unexpected answer to QUERY_METRICS");
        };
        let backends = match selected {
            Some(cluster_id) => self.backends(cluster_id)?,
            None => Vec::new(),
        };
        Ok(Sample {
            taken: Instant::now(),
            time: SystemTime::now(),
            workers,
            listeners: Listener::all(&listeners),
            clusters: clusters.into_keys().collect(),
            backends,
            metrics: metrics.workers,
        })
    }

    /// The backends of a cluster, as the state and the workers know them. A cluster removed
    /// meanwhile has none.
    pub fn backends(&mut self, cluster_id: &str) -> anyhow::Result<Vec<BackendFacts>> {
        let client = self.client()?;
        let filter = HealthCheckFilter {
            cluster_id: Some(cluster_id.to_string()),
        };
        let ResponseContent::HealthChecks(checks) =
            content(client.order(Order::QueryHealthChecks(filter))?)?
        else {
            bail!("unexpected answer to QUERY_HEALTH_CHECKS");
        };
        let checked = checks.contains_key(cluster_id);
        let id = ClusterId {
            cluster_id: cluster_id.to_string(),
        };
        // A FAILURE here is a cluster removed since the last refresh: no backends to show.
        let Ok(response) = client.order(Order::QueryClusterById(id)) else {
            return Ok(Vec::new());
        };
        let ResponseContent::Clusters(clusters) = content(response)? else {
            bail!("unexpected answer to QUERY_CLUSTER_BY_ID");
        };
        Ok(clusters
            .iter()
            .flat_map(|cluster| &cluster.backends)
            .map(|backend| BackendFacts::of(backend, checked))
            .collect())
    }

    /// The events received since the last call.
    pub fn events(&mut self) -> Vec<Event> {
        let Some(receiver) = &self.events else {
            return Vec::new();
        };
        let mut events = Vec::new();
        loop {
            match receiver.try_recv() {
                Ok(event) => events.push(event),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.events = None;
                    break;
                }
            }
        }
        events
    }

    fn client(&mut self) -> anyhow::Result<&mut Client> {
        self.client
            .as_mut()
            .ok_or_else(|| anyhow!("not connected to the proxy"))
    }

    /// Starts a thread that subscribes to events on its own connection and passes them on
    /// until the proxy closes it.
    fn subscribe(&mut self) {
        let (sender, receiver) = mpsc::channel();
        let cli = connection_options(&self.cli);
        let spawned = thread::Builder::new()
            .name("events".to_string())
            .spawn(move || {
                let Ok(mut client) = Client::connect(&cli, cli.timeout, false) else {
                    return;
                };
                if client.order(Order::SubscribeEvents).is_err() {
                    return;
                }
                while let Ok(Some(response)) = client.next_message(None) {
                    if response.id != EVENT_RESPONSE_ID {
                        continue;
                    }
                    if let Some(ResponseContent::Event(event)) = response.content {
                        if sender.send(event).is_err() {
                            return;
                        }
                    }
                }
            });
        self.events = spawned.ok().map(|_| receiver);
    }
}

/// The options that say how to reach the proxy, for another connection.
fn connection_options(cli: &Cli) -> Cli {
    Cli {
        config: cli.config.clone(),
        socket: cli.socket.clone(),
        json: None,
        timeout: cli.timeout,
        command: Command::Events,
    }
}
