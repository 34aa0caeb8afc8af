// Haven board, demo only: "Press" / "Hold 2 s" buttons for a room's simulated devices.
// The board shows them when its snapshot says ``demo`` (haven demo); each click asks the
// dashboard (POST /demo/press/<device>, with the session's CSRF token) to press the button.
"use strict";

window.HavenDemo = (() => {
  const root = document.body.dataset.root || "";

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    node.append(...children);
    return node;
  }

  function render(box, devices) {
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
      const token = document.querySelector('meta[name="csrf-token"]');
      const response = await fetch(`${root}/demo/press/${encodeURIComponent(deviceId)}`, {
        method: "POST", headers: {"Content-Type": "application/json",
          ...(token ? {"X-CSRF-Token": token.content} : {})},
        body: JSON.stringify({hold})});
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
