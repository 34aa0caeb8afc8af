// Haven board: fills the server-rendered layout with live state.
//
// The snapshot from /api/board is the only source of truth. The event stream
// (/events) just says "something changed": on every event, and every time the
// stream (re)opens, the page fetches a fresh snapshot. A slow periodic resync
// covers anything else (an event type this page does not know, a lost packet).
// Every text from the config or the store goes in with textContent, never as HTML.
// Branches and tiles keep the site file's order (a room never jumps as alarms come);
// the active list says what is newest, and acknowledges with one click.
// Needs icons.js (HavenIcons), alerts.js (HavenAlerts) and demo.js (HavenDemo) before it,
// and plans.js (HavenPlans) for the floor plans, when the page has any.
"use strict";

(() => {
  const root = document.body.dataset.root || "";
  const siteName = document.body.dataset.site || "";
  // Named events the page listens for; any other name still arrives as "message".
  const EVENT_TYPES = ["hello", "message", "alarm.raised", "alarm.acknowledged",
    "alarm.resolved", "alarm.cancelled", "alarm.real", "alarm.notified",
    "alarm.nobody_reached", "alarm.reached", "device.status", "device.trouble",
    "device.safe_room_left", "device.checkin", "device.selftest", "branch.switches",
    "arc.trouble", "arc.ok"];
  const RESYNC_MS = 15000;        // periodic snapshot, even when the stream is quiet
  const REOPEN_MS = 3000;         // recreate a stream the browser gave up on
  const FETCH_TIMEOUT_MS = 10000; // a hung snapshot request must not block the next
  const STATE_WORDS = {quiet: "Quiet", offline: "Device offline", trouble: "Device trouble",
    drill: "Drill in progress", unknown: "Connecting…"};
  const Icons = window.HavenIcons;
  const Alerts = window.HavenAlerts;

  const connection = document.getElementById("connection");
  const activeList = document.getElementById("active-list");
  const activeCount = document.getElementById("active-count");
  const noActive = document.getElementById("no-active");

  let source = null;
  let clockOffsetMs = 0;          // hub clock minus this browser's clock
  let known = null;               // ids of the alarms already shown (null: none yet)
  let lastActive = [];
  let inFlight = false;
  let again = false;
  let drillTimer = null;          // a drill ends without an event: look again when it does

  const serverNow = () => Date.now() + clockOffsetMs;
  const alarmUrl = (id) => `${root}/alarms/${encodeURIComponent(id)}`;

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    node.append(...children);
    return node;
  }

  // The tile's child `selector`, made by `make()` and appended the first time.
  function part(tile, selector, make) {
    let node = tile.querySelector(selector);
    if (!node) {
      node = make();
      const demo = tile.querySelector(".demo-controls");
      tile.insertBefore(node, demo && demo.parentNode === tile ? demo : null);
    }
    return node;
  }

  function iconBox(name) {
    const box = el("span", {class: "icon-box"});
    Icons.set(box, name);
    return box;
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
    Alerts.remind(lastActive);
  }

  function setConnection(state) {
    const texts = {connecting: ["unknown", "Connecting…"], live: ["quiet", "Live"],
      reconnecting: ["offline", "Reconnecting…"]};
    const [icon, text] = texts[state];
    if (connection.dataset.conn === state) return;
    connection.dataset.conn = state;
    document.body.dataset.conn = state;
    Icons.set(connection.querySelector(".icon-box"), icon);
    connection.querySelector(".connection-text").textContent = text;
  }

  // The tile leads with room.alarms[0]: the most urgent (the snapshot puts every
  // unacknowledged alarm before an acknowledged one); the others are counted, and any
  // unacknowledged among them is said.
  function statusText(room) {
    const lead = room.alarms[0];
    if (!lead) return STATE_WORDS[room.state] || room.state;
    let text = lead.kind_label;
    if (room.safe_room && lead.kind === "safe_room") {
      text = room.occupied ? `Occupied: ${text}` : `Left the safe room; alarm still open`;
    }
    if (lead.state === "acknowledged") text += " · acknowledged";
    if (lead.nobody_reached) text += " · NOBODY REACHED";
    const others = room.alarms.slice(1);
    const unacked = others.filter((a) => a.state !== "acknowledged").length;
    if (others.length) {
      text += ` (+${others.length} more${unacked ? `, ${unacked} not acknowledged` : ""})`;
    }
    return text;
  }

  function renderTile(tile, room, branch, demo) {
    const lead = room.alarms[0];
    tile.dataset.state = room.state;
    tile.dataset.alarmed = String(Boolean(lead));
    tile.dataset.drill = String(room.drill);
    tile.dataset.occupied = String(room.occupied);
    const status = part(tile, ".status", () => el("p", {class: "status"},
      iconBox("unknown"), el("span", {class: "status-text"})));
    Icons.set(status.querySelector(".icon-box"), lead ? lead.kind : room.state);
    status.querySelector(".status-text").textContent = statusText(room);

    const drill = part(tile, ".drill-tag", () => el("p", {class: "drill-tag"},
      iconBox("drill"), el("span", {class: "drill-text"})));
    drill.hidden = !room.drill;
    drill.querySelector(".drill-text").textContent =
      branch.drill ? `DRILL until ${branch.drill.until_text}` : "";

    const since = part(tile, ".since", () => el("p", {class: "since"}, "for ",
      el("time", {class: "elapsed"})));
    const elapsed = since.querySelector("time.elapsed");
    since.hidden = !lead;
    if (lead) elapsed.dataset.sinceMs = lead.received_at_ms;
    else delete elapsed.dataset.sinceMs;

    const troubles = part(tile, ".troubles", () => el("ul", {class: "troubles"}));
    troubles.hidden = room.troubles.length === 0;
    troubles.replaceChildren(...room.troubles.map((t) => el("li",
      {"data-offline": String(t.offline)}, iconBox(t.offline ? "offline" : "trouble"),
      el("span", {}, `${t.device}: ${t.words}`))));

    const open = part(tile, ".open", () => el("p", {class: "open"},
      el("a", {class: "open-alarm"}, "Open alarm")));
    open.hidden = !lead;
    const link = open.querySelector("a");
    if (lead) {
      link.href = alarmUrl(lead.id);
      link.setAttribute("aria-label", `Open alarm: ${lead.kind_label}, ${room.name}`);
    } else {
      link.removeAttribute("href");
    }
    window.HavenDemo.render(part(tile, ".demo-controls",
      () => el("div", {class: "demo-controls"})), demo ? room.devices : [],
      demo ? room.doors || [] : []);
  }

  // One click acknowledges: the same POST as the alarm page's button, with the CSRF header
  // (the answer is JSON); the stream then brings the change to every board.
  // The button is marked busy with aria-disabled, not disabled: a disabled button drops
  // the keyboard focus, and the focus must stay in the list (renderActive) for the next key.
  async function acknowledge(alarm, button, feedback) {
    if (button.getAttribute("aria-disabled") === "true") return;  // one POST at a time
    button.setAttribute("aria-disabled", "true");
    feedback.textContent = "Acknowledging…";
    try {
      const token = document.querySelector('meta[name="csrf-token"]');
      const response = await fetch(`${alarmUrl(alarm.id)}/acknowledge`, {method: "POST",
        headers: {"Accept": "application/json",
          ...(token ? {"X-CSRF-Token": token.content} : {})}});
      const body = await response.json().catch(() => ({}));
      feedback.textContent = body.message || (response.ok ? "Acknowledged" :
        `Not done (HTTP ${response.status}): reload the page`);
      sync();
    } catch (err) {
      feedback.textContent = "Not done: the dashboard did not answer; try again";
    } finally {
      button.removeAttribute("aria-disabled");
    }
  }

  // Items are kept while their alarm reads the same, so a focused button stays focused;
  // an item that changes (acknowledged, here or elsewhere) is made anew, and the keyboard
  // focus moves into the new one instead of falling back to the top of the page.
  function renderActive(active) {
    const focused = activeList.contains(document.activeElement) ? document.activeElement : null;
    const old = new Map([...activeList.children].map((li) => [li.dataset.alarm, li]));
    const items = active.map((alarm) => {
      const sig = JSON.stringify([alarm.state, alarm.acknowledged_by, alarm.nobody_reached,
        alarm.drill, alarm.kind_label, alarm.branch_name, alarm.room_name]);
      let item = old.get(alarm.id);
      if (!item || item.dataset.sig !== sig) item = activeItem(alarm, sig, item);
      item.classList.toggle("new", Boolean(known && !known.has(alarm.id)));
      return item;
    });
    if (items.length !== activeList.children.length ||
        items.some((item, i) => activeList.children[i] !== item)) {
      activeList.replaceChildren(...items);
    }
    if (focused && !focused.isConnected) keepFocus(focused, items);
    activeCount.textContent = active.length ? `(${active.length})` : "";
    noActive.textContent = "No active alarms.";
    noActive.hidden = active.length > 0;
    document.title = `${active.length ? `(${active.length}) ⚠ ` : ""}Haven · ${siteName}`;
  }

  // The focused control's item was replaced: focus the same control in the new item
  // (an Acknowledge button that is still there), else its alarm link, else the list's
  // first link (the alarm was closed); the link's name says the alarm's new state.
  function keepFocus(focused, items) {
    const was = focused.closest("li[data-alarm]");
    const item = was && items.find((li) => li.dataset.alarm === was.dataset.alarm);
    const same = item && focused.classList.length &&
      item.querySelector(`.${CSS.escape(focused.classList[0])}`);
    const target = same || (item || items[0] || activeList).querySelector(".alarm-link");
    if (target) target.focus();
  }

  function activeItem(alarm, sig, previous) {
    const item = el("li", {class: "alarm", "data-kind": alarm.kind, "data-alarm": alarm.id,
      "data-state": alarm.state, "data-sig": sig},
      el("a", {class: "alarm-link", href: alarmUrl(alarm.id),
        "aria-label": `${alarm.kind_label}${alarm.drill ? " (DRILL)" : ""} at ` +
          `${alarm.branch_name}, ${alarm.room_name}: ` + (alarm.state === "acknowledged"
          ? `acknowledged${alarm.acknowledged_by ? ` by ${alarm.acknowledged_by}` : ""}`
          : "not acknowledged")},
        iconBox(alarm.kind), el("strong", {class: "kind"}, alarm.kind_label)),
      el("span", {class: "where"}, `${alarm.branch_name}, ${alarm.room_name}`),
      el("span", {class: "meta"}, `device ${alarm.device} · ${alarm.received_text} · `,
        el("time", {class: "elapsed", "data-since-ms": alarm.received_at_ms}), " ago"));
    if (alarm.drill) {  // practice until someone says it is real (hub.core.drill)
      item.append(el("span", {class: "drill-mark"}, iconBox("drill"), "DRILL"),
        el("a", {class: "real-link", href: `${alarmUrl(alarm.id)}#real-heading`},
          "This is real?"));
    }
    item.append(alarm.state === "acknowledged"
      ? el("span", {class: "ack"}, `Acknowledged${alarm.acknowledged_by
        ? ` by ${alarm.acknowledged_by}` : ""}`)
      : el("span", {class: "unack"}, "Not acknowledged"));
    if (alarm.nobody_reached) {
      item.append(el("span", {class: "nobody"}, "Nobody reached: call for help"));
    }
    if (alarm.state === "raised") {
      const feedback = el("span", {class: "ack-feedback", role: "status"});
      const button = el("button", {type: "button", class: "ack-button",
        "aria-label": `Acknowledge ${alarm.kind_label}, ${alarm.branch_name}, ` +
                      `${alarm.room_name}`}, "Acknowledge");
      button.addEventListener("click", () => acknowledge(alarm, button, feedback));
      item.append(button, feedback);
    } else if (previous) {  // acknowledged here or elsewhere: keep what was said
      const said = previous.querySelector(".ack-feedback");
      if (said && said.textContent.startsWith("Not done")) item.append(said);
    }
    return item;
  }

  function renderBranch(section, branch, alarms) {
    section.dataset.active = String(alarms > 0);
    section.dataset.drill = String(branch.drill !== null);
    const status = section.querySelector(".branch-status");
    if (!status) return;
    const words = [];
    if (alarms) words.push(`${alarms} active alarm${alarms > 1 ? "s" : ""}`);
    if (branch.drill) words.push(`drill until ${branch.drill.until_text}`);
    if (branch.lone_worker === true) words.push("lone worker");
    status.textContent = words.length ? `— ${words.join(" · ")}` : "";
  }

  function renderArc(troubles) {  // the monitoring centre's receivers (hub.arc)
    const line = document.getElementById("arc-trouble");
    if (!line) return;
    line.hidden = !(troubles && troubles.length);
    line.textContent = (troubles || []).map((t) =>
      `${t.words} since ${new Date(t.since_ms).toLocaleTimeString()}`).join(" · ");
  }

  function render(snapshot) {
    clockOffsetMs = snapshot.generated_at_ms - Date.now();
    renderArc(snapshot.arc_troubles);
    let tiles = 0;
    for (const branch of snapshot.branches) {
      const section = document.querySelector(`.branch[data-branch="${CSS.escape(branch.id)}"]`);
      let alarms = 0;
      for (const room of branch.rooms) {
        const tile = section && section.querySelector(`.tile[data-room="${CSS.escape(room.id)}"]`);
        if (!tile) continue;
        tiles += 1;
        alarms += room.alarms.length;
        renderTile(tile, room, branch, snapshot.demo);
      }
      if (section) renderBranch(section, branch, alarms);
    }
    if (window.HavenPlans) window.HavenPlans.render(snapshot);
    renderActive(snapshot.active);
    const fresh = known ? snapshot.active.filter((a) => !known.has(a.id)) : snapshot.active;
    known = new Set(snapshot.active.map((a) => a.id));
    lastActive = snapshot.active;
    Alerts.newAlarms(fresh, root);
    scheduleDrillEnd(snapshot.branches);
    tick();
    if (tiles !== document.querySelectorAll(".tile").length ||
        tiles !== snapshot.branches.reduce((n, b) => n + b.rooms.length, 0)) {
      reloadForNewLayout();
    }
  }

  function scheduleDrillEnd(branches) {
    const ends = branches.filter((b) => b.drill).map((b) => b.drill.until_ms);
    clearTimeout(drillTimer);
    if (ends.length) {
      const wait = Math.min(...ends) - serverNow() + 500;
      drillTimer = setTimeout(sync, Math.min(Math.max(wait, 0), 2 ** 31 - 1));
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
      if (response.redirected || response.status === 401) {  // the session ended: log in again
        location.assign(`${root}/login?next=${encodeURIComponent(location.pathname)}`);
        return;
      }
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

  for (const box of document.querySelectorAll(".icon-box[data-icon]")) {
    Icons.set(box, box.dataset.icon);
  }
  connect();
  sync();
  setInterval(tick, 1000);
  setInterval(sync, RESYNC_MS);
})();
