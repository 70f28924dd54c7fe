# The sozu-only scenarios of the load benchmark, sourced by run.sh: `scale` (HTTP keep-alive to
# the last of N frontends) and `logs` (HTTP keep-alive without access logs, with JSON and with
# default-format access logs). They add to `meta`, the key=value list of run.sh's main given
# to the report.

# write_scale_config COUNT PORT: a sozu config with COUNT frontends host{i}.example.com.
write_scale_config() {
    local count=$1 port=$2
    mkdir -p "$WORK/scale-$count"
    {
        cat <<EOF
command_socket = "sozu.sock"
log_level = "error"
log_target = "stdout"
worker_count = 1
max_connections = 5000

[[listeners]]
protocol = "http"
address = "127.0.0.1:$port"

[clusters.web]
protocol = "http"
backends = [{ address = "127.0.0.1:$BACKEND_PORT" }]
EOF
        helper frontends "$count" "127.0.0.1:$port"
    } >"$WORK/scale-$count/sozu.toml"
}

# write_logs_config VARIANT PORT: an HTTP-only sozu config; the `logged` variant writes a JSON
# access log line per request to a file, the `default` variant a line in the default format
# (ascii) (metrics are always kept).
write_logs_config() {
    local variant=$1 port=$2
    mkdir -p "$WORK/logs-$variant"
    {
        cat <<EOF
command_socket = "sozu.sock"
log_level = "error"
log_target = "stdout"
worker_count = 1
max_connections = 5000
EOF
        if [[ $variant != quiet ]]; then
            echo "access_logs_target = \"file://$WORK/logs-$variant/access.log\""
        fi
        [[ $variant != logged ]] || echo 'access_logs_format = "json"'
        cat <<EOF

[[listeners]]
protocol = "http"
address = "127.0.0.1:$port"

[clusters.web]
protocol = "http"
frontends = [{ address = "127.0.0.1:$port", hostname = "localhost" }]
backends = [{ address = "127.0.0.1:$BACKEND_PORT" }]
EOF
    } >"$WORK/logs-$variant/sozu.toml"
}

# run_scale RESULTS: one sozu per count of SCALE_FRONTENDS, the seconds each takes to answer,
# then HTTP keep-alive to the last frontend of each, ROUNDS times.
run_scale() {
    local results=$1 count counts port started ports round i
    read -r -a counts <<<"$SCALE_FRONTENDS"
    read -r -a ports <<<"$(helper ports "${#counts[@]}")"
    for i in "${!counts[@]}"; do
        count=${counts[$i]}
        port=${ports[$i]}
        write_scale_config "$count" "$port"
        say "starting sozu with $count frontends"
        started=$EPOCHREALTIME
        start "sozu-$count" "$PROXY_CPU" "$SOZU_BIN" start -c "$WORK/scale-$count/sozu.toml"
        PROXY_PID[sozu-$count]=$PID
        PORTS[sozu-$count]="$port"
        wait_answer "sozu-$count" "$PID" "host$((count - 1)).example.com" "http://127.0.0.1:$port/"
        meta+=("load_seconds_$count=$(awk -v a="$EPOCHREALTIME" -v b="$started" 'BEGIN { printf "%.1f", a - b }')")
    done
    for round in $(seq "$ROUNDS"); do
        for count in "${counts[@]}"; do
            measure http-keepalive "sozu-$count" "$round" "$results" "host$((count - 1)).example.com"
        done
    done
}

# check_access_log VARIANT: the access log of VARIANT (written every 100 ms) holds a line of
# the checked request, in its format.
check_access_log() {
    local variant=$1 format=json line deadline=$((SECONDS + 10))
    [[ $variant == logged ]] || format=default
    while ((SECONDS < deadline)); do
        line=$(head -n 1 "$WORK/logs-$variant/access.log" 2>/dev/null || true)
        [[ -z $line ]] || break
        sleep 0.1
    done
    helper check-access-line "$format" "$line" ||
        die "sozu-$variant wrote no access log line of the checked request (got: ${line:0:300})"
}

# run_logs RESULTS: three sozu, without access logs, with a JSON access log to a file and with
# the default format to a file, HTTP keep-alive through each, ROUNDS times.
run_logs() {
    local results=$1 variant logs_ports round i variants=(quiet logged default)
    read -r -a logs_ports <<<"$(helper ports 3)"
    for i in "${!variants[@]}"; do
        variant=${variants[$i]}
        write_logs_config "$variant" "${logs_ports[$i]}"
        start "sozu-$variant" "$PROXY_CPU" "$SOZU_BIN" start -c "$WORK/logs-$variant/sozu.toml"
        PROXY_PID[sozu-$variant]=$PID
        PORTS[sozu-$variant]="${logs_ports[$i]}"
        wait_answer "sozu-$variant" "$PID" localhost "http://127.0.0.1:${logs_ports[$i]}/"
        [[ $variant == quiet ]] || check_access_log "$variant"
    done
    for round in $(seq "$ROUNDS"); do
        for variant in $(rotation "$round" "${variants[@]}"); do
            measure http-keepalive "sozu-$variant" "$round" "$results" localhost
        done
    done
    meta+=("logs_results=$results")
}
