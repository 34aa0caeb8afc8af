// Haven: place rooms on a floor plan (dashboard/plans.py, admin page). Clicks on the plan
// become corners in the plan's own units (the SVG's viewBox); the snippet below is the
// TOML to copy into each room's [[branch.room]] table. Nothing is sent to the server.
"use strict";

(() => {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const main = document.getElementById("main");
  const floorId = main.dataset.floor;
  const svg = document.querySelector(".plan-svg");
  const select = document.getElementById("place-room");
  const where = document.getElementById("place-where");
  const snippet = document.getElementById("place-snippet");
  const [minX, minY, width, height] = svg.getAttribute("viewBox").split(/\s+/).map(Number);
  const size = Math.max(width, height);
  const rooms = new Map();      // room id -> {at: bool, points: [[x, y], ...]}
  let dragging = null;          // index of the corner being dragged

  // The placements the site file has now, from the drawn shapes.
  for (const shape of svg.querySelectorAll(".plan-room")) {
    const poly = shape.querySelector("polygon");
    const dot = shape.querySelector("circle");
    const points = poly
      ? poly.getAttribute("points").trim().split(/\s+/).map((p) => p.split(",").map(Number))
      : [[Number(dot.getAttribute("cx")), Number(dot.getAttribute("cy"))]];
    rooms.set(shape.dataset.room, {at: !poly, points});
  }
  const handles = document.createElementNS(SVG_NS, "g");
  handles.setAttribute("class", "place-handles");
  svg.append(handles);

  const current = () => {
    if (!rooms.has(select.value)) rooms.set(select.value, {at: mode() === "at", points: []});
    return rooms.get(select.value);
  };
  const mode = () => document.querySelector('input[name="place-mode"]:checked').value;

  function planPoint(event) {  // the pointer in the plan's units, whole numbers, on the plan
    const point = new DOMPoint(event.clientX, event.clientY).matrixTransform(
      svg.getScreenCTM().inverse());
    const clamp = (v, low, span) => Math.min(low + span, Math.max(low, Math.round(v)));
    return [clamp(point.x, minX, width), clamp(point.y, minY, height)];
  }

  function shapeOf(roomId) {
    let group = svg.querySelector(`.plan-room[data-room="${CSS.escape(roomId)}"]`);
    if (!group) {
      group = document.createElementNS(SVG_NS, "g");
      group.setAttribute("class", "plan-room");
      group.dataset.room = roomId;
      svg.insertBefore(group, handles);
    }
    return group;
  }

  function draw() {
    for (const [roomId, room] of rooms) {
      const group = shapeOf(roomId);
      group.dataset.state = roomId === select.value ? "placing" : "quiet";
      group.dataset.focus = String(roomId === select.value);
      group.replaceChildren();
      if (room.at && room.points.length) {
        const dot = document.createElementNS(SVG_NS, "circle");
        dot.setAttribute("class", "plan-shape");
        dot.setAttribute("cx", room.points[0][0]);
        dot.setAttribute("cy", room.points[0][1]);
        dot.setAttribute("r", size * 0.02);
        group.append(dot);
      } else if (room.points.length) {
        const poly = document.createElementNS(SVG_NS, "polygon");
        poly.setAttribute("class", "plan-shape");
        poly.setAttribute("points", room.points.map((p) => p.join(",")).join(" "));
        group.append(poly);
      }
    }
    handles.replaceChildren(...current().points.map(([x, y], i) => {
      const handle = document.createElementNS(SVG_NS, "circle");
      handle.setAttribute("class", "place-handle");
      handle.setAttribute("cx", x);
      handle.setAttribute("cy", y);
      handle.setAttribute("r", size * 0.012);
      handle.dataset.index = String(i);
      return handle;
    }));
    snippet.value = toml();
  }

  function toml() {
    const lines = [];
    for (const option of select.options) {
      const room = rooms.get(option.value);
      if (!room || !room.points.length) continue;
      const enough = room.at || room.points.length >= 3;
      lines.push(`# ${option.dataset.name} (id = "${option.value}")` +
        (enough ? "" : `: ${3 - room.points.length} more corner(s) needed`));
      lines.push(`floor = "${floorId}"`);
      lines.push(room.at ? `at = [${room.points[0].join(", ")}]`
        : `area = [${room.points.map((p) => `[${p.join(", ")}]`).join(", ")}]`);
      lines.push("");
    }
    return lines.join("\n");
  }

  svg.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    const room = current();
    if (event.target.classList.contains("place-handle")) {
      dragging = Number(event.target.dataset.index);
      svg.setPointerCapture(event.pointerId);
      return;
    }
    const point = planPoint(event);
    if (mode() === "at") {
      room.at = true;
      room.points = [point];
    } else {
      if (room.at) room.points = [];
      room.at = false;
      room.points.push(point);
    }
    where.textContent = `${select.selectedOptions[0].dataset.name}: ${point.join(", ")}`;
    draw();
  });
  svg.addEventListener("pointermove", (event) => {
    if (dragging === null) return;
    current().points[dragging] = planPoint(event);
    draw();
  });
  const drop = () => { dragging = null; };
  svg.addEventListener("pointerup", drop);
  svg.addEventListener("pointercancel", drop);

  select.addEventListener("change", () => {
    const room = rooms.get(select.value);
    if (room) document.querySelector(`input[name="place-mode"][value="${room.at ? "at" : "area"}"]`).checked = true;
    draw();
  });
  document.getElementById("place-undo").addEventListener("click", () => {
    current().points.pop();
    draw();
  });
  document.getElementById("place-clear").addEventListener("click", () => {
    current().points = [];
    draw();
  });
  document.getElementById("place-copy").addEventListener("click", async () => {
    const said = document.getElementById("place-copied");
    try {
      await navigator.clipboard.writeText(snippet.value);
      said.textContent = "Copied.";
    } catch (err) {
      snippet.select();
      said.textContent = "Select the text and copy it (Ctrl+C).";
    }
  });
  draw();
})();
