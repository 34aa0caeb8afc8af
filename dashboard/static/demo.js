// Haven board, demo only: "Press" / "Hold 2 s" buttons for a room's simulated buttons,
// "Close door" / "Open door" for its safe-room door contacts. The board shows them when
// its snapshot says ``demo`` (haven demo); each click asks the dashboard
// (POST /demo/press/<device>, with the session's CSRF token) to move the simulated input.
"use strict";

window.HavenDemo = (() => {
  const root = document.body.dataset.root || "";

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    node.append(...children);
    return node;
  }

  // ``doors``: the ids among ``devices`` that are door contacts (no press, no hold).
  function render(box, devices, doors = []) {
    const key = `${devices.join(" ")}|${doors.join(" ")}`;
    if (box.dataset.devices === key) return;  // keep buttons (and focus) across renders
    box.dataset.devices = key;
    box.replaceChildren(...devices.map((id) => {
      const feedback = el("span", {class: "demo-feedback", role: "status"});
      const button = (label, what, doing) => {
        const b = el("button", {type: "button", "aria-label": `${label} ${id}`}, label);
        b.addEventListener("click", () => press(id, what, doing, b, feedback));
        return b;
      };
      const controls = doors.includes(id)
        ? [button("Close door", {door: "close"}, "Closing…"),
          button("Open door", {door: "open"}, "Opening…")]
        : [button("Press", {hold: 0}, "Pressing…"), button("Hold 2 s", {hold: 1}, "Holding…")];
      return el("div", {class: "demo-device", role: "group", "aria-label": `Demo device ${id}`},
        el("span", {class: "device-id"}, id), ...controls, feedback);
    }));
  }

  async function press(deviceId, what, doing, button, feedback) {
    button.disabled = true;
    feedback.textContent = doing;
    try {
      const token = document.querySelector('meta[name="csrf-token"]');
      const response = await fetch(`${root}/demo/press/${encodeURIComponent(deviceId)}`, {
        method: "POST", headers: {"Content-Type": "application/json",
          ...(token ? {"X-CSRF-Token": token.content} : {})},
        body: JSON.stringify(what)});
      const body = await response.json().catch(() => ({}));
      feedback.textContent = response.ok ? "Sent" : `Failed: ${body.error || response.status}`;
    } catch (err) {
      feedback.textContent = `Failed: ${err.message}`;
    } finally {
      button.disabled = false;
    }
  }

  return {render};
})();
