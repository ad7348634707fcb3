// pbx dashboard: the chart on the overview and the live-call table (no inline scripts: CSP).
"use strict";

function perSourceChart() {
  const canvas = document.getElementById("per-source-chart");
  const source = document.getElementById("chart-data");
  if (!canvas || !source || typeof Chart === "undefined") return;
  const data = JSON.parse(source.textContent);
  const palette = ["#1f5fbf", "#d9822b", "#2e9d5b", "#b3261e", "#7b4fc9", "#138d9c",
                   "#8c6d1f", "#c2458a", "#52606d", "#5aa02c"];
  new Chart(canvas, {
    type: "bar",
    data: {
      labels: data.days.map((d) => d.slice(5)),
      datasets: data.series.map((s, i) => ({
        label: s.source, data: s.calls, backgroundColor: palette[i % palette.length],
      })),
    },
    options: {
      maintainAspectRatio: false, animation: false,
      scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true,
                                           ticks: { precision: 0 } } },
      plugins: { legend: { position: "bottom" } },
    },
  });
}

function cell(row, text, href) {
  const td = document.createElement("td");
  if (href) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    td.appendChild(a);
  } else {
    td.textContent = text;
  }
  row.appendChild(td);
}

function liveTable() {
  const table = document.getElementById("live");
  if (!table || typeof EventSource === "undefined") return;
  const body = table.querySelector("tbody");
  const state = document.getElementById("live-state");
  const stream = new EventSource(table.dataset.stream);
  stream.addEventListener("open", () => { state.textContent = "live"; });
  stream.addEventListener("error", () => { state.textContent = "reconnecting…"; });
  stream.addEventListener("live", (event) => {
    const calls = JSON.parse(event.data).calls;
    body.replaceChildren();
    if (calls.length === 0) {
      const row = document.createElement("tr");
      row.className = "empty";
      const td = document.createElement("td");
      td.colSpan = 6;
      td.textContent = "No calls right now.";
      row.appendChild(td);
      body.appendChild(row);
    }
    for (const c of calls) {
      const row = document.createElement("tr");
      row.dataset.callId = c.id;
      cell(row, (c.started_at || "").slice(0, 19).replace("T", " "), "/calls/" + encodeURIComponent(c.id));
      cell(row, c.caller || "");
      cell(row, c.tracking_number || "");
      cell(row, c.source || "–");
      cell(row, c.destination || "");
      cell(row, c.disposition || "");
      body.appendChild(row);
    }
    table.dataset.updates = String(Number(table.dataset.updates || 0) + 1);
  });
}

document.addEventListener("DOMContentLoaded", () => { perSourceChart(); liveTable(); });
