use super::*;

fn request(method: &str, path: &str, body: &str) -> ApiRequest {
    ApiRequest {
        method: method.to_string(),
        path: path.to_string(),
        user_agent: Some("python-requests/2".to_string()),
        body: body.as_bytes().to_vec(),
    }
}

/// Handles `request` and applies its orders, as the main process does; returns the answer.
fn send(state: &mut ConfigState, method: &str, path: &str, body: &str) -> (u16, Value) {
    let answer = match handle(state, &request(method, path, body)) {
        Reply::Now(answer) => answer,
        Reply::AfterChange { orders, answer } => {
            for order in &orders {
                state.apply(order).unwrap();
            }
            answer
        }
    };
    let value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    (answer.status, value)
}

const PROXY: &str =
    r#"{"name": "redis", "listen": "127.0.0.1:26379", "upstream": "127.0.0.1:6379"}"#;

#[test]
fn a_proxy_is_a_listener_a_cluster_and_a_backend() {
    let mut state = ConfigState::new();
    let (status, proxy) = send(&mut state, "POST", "/proxies", PROXY);
    assert_eq!(status, 201);
    assert_eq!(
        proxy,
        json!({"name": "redis", "listen": "127.0.0.1:26379", "upstream": "127.0.0.1:6379",
               "enabled": true, "toxics": []})
    );
    let listen: SocketAddr = "127.0.0.1:26379".parse().unwrap();
    assert!(state.tcp_listeners[&listen].active);
    assert_eq!(state.tcp_frontends[&listen][0].cluster_id, "redis");
    assert_eq!(
        state.backends["redis"]["redis-upstream"].address.port(),
        6379
    );
    let (status, all) = send(&mut state, "GET", "/proxies", "");
    assert_eq!(status, 200);
    assert_eq!(all["redis"], proxy);
    let (status, _) = send(
        &mut state,
        "POST",
        "/proxies/redis",
        r#"{"enabled": false}"#,
    );
    assert_eq!(status, 200);
    assert!(!state.tcp_listeners[&listen].active);
    let (status, _) = send(&mut state, "DELETE", "/proxies/redis", "");
    assert_eq!(status, 204);
    assert!(state.clusters.is_empty() && state.tcp_listeners.is_empty());
}

#[test]
fn errors_have_toxiproxy_shapes_and_change_nothing() {
    let mut state = ConfigState::new();
    send(&mut state, "POST", "/proxies", PROXY);
    let before = state.clone();
    let cases = [
        ("POST", "/proxies", PROXY, 409, "proxy already exists"),
        (
            "POST",
            "/proxies",
            r#"{"upstream": "127.0.0.1:1"}"#,
            400,
            "missing required field: name",
        ),
        (
            "POST",
            "/proxies",
            r#"{"name": "x"}"#,
            400,
            "missing required field: upstream",
        ),
        ("POST", "/proxies", "{", 400, "bad request body"),
        ("GET", "/proxies/nope", "", 404, "proxy not found"),
        (
            "GET",
            "/proxies/redis/toxics/nope",
            "",
            404,
            "toxic not found",
        ),
        (
            "POST",
            "/proxies/redis/toxics",
            r#"{"type": "lag"}"#,
            400,
            "invalid toxic type",
        ),
        (
            "POST",
            "/proxies/redis/toxics",
            r#"{"type": "latency", "stream": "sideways"}"#,
            400,
            "stream was invalid, can be either upstream or downstream",
        ),
        (
            "POST",
            "/proxies/redis/toxics",
            r#"{"type": "latency", "toxicity": 1.5}"#,
            400,
            "probability",
        ),
        (
            "POST",
            "/proxies/redis/toxics",
            r#"{"type": "latency", "attributes": {"latency": -1}}"#,
            400,
            "`latency` is -1",
        ),
    ];
    for (method, path, body, status, message) in cases {
        let (got, error) = send(&mut state, method, path, body);
        assert_eq!(got, status, "{method} {path} {body}");
        assert_eq!(error["status"], status);
        let text = error["error"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{method} {path} {body}: {text}");
        assert_eq!(state, before);
    }
    let (status, _) = send(&mut state, "PUT", "/proxies", "");
    assert_eq!(status, 405);
    let (status, _) = send(&mut state, "GET", "/elsewhere", "");
    assert_eq!(status, 404);
}

#[test]
fn toxics_are_faults_on_the_proxy_cluster() {
    let mut state = ConfigState::new();
    send(&mut state, "POST", "/proxies", PROXY);
    let (status, toxic) = send(
        &mut state,
        "POST",
        "/proxies/redis/toxics",
        r#"{"type": "latency", "attributes": {"latency": 200, "jitter": 5, "other": 1}}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(
        toxic,
        json!({"name": "latency_downstream", "type": "latency", "stream": "downstream",
               "toxicity": 1.0, "attributes": {"latency": 200, "jitter": 5}})
    );
    let fault = &state.faults["redis:latency_downstream"];
    assert_eq!(fault.direction, Direction::Downstream);
    let (status, _) = send(
        &mut state,
        "POST",
        "/proxies/redis/toxics",
        r#"{"type": "latency"}"#,
    );
    assert_eq!(status, 409);
    let (status, updated) = send(
        &mut state,
        "POST",
        "/proxies/redis/toxics/latency_downstream",
        r#"{"attributes": {"latency": 50}, "toxicity": 0.5}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(updated["attributes"], json!({"latency": 50, "jitter": 5}));
    assert_eq!(updated["toxicity"], 0.5);
    let (_, listed) = send(&mut state, "GET", "/proxies/redis/toxics", "");
    assert_eq!(listed, json!([updated]));
    send(
        &mut state,
        "POST",
        "/proxies/redis/toxics",
        r#"{"name": "cut", "type": "limit_data", "stream": "upstream", "attributes": {"bytes": 10}}"#,
    );
    send(
        &mut state,
        "POST",
        "/proxies/redis",
        r#"{"enabled": false}"#,
    );
    let (status, _) = send(&mut state, "DELETE", "/proxies/redis/toxics/cut", "");
    assert_eq!(status, 204);
    assert_eq!(state.faults.len(), 1);
    let (status, _) = send(&mut state, "POST", "/reset", "");
    assert_eq!(status, 204);
    assert!(state.faults.is_empty());
    assert!(state.tcp_listeners.values().all(|listener| listener.active));
}

#[test]
fn populate_creates_keeps_and_replaces() {
    let mut state = ConfigState::new();
    send(&mut state, "POST", "/proxies", PROXY);
    let body = r#"[
        {"name": "redis", "listen": "127.0.0.1:26379", "upstream": "127.0.0.1:6379"},
        {"name": "db", "listen": "127.0.0.1:23306", "upstream": "127.0.0.1:3306"}
    ]"#;
    let (status, populated) = send(&mut state, "POST", "/populate", body);
    assert_eq!(status, 201);
    assert_eq!(populated["proxies"].as_array().map(Vec::len), Some(2));
    let moved = r#"[{"name": "db", "listen": "127.0.0.1:23306", "upstream": "127.0.0.1:3307"}]"#;
    send(&mut state, "POST", "/populate", moved);
    assert_eq!(state.backends["db"]["db-upstream"].address.port(), 3307);
    assert_eq!(state.clusters.len(), 2);
}

#[test]
fn browsers_are_refused_and_the_version_is_told() {
    let state = ConfigState::new();
    let mut browser = request("GET", "/proxies", "");
    browser.user_agent = Some("Mozilla/5.0".to_string());
    assert!(matches!(
        handle(&state, &browser),
        Reply::Now(Answer { status: 403, .. })
    ));
    let Reply::Now(version) = handle(&state, &request("GET", "/version", "")) else {
        panic!("the version is answered at once");
    };
    let value: Value = serde_json::from_slice(&version.body).unwrap();
    assert!(value["version"].is_string());
}
