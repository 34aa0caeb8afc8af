// Haven board: the floor plans (dashboard/plans.py) follow the board's snapshot.
// board.js calls HavenPlans.render(snapshot) with every snapshot it renders: each placed
// room takes its tile's state, a lit room says its alarm on the plan, and the caption
// says in words what is lit. Texts go in with textContent, never as markup.
"use strict";

window.HavenPlans = (() => {
  function render(snapshot) {
    for (const branch of snapshot.branches) {
      const rooms = new Map(branch.rooms.map((room) => [room.id, room]));
      const sel = `.plan[data-branch="${CSS.escape(branch.id)}"]`;
      for (const figure of document.querySelectorAll(sel)) {
        const lit = [];
        for (const shape of figure.querySelectorAll(".plan-room")) {
          const room = rooms.get(shape.dataset.room);
          if (!room) continue;
          const lead = room.alarms[0];
          shape.dataset.state = room.state;
          shape.dataset.occupied = String(room.occupied);
          shape.querySelector(".plan-label").textContent =
            room.occupied ? "Occupied" : (lead ? lead.kind_label : "");
          if (lead && !(room.occupied && lead.kind === "safe_room")) {  // said once, below
            lit.push(`${lead.kind_label}: ${room.name}`);
          }
          if (room.occupied) lit.push(`Staff sheltering in ${room.name}`);
        }
        figure.querySelector(".plan-lit").textContent =
          lit.length ? lit.join(" · ") : "Nothing active on this floor.";
      }
    }
  }
  return {render};
})();
