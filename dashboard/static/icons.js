// Haven board icons: inline SVG (no font, no network), one per tile state.
// HavenIcons.make(name) returns a fresh <svg aria-hidden="true"> element; the
// words beside every icon carry the meaning, the icon only repeats it.
"use strict";

window.HavenIcons = (() => {
  const PATHS = {
    // check in a circle
    quiet: "M12 2a10 10 0 1 0 0 20 10 10 0 1 0 0-20zm-1.5 14.5-4-4 1.4-1.4 2.6 2.6 5.6-5.6 " +
      "1.4 1.4z",
    // warning triangle
    emergency: "M12 2 1 21h22L12 2zm-1 7h2v6h-2zm0 8h2v2h-2z",
    // plus in a circle: help wanted
    assist: "M12 2a10 10 0 1 0 0 20 10 10 0 1 0 0-20zm-1 5h2v4h4v2h-4v4h-2v-4H7v-2h4z",
    // shield: the safe room
    safe_room: "M12 1 3 5v6c0 5.5 3.8 10.7 9 12 5.2-1.3 9-6.5 9-12V5l-9-4zm-1 6h2v6h-2zm0 " +
      "8h2v2h-2z",
    // circle struck through: a device that cannot be heard
    offline: "M12 2a10 10 0 1 0 0 20 10 10 0 1 0 0-20zm0 2c1.8 0 3.5.6 4.9 1.7L5.7 16.9A8 8 " +
      "0 0 1 12 4zm0 16c-1.8 0-3.5-.6-4.9-1.7L18.3 7.1A8 8 0 0 1 12 20z",
    // exclamation in a circle: a device that needs looking at
    trouble: "M12 2a10 10 0 1 0 0 20 10 10 0 1 0 0-20zm-1 5h2v7h-2zm0 9h2v2h-2z",
    // a flag on a pole: a drill
    drill: "M5 2h2v20H5zM8 3h11l-3 4.5 3 4.5H8z",
    // a clock
    missed_checkin: "M12 2a10 10 0 1 0 0 20 10 10 0 1 0 0-20zm0 2a8 8 0 1 1 0 16 8 8 0 0 1 " +
      "0-16zm-1 3v6.6l5 3 1-1.7-4-2.4V7z",
    // a heart
    welfare: "M12 21l-1.5-1.3C5.4 15.1 2 12.1 2 8.4 2 5.4 4.4 3 7.4 3c1.7 0 3.4.8 4.6 2.1C13.2 " +
      "3.8 14.9 3 16.6 3 19.6 3 22 5.4 22 8.4c0 3.7-3.4 6.7-8.5 11.3z",
    // "i" in a circle: a test press
    test: "M12 2a10 10 0 1 0 0 20 10 10 0 1 0 0-20zm-1 5h2v2h-2zm0 4h2v6h-2z",
    // hourglass: connecting
    unknown: "M6 2h12v5l-4 5 4 5v5H6v-5l4-5-4-5zm2 2v2.3l4 5 4-5V4z",
    // a speaker
    sound: "M3 9v6h4l5 5V4L7 9H3zm13.5 3A4.5 4.5 0 0 0 14 8v8a4.5 4.5 0 0 0 2.5-4z",
    // a bell
    bell: "M12 22a2 2 0 0 0 2-2h-4a2 2 0 0 0 2 2zm6-6V11c0-3.1-1.6-5.6-4.5-6.3V4a1.5 1.5 0 0 " +
      "0-3 0v.7C7.6 5.4 6 7.9 6 11v5l-2 2v1h16v-1z",
  };
  const SVG = "http://www.w3.org/2000/svg";

  function make(name) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    svg.setAttribute("class", "icon");
    svg.dataset.icon = PATHS[name] ? name : "emergency";  // an unknown kind looks urgent
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", PATHS[svg.dataset.icon]);
    path.setAttribute("fill", "currentColor");
    path.setAttribute("fill-rule", "evenodd");
    svg.append(path);
    return svg;
  }

  // Put icon `name` into `box` (an element), unless it already shows it.
  function set(box, name) {
    const want = PATHS[name] ? name : "emergency";
    const current = box.querySelector("svg.icon");
    if (current && current.dataset.icon === want) return;
    box.replaceChildren(make(want));
  }

  return {make, set};
})();
