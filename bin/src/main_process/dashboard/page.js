"use strict";
// The dashboard's page: asks /dashboard/data every second and draws what it answers.
// Charts are drawn on <canvas> by the functions below; nothing is fetched from elsewhere.

const POLL_MS = 1000;
const RETRY_MS = 2000;
const SPAN_MS = 60000;
const MOST_LINES = 8;
const PALETTE = ["#3b7dd8", "#2e9d57", "#d8453b", "#c98a0b", "#8e44ad", "#16a2b8", "#e67e22",
  "#5d6d7e"];
const CLASSES = [["1xx", "#98a2b3"], ["2xx", "#2e9d57"], ["3xx", "#3b7dd8"], ["4xx", "#c98a0b"],
  ["5xx", "#d8453b"]];

let latest = null;

function formatRate(value) {
  if (!(value > 0)) return "0";
  if (value < 10) return value.toFixed(1);
  if (value < 10000) return value.toFixed(0);
  return (value / 1000).toFixed(1) + "k";
}

function formatMs(value) {
  if (value === null || value === undefined) return "–";
  if (value === 0) return "0";
  if (value < 1) return (value * 1000).toFixed(0) + "µs";
  if (value < 1000) return value.toFixed(value < 10 ? 1 : 0) + "ms";
  return (value / 1000).toFixed(2) + "s";
}

function clock(millis) {
  return new Date(millis).toLocaleTimeString();
}

// An element with attributes and children (strings become text: never HTML).
function element(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    node.setAttribute(name, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function cell(value, numeric) {
  return element("td", numeric ? { class: "n" } : {}, value);
}

function badge(text, kind) {
  return element("span", { class: "badge " + kind }, text);
}

function fillTable(id, rows, columns) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren(...rows);
  if (rows.length === 0) {
    body.append(element("tr", {}, element("td", { class: "empty", colspan: String(columns) },
      "none")));
  }
}

function setStatus(live, text) {
  const status = document.getElementById("status");
  status.className = "status " + (live ? "live" : "lost");
  status.textContent = text;
}

function renderTotals(data) {
  const proxy = data.proxy;
  const running = data.workers.filter((worker) => worker.run_state === "RUNNING").length;
  const totals = [
    ["requests/s", formatRate(proxy.requests)],
    ["2xx/s", formatRate(proxy.statuses["2xx"])],
    ["4xx/s", formatRate(proxy.statuses["4xx"])],
    ["5xx/s", formatRate(proxy.statuses["5xx"])],
    ["p50", formatMs(proxy.p50_ms)],
    ["p99", formatMs(proxy.p99_ms)],
    ["connections", String(proxy.active_connections)],
    ["workers", running + "/" + data.workers.length],
  ];
  document.getElementById("totals").replaceChildren(...totals.map(([name, value]) =>
    element("div", {}, element("dt", {}, name), element("dd", {}, value))));
}

function renderClusters(data) {
  const rows = data.clusters.map((cluster) => element("tr", {},
    cell(cluster.id),
    cell(formatRate(cluster.requests), true),
    cell(formatRate(cluster.statuses["2xx"]), true),
    cell(formatRate(cluster.statuses["3xx"]), true),
    cell(formatRate(cluster.statuses["4xx"]), true),
    element("td", { class: cluster.statuses["5xx"] > 0 ? "n bad" : "n" },
      formatRate(cluster.statuses["5xx"])),
    cell(formatMs(cluster.p50_ms), true),
    cell(formatMs(cluster.p99_ms), true),
    cell(cluster.active_connections, true),
    cell(cluster.backends.up, true),
    element("td", { class: cluster.backends.down > 0 ? "n bad" : "n" }, cluster.backends.down),
    cell(cluster.backends.draining, true)));
  fillTable("clusters", rows, 12);
}

function renderBackends(data) {
  const rows = data.backends.map((backend) => {
    let state = backend.state;
    if (state === "DOWN" && backend.down_in < backend.reported_by) {
      state += " " + backend.down_in + "/" + backend.reported_by;
    }
    const health = { UNCHECKED: "none", PASSING: "passing", FAILING: "failing", UNKNOWN: "checked" }[
      backend.health] || backend.health;
    return element("tr", { "data-state": backend.state },
      cell(backend.cluster_id),
      cell(backend.backend_id),
      cell(backend.address || "–"),
      element("td", {}, badge(state, backend.state)),
      cell(backend.active_connections, true),
      cell(formatRate(backend.requests), true),
      cell(formatRate(backend.statuses["5xx"]), true),
      cell(formatMs(backend.p99_ms), true),
      element("td", {}, badge(health, health)));
  });
  fillTable("backends", rows, 9);
}

function renderProcesses(data) {
  fillTable("workers", data.workers.map((worker) => element("tr", {},
    cell(worker.id),
    cell(worker.pid, true),
    element("td", {}, badge(worker.run_state, worker.run_state)),
    cell(worker.restarts, true))), 4);
  fillTable("listeners", data.listeners.map((listener) => element("tr", {},
    cell(listener.address),
    cell(listener.protocol),
    cell(listener.active ? "yes" : "no"),
    cell(formatRate(listener.requests), true),
    cell(formatRate(listener.connections), true))), 5);
}

function renderEvents(data) {
  const items = data.events.slice().reverse().map((logged) => {
    const about = [];
    if (logged.cluster_id) about.push("cluster=" + logged.cluster_id);
    if (logged.backend_id) about.push("backend=" + logged.backend_id);
    if (logged.address) about.push("address=" + logged.address);
    if (logged.message) about.push(logged.message);
    return element("li", { class: logged.kind, value: String(logged.seq) },
      element("time", {}, clock(logged.time)),
      element("span", { class: "kind" }, logged.kind),
      about.join(" "));
  });
  const list = document.getElementById("events");
  list.replaceChildren(...items);
  if (items.length === 0) {
    list.append(element("li", {}, "no event since the proxy started"));
  }
}

function renderStatusChoice(data) {
  const select = document.getElementById("status-cluster");
  const wanted = [""].concat(data.clusters.map((cluster) => cluster.id));
  const present = Array.from(select.options).map((option) => option.value);
  if (wanted.join("\n") !== present.join("\n")) {
    const chosen = select.value;
    select.replaceChildren(element("option", { value: "" }, "the whole proxy"),
      ...data.clusters.map((cluster) => element("option", { value: cluster.id }, cluster.id)));
    select.value = wanted.includes(chosen) ? chosen : "";
  }
}

// The clusters with the most requests over the history, busiest first.
function busiest(history) {
  const totals = new Map();
  for (const point of history) {
    for (const [id, rates] of Object.entries(point.clusters)) {
      totals.set(id, (totals.get(id) || 0) + rates.requests);
    }
  }
  return Array.from(totals.entries()).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, MOST_LINES).map(([id]) => id);
}

// A round number at least `value`, for the top of a chart's scale.
function ceiling(value) {
  if (!(value > 0)) return 1;
  const magnitude = Math.pow(10, Math.floor(Math.log10(value)));
  // Four steps of the grid: a quarter of each of these reads well.
  for (const step of [1, 2, 4, 6, 8, 10]) {
    if (step * magnitude >= value) return step * magnitude;
  }
  return 10 * magnitude;
}

// Draws series of [time, value] points on a canvas: lines, or areas stacked in order.
// The canvas's data-points attribute tells how many points were drawn.
function drawChart(canvas, series, options) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const context = canvas.getContext("2d");
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  context.clearRect(0, 0, width, height);
  const left = 52;
  const right = 8;
  const top = 8;
  const bottom = 20;
  const plotWidth = Math.max(width - left - right, 1);
  const plotHeight = Math.max(height - top - bottom, 1);
  const end = options.end;
  const start = end - SPAN_MS;
  let drawn = 0;
  let highest = 0;
  const stack = new Map();
  const shapes = series.map((line) => {
    const points = line.points.map(([time, value]) => {
      const base = options.stacked ? (stack.get(time) || 0) : 0;
      if (options.stacked) stack.set(time, base + value);
      highest = Math.max(highest, base + value);
      return [time, base, base + value];
    });
    return { color: line.color, points };
  });
  const scaleTop = ceiling(highest);
  const x = (time) => left + ((time - start) / SPAN_MS) * plotWidth;
  const y = (value) => top + plotHeight - (value / scaleTop) * plotHeight;
  context.font = "11px system-ui, sans-serif";
  context.fillStyle = "#667085";
  context.strokeStyle = "#e3e6eb";
  context.lineWidth = 1;
  context.textAlign = "right";
  context.textBaseline = "middle";
  for (let step = 0; step <= 4; step += 1) {
    const value = (scaleTop * step) / 4;
    context.beginPath();
    context.moveTo(left, Math.round(y(value)) + 0.5);
    context.lineTo(left + plotWidth, Math.round(y(value)) + 0.5);
    context.stroke();
    context.fillText(options.format(value), left - 6, y(value));
  }
  context.textAlign = "center";
  context.textBaseline = "top";
  for (const seconds of [60, 45, 30, 15, 0]) {
    const label = seconds === 0 ? "now" : "-" + seconds + "s";
    context.textAlign = seconds === 0 ? "right" : "center";
    context.fillText(label, x(end - seconds * 1000), top + plotHeight + 5);
  }
  context.save();
  context.beginPath();
  context.rect(left, top, plotWidth, plotHeight);
  context.clip();
  for (const shape of shapes) {
    const points = shape.points.filter(([time]) => time >= start - POLL_MS * 2);
    if (points.length === 0) continue;
    drawn += points.length;
    context.strokeStyle = shape.color;
    context.fillStyle = shape.color;
    context.lineWidth = 2;
    if (options.stacked) {
      // An area between the series below and this one; no line, so that a class without
      // answers leaves no trace.
      context.globalAlpha = 0.75;
      context.beginPath();
      points.forEach(([time, , high], index) => {
        if (index === 0) context.moveTo(x(time), y(high));
        else context.lineTo(x(time), y(high));
      });
      for (const [time, low] of points.slice().reverse()) context.lineTo(x(time), y(low));
      context.closePath();
      context.fill();
      context.globalAlpha = 1;
      continue;
    }
    context.beginPath();
    points.forEach(([time, , high], index) => {
      if (index === 0) context.moveTo(x(time), y(high));
      else context.lineTo(x(time), y(high));
    });
    context.stroke();
    if (points.length === 1) {
      const [time, , high] = points[0];
      context.beginPath();
      context.arc(x(time), y(high), 2.5, 0, 2 * Math.PI);
      context.fill();
    }
  }
  context.restore();
  canvas.dataset.points = String(drawn);
}

function legend(id, series) {
  document.getElementById(id).replaceChildren(...series.map((line) =>
    element("span", { style: "--swatch: " + line.color }, line.name)));
}

function renderCharts(data) {
  const history = data.history;
  const clusters = busiest(history);
  const colored = clusters.map((id, index) => ({ id, color: PALETTE[index % PALETTE.length] }));
  const requests = colored.map(({ id, color }) => ({
    name: id,
    color,
    points: history.map((point) => [point.time, (point.clusters[id] || { requests: 0 }).requests]),
  }));
  const proxyLine = {
    name: "whole proxy",
    color: "#1d2330",
    points: history.map((point) => [point.time, point.proxy.requests]),
  };
  const requestSeries = [proxyLine].concat(requests);
  drawChart(document.getElementById("chart-requests"), requestSeries,
    { end: data.time, format: formatRate });
  legend("legend-requests", requestSeries);

  const chosen = document.getElementById("status-cluster").value;
  const rates = (point) => chosen === "" ? point.proxy : point.clusters[chosen];
  const statusSeries = CLASSES.map(([name, color]) => ({
    name,
    color,
    points: history.map((point) => {
      const found = rates(point);
      return [point.time, found ? found.statuses[name] : 0];
    }),
  }));
  drawChart(document.getElementById("chart-statuses"), statusSeries,
    { end: data.time, format: formatRate, stacked: true });
  legend("legend-statuses", statusSeries);

  const p99Series = colored.map(({ id, color }) => ({
    name: id,
    color,
    points: history.filter((point) => point.clusters[id] && point.clusters[id].p99_ms !== null)
      .map((point) => [point.time, point.clusters[id].p99_ms]),
  }));
  drawChart(document.getElementById("chart-p99"), p99Series, { end: data.time, format: formatMs });
  legend("legend-p99", p99Series);
}

function render(data) {
  latest = data;
  renderTotals(data);
  renderStatusChoice(data);
  renderCharts(data);
  renderClusters(data);
  renderBackends(data);
  renderProcesses(data);
  renderEvents(data);
}

async function poll() {
  try {
    const response = await fetch("/dashboard/data", { cache: "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    const data = await response.json();
    render(data);
    const missing = data.missing.length > 0 ? ", " + data.missing.length + " worker(s) missing" : "";
    setStatus(true, "live, " + clock(data.time) + missing);
    setTimeout(poll, POLL_MS);
  } catch (error) {
    setStatus(false, "proxy not answering (" + error.message + "), retrying");
    setTimeout(poll, RETRY_MS);
  }
}

document.getElementById("status-cluster").addEventListener("change", () => {
  if (latest) renderCharts(latest);
});
window.addEventListener("resize", () => {
  if (latest) renderCharts(latest);
});
poll();
