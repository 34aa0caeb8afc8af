// Haven board: fills the server-rendered layout with live alarm state.
//
// The snapshot from /api/board is the only source of truth. The event stream
// (/events) just says "something changed": on every event, and every time the
// stream (re)opens, the page fetches a fresh snapshot. A slow periodic resync
// covers anything else (an event type this page does not know, a lost packet).
"use strict";

(() => {
  const root = document.body.dataset.root || "";
  const siteName = document.body.dataset.site || "";
  // Named events the page listens for; any other name still arrives as "message".
  const EVENT_TYPES = ["hello", "message", "alarm.raised", "alarm.acknowledged",
    "alarm.resolved", "alarm.cancelled", "alarm.notified", "device.status"];
  const RESYNC_MS = 15000;        // periodic snapshot, even when the stream is quiet
  const REOPEN_MS = 3000;         // recreate a stream the browser gave up on
  const FETCH_TIMEOUT_MS = 10000; // a hung snapshot request must not block the next
  const ICONS = {quiet: "✓", emergency: "⚠", assist: "✚", safe_room: "⌂",
    missed_checkin: "◷", welfare: "♥", test: "⚙"};  // glyphs common fonts have
  const ALARM_ICON = "⚠";

  const connection = document.getElementById("connection");
  const announcer = document.getElementById("announcer");
  const activeList = document.getElementById("active-list");
  const activeCount = document.getElementById("active-count");
  const noActive = document.getElementById("no-active");

  let source = null;
  let clockOffsetMs = 0;          // hub clock minus this browser's clock
  let known = null;               // ids of the alarms already shown (null: none yet)
  let inFlight = false;
  let again = false;

  const serverNow = () => Date.now() + clockOffsetMs;
  const iconFor = (kind) => ICONS[kind] || ALARM_ICON;

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    node.append(...children);
    return node;
  }

  function formatElapsed(ms) {
    const total = Math.max(0, Math.floor(ms / 1000));
    const h = Math.floor(total / 3600), m = Math.floor(total / 60) % 60, s = total % 60;
    const mmss = `${String(m).padStart(h ? 2 : 1, "0")}:${String(s).padStart(2, "0")}`;
    return h ? `${h}:${mmss}` : mmss;
  }

  function tick() {
    const now = serverNow();
    for (const node of document.querySelectorAll("time.elapsed[data-since-ms]")) {
      const ms = now - Number(node.dataset.sinceMs);
      node.textContent = formatElapsed(ms);
      node.dateTime = `PT${Math.max(0, Math.floor(ms / 1000))}S`;
    }
  }

  function setConnection(state) {
    const texts = {connecting: ["…", "Connecting…"], live: ["●", "Live"],
      reconnecting: ["⟳", "Reconnecting…"]};
    const [icon, text] = texts[state];
    if (connection.dataset.conn === state) return;
    connection.dataset.conn = state;
    document.body.dataset.conn = state;
    connection.querySelector(".icon").textContent = icon;
    connection.querySelector(".connection-text").textContent = text;
  }

  function renderTile(tile, room, demo) {
    const newest = room.alarms[0];
    tile.dataset.state = room.state;
    tile.querySelector(".status .icon").textContent = newest ? iconFor(newest.kind) : ICONS.quiet;
    let text = newest ? newest.kind_label : "Quiet";
    if (newest && newest.state === "acknowledged") text += " · acknowledged";
    if (room.alarms.length > 1) text += ` (+${room.alarms.length - 1} more)`;
    tile.querySelector(".status-text").textContent = text;
    const since = tile.querySelector(".since");
    const elapsed = since.querySelector("time.elapsed");
    since.hidden = !newest;
    if (newest) elapsed.dataset.sinceMs = newest.received_at_ms;
    else delete elapsed.dataset.sinceMs;
    renderDemo(tile.querySelector(".demo-controls"), demo ? room.devices : []);
  }

  function renderDemo(box, devices) {
    const key = devices.join(" ");
    if (box.dataset.devices === key) return;  // keep buttons (and focus) across renders
    box.dataset.devices = key;
    box.replaceChildren(...devices.map((id) => {
      const feedback = el("span", {class: "demo-feedback", role: "status"});
      const button = (label, hold) => {
        const b = el("button", {type: "button", "aria-label": `${label} ${id}`}, label);
        b.addEventListener("click", () => press(id, hold, b, feedback));
        return b;
      };
      return el("div", {class: "demo-device", role: "group", "aria-label": `Demo device ${id}`},
        el("span", {class: "device-id"}, id), button("Press", 0), button("Hold 2 s", 1), feedback);
    }));
  }

  async function press(deviceId, hold, button, feedback) {
    button.disabled = true;
    feedback.textContent = hold ? "Holding…" : "Pressing…";
    try {
      const response = await fetch(`${root}/demo/press/${encodeURIComponent(deviceId)}`, {
        method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({hold})});
      const body = await response.json().catch(() => ({}));
      feedback.textContent = response.ok ? "Sent" : `Failed: ${body.error || response.status}`;
    } catch (err) {
      feedback.textContent = `Failed: ${err.message}`;
    } finally {
      button.disabled = false;
    }
  }

  function renderActive(active) {
    activeList.replaceChildren(...active.map((alarm) => {
      const received = new Date(alarm.received_at_ms).toLocaleTimeString();
      const item = el("li", {class: "alarm", "data-kind": alarm.kind, "data-alarm": alarm.id},
        el("span", {class: "icon", "aria-hidden": "true"}, iconFor(alarm.kind)),
        el("strong", {class: "kind"}, alarm.kind_label),
        el("span", {class: "where"}, `${alarm.branch_name}, ${alarm.room_name}`),
        el("span", {class: "meta"}, `device ${alarm.device} · ${received} · `,
          el("time", {class: "elapsed", "data-since-ms": alarm.received_at_ms}), " ago"));
      if (alarm.state === "acknowledged") item.append(el("span", {class: "ack"}, "Acknowledged"));
      if (known && !known.has(alarm.id)) item.classList.add("new");
      return item;
    }));
    activeCount.textContent = active.length ? `(${active.length})` : "";
    noActive.textContent = "No active alarms.";
    noActive.hidden = active.length > 0;
    document.title = `${active.length ? `(${active.length}) ⚠ ` : ""}Haven · ${siteName}`;
  }

  function announce(active) {
    const fresh = active.filter((a) => !known || !known.has(a.id));
    if (fresh.length) {
      announcer.textContent = fresh
        .map((a) => `${a.kind_label} at ${a.branch_name}, ${a.room_name}`).join(". ");
    }
    known = new Set(active.map((a) => a.id));
  }

  function render(snapshot) {
    clockOffsetMs = snapshot.generated_at_ms - Date.now();
    let tiles = 0;
    for (const branch of snapshot.branches) {
      const section = document.querySelector(`.branch[data-branch="${CSS.escape(branch.id)}"]`);
      let alarms = 0;
      for (const room of branch.rooms) {
        const tile = section && section.querySelector(`.tile[data-room="${CSS.escape(room.id)}"]`);
        if (!tile) continue;
        tiles += 1;
        alarms += room.alarms.length;
        renderTile(tile, room, snapshot.demo);
      }
      if (section) {
        section.dataset.active = String(alarms > 0);
        section.querySelector(".branch-status").textContent =
          alarms ? `⚠ ${alarms} active alarm${alarms > 1 ? "s" : ""}` : "";
      }
    }
    renderActive(snapshot.active);
    announce(snapshot.active);
    tick();
    if (tiles !== document.querySelectorAll(".tile").length ||
        tiles !== snapshot.branches.reduce((n, b) => n + b.rooms.length, 0)) {
      reloadForNewLayout();
    }
  }

  // The site config changed under this page (the hub restarted with new rooms):
  // reload once for the new layout, not in a loop if something else is wrong.
  function reloadForNewLayout() {
    const last = Number(sessionStorage.getItem("haven-layout-reload") || 0);
    if (Date.now() - last < 60000) return;
    sessionStorage.setItem("haven-layout-reload", String(Date.now()));
    location.reload();
  }

  async function sync() {
    if (inFlight) { again = true; return; }  // one fetch at a time; newest answer wins
    inFlight = true;
    try {
      const response = await fetch(`${root}/api/board`,
        {cache: "no-store", signal: AbortSignal.timeout(FETCH_TIMEOUT_MS)});
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      render(await response.json());
      const open = source && source.readyState === EventSource.OPEN;
      const waiting = connection.dataset.conn === "connecting" ? "connecting" : "reconnecting";
      setConnection(open ? "live" : waiting);
    } catch (err) {
      setConnection("reconnecting");
    } finally {
      inFlight = false;
      if (again) { again = false; sync(); }
    }
  }

  function connect() {
    const stream = new EventSource(`${root}/events`);
    source = stream;
    stream.addEventListener("open", sync);
    for (const type of EVENT_TYPES) stream.addEventListener(type, sync);
    stream.addEventListener("error", () => {
      setConnection("reconnecting");
      if (stream.readyState === EventSource.CLOSED && source === stream) {  // no retry coming
        source = null;
        setTimeout(connect, REOPEN_MS);
      }
    });
  }

  connect();
  sync();
  setInterval(tick, 1000);
  setInterval(sync, RESYNC_MS);
})();
