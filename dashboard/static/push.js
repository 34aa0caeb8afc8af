// Haven: subscribe this browser to Web Push for a contact (dashboard/push.py).
// Registers the service worker (/push/public/sw.js, scope "/"), asks for notification
// permission, subscribes with the site's VAPID public key and posts the subscription.
"use strict";

(() => {
  const main = document.getElementById("main");
  const form = document.getElementById("push-subscribe");
  const status = document.getElementById("push-status");
  if (!form || !main.dataset.vapid) return;
  const say = (text) => { status.textContent = text; };

  function keyBytes(b64url) {
    const b64 = b64url.replace(/-/g, "+").replace(/_/g, "/");
    const raw = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
    return Uint8Array.from(raw, (c) => c.charCodeAt(0));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!("serviceWorker" in navigator) || !("PushManager" in window)) {
      say("This browser cannot receive pushes. On an iPhone, add Haven to the Home Screen " +
          "first and open it from there.");
      return;
    }
    try {
      const registration = await navigator.serviceWorker.register(main.dataset.sw, {scope: "/"});
      if ((await Notification.requestPermission()) !== "granted") {
        say("Notifications are blocked for this site: allow them in the browser's settings.");
        return;
      }
      await navigator.serviceWorker.ready;
      const subscription = await registration.pushManager.subscribe({
        userVisibleOnly: true, applicationServerKey: keyBytes(main.dataset.vapid)});
      const token = document.querySelector('meta[name="csrf-token"]').content;
      const response = await fetch(main.dataset.subscribe, {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-CSRF-Token": token},
        body: JSON.stringify({contact: form.elements.contact.value,
                              label: form.elements.label.value,
                              subscription: subscription.toJSON()})});
      const answer = await response.json();
      if (!response.ok) { say("Not subscribed: " + answer.error); return; }
      say("This browser now gets alarms for " + answer.contact + ".");
      window.location.reload();
    } catch (error) {
      say("Not subscribed: " + error.message);
    }
  });
})();
