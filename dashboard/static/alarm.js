// Haven alarm page: follows the alarm live, like the board.
//
// The server-rendered page is the only source of truth: on each store event about this
// alarm (and whenever the event stream (re)opens, and every RESYNC_MS), the page fetches
// itself again and swaps in the facts and the timeline. The action forms are left alone
// while the alarm can still be acted on (a half-typed note survives); the Acknowledge
// section goes when someone acknowledges, the actions go when it is resolved or
// cancelled, and the live line says who did it.
"use strict";

(() => {
  const root = document.body.dataset.root || "";
  const main = document.getElementById("main");
  const alarmId = main.dataset.alarm;
  const live = document.getElementById("alarm-live");
  const RESYNC_MS = 15000;
  const FETCH_TIMEOUT_MS = 10000;
  const TYPES = ["alarm.acknowledged", "alarm.resolved", "alarm.cancelled", "alarm.real",
    "alarm.notified", "alarm.nobody_reached", "alarm.reached", "message"];
  // Other alarms change the floor plan (a safe room occupied or left): look again.
  const PLAN_TYPES = ["alarm.raised", "device.safe_room_left"];
  let inFlight = false;
  let again = false;

  function swap(fresh, id) {
    const mine = document.getElementById(id);
    const theirs = fresh.getElementById(id);
    if (mine && theirs) mine.replaceWith(document.importNode(theirs, true));
    else if (mine && !theirs) mine.remove();
  }

  // What changed, in words, from the facts of the fetched page: "Acknowledged by ana at ...".
  function said(fresh, state) {
    for (const dt of fresh.querySelectorAll("#alarm-facts dt")) {
      const word = dt.textContent.trim().toLowerCase();
      if (word === state) return `${dt.textContent.trim()} ${dt.nextElementSibling.textContent.trim()}`;
    }
    return `Now ${state}`;
  }

  async function refresh() {
    if (inFlight) { again = true; return; }
    inFlight = true;
    try {
      const response = await fetch(location.pathname, {cache: "no-store",
        signal: AbortSignal.timeout(FETCH_TIMEOUT_MS)});
      if (!response.ok || response.redirected) return;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      const freshMain = fresh.getElementById("main");
      if (!freshMain) return;
      const before = main.dataset.state, state = freshMain.dataset.state;
      swap(fresh, "alarm-facts");
      swap(fresh, "alarm-timeline");
      swap(fresh, "alarm-plan");
      if (state !== before) {
        main.dataset.state = state;
        if (state !== "raised") swap(fresh, "ack-section");
        if (state === "resolved" || state === "cancelled") swap(fresh, "alarm-actions");
        live.textContent = said(fresh, state);
      }
    } catch (err) {
      // the next event, the stream reopening or the resync tries again
    } finally {
      inFlight = false;
      if (again) { again = false; refresh(); }
    }
  }

  function about(event) {
    try {
      const data = JSON.parse(event.data);
      return data.alarm_id === alarmId || (data.alarm && data.alarm.id === alarmId);
    } catch (err) {
      return false;
    }
  }

  const stream = new EventSource(`${root}/events`);
  stream.addEventListener("open", refresh);
  for (const type of TYPES) {
    stream.addEventListener(type, (event) => { if (about(event)) refresh(); });
  }
  for (const type of PLAN_TYPES) {
    stream.addEventListener(type, () => { if (document.getElementById("alarm-plan")) refresh(); });
  }
  setInterval(refresh, RESYNC_MS);
})();
