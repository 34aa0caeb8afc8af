// Haven board alerts: a sound, a browser notification and a spoken announcement
// for every new alarm. Loaded before board.js, which calls HavenAlerts.newAlarms().
//
// Browsers block sound and notifications until the operator allows them, so the
// page asks once, with buttons (#sound-allow, #notify-allow). Sound is made
// with WebAudio (no audio file), repeats every REPEAT_MS while an alarm is
// unacknowledged, and can be muted with #sound-toggle; the choice is kept in
// localStorage. Nothing here builds HTML from data: text only (textContent).
"use strict";

window.HavenAlerts = (() => {
  const REPEAT_MS = 15000;                   // reminder while an alarm is unacknowledged
  const QUIET_KINDS = new Set(["test"]);     // recorded, announced politely, no sound
  const POLITE_KINDS = new Set(["assist", "test"]);  // the rest interrupt a screen reader
  const STORE_KEY = "haven-sound";           // "on" | "muted"

  const $ = (id) => document.getElementById(id);
  const urgentRegion = $("announcer");
  const politeRegion = $("announcer-polite");
  const soundAllow = $("sound-allow");
  const soundToggle = $("sound-toggle");
  const soundNote = $("sound-note");
  const notifyAllow = $("notify-allow");
  const notifyNote = $("notify-note");

  let ctx = null;               // AudioContext, made on the first click (a user gesture)
  let lastRing = 0;

  const wanted = () => localStorage.getItem(STORE_KEY);
  const soundOn = () => wanted() === "on" && ctx !== null && ctx.state === "running";

  // --- sound ------------------------------------------------------------------

  function unlock() {
    if (wanted() === "muted") return;
    try {
      ctx = ctx || new AudioContext();
      ctx.resume().then(showSound, showSound);
    } catch (err) {
      soundNote.textContent = `This browser cannot play sound (${err.message}).`;
    }
  }

  function tone(freq, start, length) {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = "square";
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0.0001, start);
    gain.gain.exponentialRampToValueAtTime(0.25, start + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + length);
    osc.connect(gain).connect(ctx.destination);
    osc.start(start);
    osc.stop(start + length + 0.02);
  }

  // Urgent: three rising two-tone pairs; otherwise one soft double chime.
  function ring(urgent) {
    if (!soundOn()) return;
    const t = ctx.currentTime + 0.05;
    if (urgent) {
      for (let i = 0; i < 3; i += 1) {
        tone(880, t + i * 0.5, 0.22);
        tone(1320, t + i * 0.5 + 0.25, 0.22);
      }
    } else {
      tone(660, t, 0.18);
      tone(880, t + 0.22, 0.25);
    }
    lastRing = Date.now();
  }

  // One sound button at a time: "Allow alarm sound" while the browser holds sound back
  // (never asked, or asked before a reload and not yet unlocked by a click), else the
  // toggle ("Sound on" / "Sound muted").
  function showSound() {
    const choice = wanted();
    const running = ctx !== null && ctx.state === "running";
    const toggle = running || choice === "muted";
    soundAllow.hidden = toggle;
    soundToggle.hidden = !toggle;
    const on = choice === "on";
    soundToggle.setAttribute("aria-pressed", String(on));
    soundToggle.querySelector(".label").textContent = on ? "Sound on" : "Sound muted";
    soundToggle.dataset.sound = on ? "on" : "muted";
    soundNote.textContent = on && !running
      ? "The browser holds sound back until you click: press “Allow alarm sound”." : "";
  }

  soundAllow.addEventListener("click", () => {
    localStorage.setItem(STORE_KEY, "on");
    unlock();
    if (ctx) ctx.resume().then(() => { showSound(); ring(false); });
  });
  soundToggle.addEventListener("click", () => {
    localStorage.setItem(STORE_KEY, wanted() === "on" ? "muted" : "on");
    if (wanted() === "on") unlock();
    showSound();
  });
  // Any click on the page is a gesture that lets a wanted sound start.
  document.addEventListener("pointerdown", () => { if (wanted() === "on") unlock(); });

  // --- notifications ------------------------------------------------------------

  function showNotify() {
    if (!("Notification" in window)) {
      notifyAllow.hidden = true;
      notifyNote.textContent = "This browser cannot show notifications.";
      return;
    }
    notifyAllow.hidden = Notification.permission !== "default";
    notifyNote.textContent = Notification.permission === "denied"
      ? "Notifications are blocked for this site in the browser's settings." : "";
  }

  notifyAllow.addEventListener("click", async () => {
    try { await Notification.requestPermission(); } finally { showNotify(); }
  });

  function notify(alarm, root) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    try {
      const note = new Notification(`${alarm.drill ? "DRILL: " : ""}${alarm.kind_label}`, {
        body: `${alarm.branch_name}, ${alarm.room_name} (device ${alarm.device})`,
        tag: alarm.id, requireInteraction: !POLITE_KINDS.has(alarm.kind)});
      note.addEventListener("click", () => {
        window.focus();
        location.assign(`${root}/alarms/${encodeURIComponent(alarm.id)}`);
      });
    } catch (err) {  // e.g. Android Chrome allows them only from a service worker
      notifyNote.textContent = `Could not show a notification: ${err.message}`;
    }
  }

  // --- the board's calls -----------------------------------------------------------

  // New alarms (never seen by this page): announce, notify, ring.
  function newAlarms(fresh, root) {
    if (!fresh.length) return;
    const say = (a) => `${a.drill ? "Drill: " : ""}${a.kind_label} at ${a.branch_name}, ` +
      `${a.room_name}`;
    const urgent = fresh.filter((a) => !POLITE_KINDS.has(a.kind));
    const polite = fresh.filter((a) => POLITE_KINDS.has(a.kind));
    if (urgent.length) urgentRegion.textContent = urgent.map(say).join(". ");
    if (polite.length) politeRegion.textContent = polite.map(say).join(". ");
    fresh.forEach((a) => notify(a, root));
    const loud = fresh.filter((a) => !QUIET_KINDS.has(a.kind));
    if (loud.length) ring(loud.some((a) => !POLITE_KINDS.has(a.kind)));
  }

  // Called every second: reminds while an alarm waits for a person to acknowledge.
  function remind(active) {
    const waiting = active.filter((a) => a.state === "raised" && !QUIET_KINDS.has(a.kind));
    if (waiting.length && Date.now() - lastRing >= REPEAT_MS) {
      ring(waiting.some((a) => !POLITE_KINDS.has(a.kind)));
    }
  }

  if (wanted() === "on") unlock();  // may stay suspended until a click; showSound says so
  showSound();
  showNotify();
  return {newAlarms, remind};
})();
