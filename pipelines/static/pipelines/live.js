// The admin's "Live events" page (pipelines/live.py): fills the table from the pipeline's WebSocket
// (/ws/pipelines/<id>/live, ingestion/consumers.py). Pausing, filtering and the envelope pane are
// all here; the server only sends events. Everything taken from an event is written with
// textContent, never as HTML: events come from the internet.
"use strict";

(function () {
  const MAX_ROWS = 500; // newest first; older rows leave the table
  const root = document.getElementById("live-events");
  if (!root) {
    return;
  }
  const byId = (id) => document.getElementById(id);
  const tbody = document.querySelector("#live-table tbody");
  const stateLabel = byId("live-state");
  const pauseButton = byId("live-pause");
  const typeSelect = byId("live-type");
  const statusSelect = byId("live-status");
  const textInput = byId("live-text");
  const countsLabel = byId("live-counts");
  const emptyNote = byId("live-empty");
  const detailPane = byId("live-detail");
  const detailTitle = byId("live-detail-title");
  const detailBody = byId("live-detail-body");
  const details = new WeakMap(); // row -> what its pane shows

  let paused = false;
  let waiting = []; // events that arrived while paused, oldest first
  let accepted = 0;
  let rejected = 0;
  let selectedRow = null;
  let retryDelay = 1000;

  function setState(name, text) {
    stateLabel.dataset.state = name;
    stateLabel.textContent = text;
  }

  function connect() {
    setState("connecting", "Connecting…");
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(scheme + "//" + location.host + root.dataset.socketPath);
    socket.addEventListener("open", () => {
      retryDelay = 1000;
      setState("live", "Live");
    });
    socket.addEventListener("message", (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch (error) {
        return;
      }
      receive(event);
    });
    socket.addEventListener("close", (closed) => {
      if (closed.code === 4403) {
        setState("refused", "Not allowed: log in to the admin again, then reload.");
        return;
      }
      if (closed.code === 4404) {
        setState("refused", "This pipeline does not exist any more.");
        return;
      }
      // A refused handshake (an expired session) also ends here, as 1006: keep trying, slowly.
      setState("closed", "Disconnected; trying again in " + Math.round(retryDelay / 1000) + " s (log in again if this lasts).");
      setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 30000);
    });
  }

  function parsedPayload(text) {
    try {
      return JSON.parse(text); // a truncated or non-JSON payload stays text
    } catch (error) {
      return null;
    }
  }

  // One row's cells and its pane, from either message shape.
  function describe(event) {
    if (event.status === "accepted") {
      const envelope = event.envelope || {};
      return {
        status: "accepted",
        time: envelope.receivedAt,
        type: envelope.type,
        name: envelope.event || envelope.name,
        who: envelope.userId || envelope.anonymousId,
        source: envelope.source && envelope.source.kind,
        title: "Envelope",
        detail: envelope,
      };
    }
    const payload = parsedPayload(event.payload);
    const body = payload && typeof payload === "object" && !Array.isArray(payload) ? payload : {};
    return {
      status: "rejected",
      reason: event.reason,
      message: event.message,
      time: event.receivedAt,
      type: body.type,
      name: body.event || body.name,
      who: body.userId || body.anonymousId,
      source: event.source && event.source.kind,
      title: "Rejected: " + (event.reason || "unknown reason"),
      detail: Object.assign({}, event, { payload: payload === null ? event.payload : payload }),
    };
  }

  function cell(text, className) {
    const td = document.createElement("td");
    if (className) {
      td.className = className;
    }
    td.textContent = text === undefined || text === null || text === "" ? "—" : String(text);
    return td;
  }

  function addRow(item) {
    const row = document.createElement("tr");
    row.className = "live-row live-" + item.status;
    row.tabIndex = 0;
    row.dataset.status = item.status;
    row.dataset.type = item.type || "";
    row.dataset.search = JSON.stringify(item.detail).toLowerCase();
    row.append(
      cell(item.time ? item.time.slice(11, 23) : ""),
      cell(item.type),
      cell(item.name, "live-wrap"),
      cell(item.who, "live-wrap"),
      cell(item.source),
    );
    const status = document.createElement("td");
    const badge = document.createElement("span");
    badge.className = "live-badge";
    badge.textContent = item.status;
    status.append(badge);
    if (item.status === "rejected") {
      status.append(" " + (item.reason || ""));
      status.title = item.message || "";
    }
    row.append(status);
    if (item.time) {
      row.title = item.time;
    }
    details.set(row, item);
    row.hidden = !matches(row);
    tbody.insertBefore(row, tbody.firstChild);
    while (tbody.rows.length > MAX_ROWS) {
      const last = tbody.rows[tbody.rows.length - 1];
      if (last === selectedRow) {
        selectedRow = null;
      }
      last.remove();
    }
    emptyNote.hidden = true;
  }

  function receive(event) {
    if (event.status === "accepted") {
      accepted += 1;
    } else if (event.status === "rejected") {
      rejected += 1;
    } else {
      return;
    }
    const item = describe(event);
    if (paused) {
      waiting.push(item);
      if (waiting.length > MAX_ROWS) {
        waiting.shift();
      }
    } else {
      addRow(item);
    }
    showCounts();
  }

  function showCounts() {
    let text = accepted + " accepted · " + rejected + " rejected";
    if (paused) {
      text += " · paused, " + waiting.length + " waiting";
    }
    countsLabel.textContent = text;
  }

  function matches(row) {
    const type = typeSelect.value;
    const status = statusSelect.value;
    const text = textInput.value.trim().toLowerCase();
    return (!type || row.dataset.type === type) && (!status || row.dataset.status === status) && (!text || row.dataset.search.includes(text));
  }

  function applyFilter() {
    for (const row of tbody.rows) {
      row.hidden = !matches(row);
    }
  }

  function showDetail(row) {
    const item = details.get(row);
    if (!item) {
      return;
    }
    if (selectedRow) {
      selectedRow.classList.remove("live-selected");
    }
    selectedRow = row;
    row.classList.add("live-selected");
    detailTitle.textContent = item.title;
    detailBody.textContent = JSON.stringify(item.detail, null, 2);
    detailPane.hidden = false;
  }

  pauseButton.addEventListener("click", () => {
    paused = !paused;
    pauseButton.textContent = paused ? "Resume" : "Pause";
    pauseButton.setAttribute("aria-pressed", String(paused));
    if (!paused) {
      const arrived = waiting;
      waiting = [];
      arrived.forEach(addRow);
    }
    showCounts();
  });
  typeSelect.addEventListener("change", applyFilter);
  statusSelect.addEventListener("change", applyFilter);
  textInput.addEventListener("input", applyFilter);
  tbody.addEventListener("click", (click) => {
    const row = click.target.closest("tr");
    if (row) {
      showDetail(row);
    }
  });
  tbody.addEventListener("keydown", (key) => {
    if (key.key === "Enter" && key.target.matches("tr")) {
      showDetail(key.target);
    }
  });
  byId("live-detail-close").addEventListener("click", () => {
    detailPane.hidden = true;
    if (selectedRow) {
      selectedRow.classList.remove("live-selected");
      selectedRow = null;
    }
  });

  showCounts();
  connect();
})();
