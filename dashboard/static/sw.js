// Haven's service worker: shows each alarm push (hub/push.py) as a notification and
// handles its "I'm responding" action. Served from /push/public/sw.js with scope "/".
//
// A push's JSON: title, body, alarm_id, url (the alarm page), respond_url and token (a
// signed, single-use "I'm responding" token). Tapping the notification opens the alarm
// page; "I'm responding" posts the token (acknowledging the alarm as the contact the
// subscription belongs to), then opens the alarm page too.
"use strict";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

function alarmNotification(data) {
  const title = data.title || "HAVEN alarm";
  return [title, {
    body: data.body || "",
    tag: data.alarm_id || "haven",
    renotify: true,
    requireInteraction: true,
    vibrate: [300, 100, 300],
    icon: "/static/icon.svg",
    data: {url: data.url || "/", respondUrl: data.respond_url || "", token: data.token || ""},
    actions: data.token ? [{action: "respond", title: "I'm responding"}] : [],
  }];
}

function showPush(data) {
  const [title, options] = alarmNotification(data);
  return self.registration.showNotification(title, options);
}

self.addEventListener("push", (event) => {
  let data;
  try {
    data = event.data ? event.data.json() : {};
  } catch (error) {
    data = {body: event.data ? event.data.text() : ""};
  }
  event.waitUntil(showPush(data));
});

async function openAlarm(url) {
  const target = new URL(url, self.registration.scope).href;
  const open = await self.clients.matchAll({type: "window", includeUncontrolled: true});
  for (const client of open) {
    if (client.url === target && "focus" in client) return client.focus();
  }
  return self.clients.openWindow(target);
}

// What a click does; returns what happened, for the notification's caller (and tests).
async function handleClick(notification, action) {
  const data = notification.data || {};
  notification.close();
  const result = {url: data.url || "/", respond: action === "respond", answer: null};
  if (result.respond && data.token && data.respondUrl) {
    try {
      const response = await fetch(new URL(data.respondUrl, self.registration.scope).href, {
        method: "POST", credentials: "omit",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({token: data.token})});
      result.answer = {status: response.status, body: await response.json()};
    } catch (error) {
      result.answer = {status: 0, body: {error: String(error)}};
    }
  }
  try {
    await openAlarm(result.url);
    result.opened = true;
  } catch (error) {
    result.opened = false;  // a window opens only from a real tap
  }
  return result;
}

self.addEventListener("notificationclick", (event) => {
  event.waitUntil(handleClick(event.notification, event.action));
});
