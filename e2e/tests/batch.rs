//! A batch of orders (`BEGIN_BATCH` … `END_BATCH`, how the main process hands a worker its
//! state) through a real worker: each order is checked and applied as a lone one, a refused one
//! does not stop the others, and the batch is answered once, naming what was refused.

use sozu_command_lib::{
    request::{Cluster, HttpFrontend, HttpListenerConfig, ListenerAddress, ListenerType, Order},
    response::ResponseStatus,
};
use sozu_e2e::{
    Worker, backend_order, free_address, http_backend::HttpBackend, http_client::Client,
};
use sozu_lib::server::ServerConfig;

#[test]
fn a_batch_applies_what_it_can_and_answers_once_naming_each_refusal() {
    let backend = HttpBackend::ok("batched");
    let mut worker = Worker::start(ServerConfig::default());
    let address = free_address();
    let frontend = |hostname: &str| {
        Order::AddHttpFrontend(HttpFrontend::new(
            Some("app".to_string()),
            address,
            hostname,
        ))
    };
    let orders = [
        Order::AddHttpListener(HttpListenerConfig::new(address)),
        Order::ActivateListener(ListenerAddress {
            address,
            proxy: ListenerType::Http,
        }),
        Order::AddCluster(Cluster::new("app")),
        Order::AddBackend(backend_order("app", "app-0", backend.address)),
        // Refused: no such cluster. The next orders are applied all the same.
        Order::AddBackend(backend_order("missing", "missing-0", backend.address)),
        frontend("first.example.com"),
        // Refused: the same route twice.
        frontend("first.example.com"),
        frontend("second.example.com"),
    ];
    worker.send(Order::BeginBatch);
    let inner: Vec<String> = orders.into_iter().map(|order| worker.send(order)).collect();
    let end = worker.send(Order::EndBatch);

    let answer = worker.response_to(&end);
    assert_eq!(answer.status, ResponseStatus::Failure, "{}", answer.message);
    assert!(
        answer
            .message
            .starts_with("2 of 8 orders refused: order 5 (ADD_BACKEND): "),
        "{}",
        answer.message
    );
    assert!(
        answer.message.contains("; order 7 (ADD_HTTP_FRONTEND): "),
        "{}",
        answer.message
    );

    // What was accepted serves.
    for host in ["first.example.com", "second.example.com"] {
        let mut client = Client::connect(address);
        assert_eq!(client.get(host, "/").text(), "batched", "{host}");
    }
    // The orders inside the batch got no answer of their own: the next answer on the channel
    // is the one of the next order.
    let status = worker.send(Order::Status);
    let next = worker.next_response();
    assert_eq!(next.id, status, "an answer to one of {inner:?}: {next:?}");

    // After the batch, orders are answered one by one again.
    let lone = worker.order(Order::AddBackend(backend_order(
        "missing",
        "missing-0",
        backend.address,
    )));
    assert_eq!(lone.status, ResponseStatus::Failure);
    assert!(!lone.message.contains("orders refused"), "{}", lone.message);
}

#[test]
fn a_batch_end_without_its_start_is_refused() {
    let mut worker = Worker::start(ServerConfig::default());
    let answer = worker.order(Order::EndBatch);
    assert_eq!(answer.status, ResponseStatus::Failure);
    assert_eq!(answer.message, "END_BATCH without BEGIN_BATCH");
    worker.send(Order::BeginBatch);
    let nested = worker.order(Order::BeginBatch);
    assert_eq!(nested.status, ResponseStatus::Failure);
    assert_eq!(nested.message, "BEGIN_BATCH: a batch is open already");
    let answer = worker.order(Order::EndBatch);
    assert_eq!(answer.status, ResponseStatus::Ok, "{}", answer.message);
    assert_eq!(answer.message, "0 orders applied");
}
