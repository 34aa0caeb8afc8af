"""axe-core in the page under test, through axe-playwright-python's public ``Axe`` (which
ships axe.min.js, MPL-2.0, inside the wheel: no network at test time), and words for what
it finds.

axe-core checks the page as rendered: contrast of the colours the browser computed, names
of buttons, links and form fields, landmarks, headings, ARIA roles and attributes.
"""

from __future__ import annotations

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Locator, Page

#: Impacts a page must have none of (axe-core's scale: minor, moderate, serious, critical).
BLOCKING = ("serious", "critical")

_AXE = Axe()


def scan(page: Page) -> dict:
    """One run of axe-core on the page as it is now (all of axe's rules: WCAG 2.x A/AA and
    best practices). The answer's "violations" and "incomplete" (needs review) are lists of
    rules, each a dict with id, impact, help and nodes."""
    return _AXE.run(page, options={"resultTypes": ["violations", "incomplete"]}).response


def axe_version(page: Page) -> str:
    """The axe-core version that ran on the page (after ``scan``)."""
    return page.evaluate("axe.version")


def words(violations: list[dict]) -> str:
    """One line per violation and element: what rule, how bad, where, and axe's advice."""
    lines = []
    for v in violations:
        for node in v["nodes"]:
            where = ", ".join(map(str, node["target"]))
            advice = node.get("failureSummary", "").replace("\n", " ")
            lines.append(f"{v['impact']}: {v['id']} ({v['help']}) at {where}: {advice}")
    return "\n".join(lines)


def blocking(violations: list[dict]) -> list[dict]:
    return [v for v in violations if v["impact"] in BLOCKING]


def undecided_contrast(page: Page, response: dict) -> list[dict]:
    """The text whose contrast axe-core could not decide in ``response`` (needs review: a
    striped background, text inside an SVG chart), measured here instead: each as target,
    the text colour, every colour it may stand on (a gradient's stops and the first solid
    background behind them) and the lowest contrast ratio among them."""
    targets = [node["target"][0] for rule in response["incomplete"]
               if rule["id"] == "color-contrast" for node in rule["nodes"]]
    return page.evaluate(f"(arg) => {{ {_COLOUR_JS}\nreturn ({_UNDECIDED_JS})(arg); }}", targets)


def focus_ring(page: Page, target: Locator | None = None) -> dict:
    """What shows where the keyboard focus is: the focused element (tag, class, name), the
    outline's style and width in px, the best contrast ratio that any ring colour (the
    outline's, a box-shadow's) has with the backgrounds around the element, whether it is
    on screen, and whether it is ``target``."""
    script = f"(target) => {{ {_COLOUR_JS}\nreturn ({_RING_JS})(target); }}"
    return target.evaluate(script) if target is not None else page.evaluate(script, None)


# Colours as [r, g, b, a] from computed styles, WCAG relative luminance and contrast, and
# the backgrounds an element may stand on.
_COLOUR_JS = """
const colours = (text) => [...(text || "").matchAll(/rgba?\\(([^)]+)\\)/g)]
  .map((m) => m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number))
  .map(([r, g, b, a]) => [r, g, b, a === undefined ? 1 : a]);
const luminance = ([r, g, b]) => {
  const c = [r, g, b].map((v) => {
    v /= 255;
    return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
};
const ratio = (x, y) => {
  const [a, b] = [luminance(x), luminance(y)].sort((p, q) => q - p);
  return (a + 0.05) / (b + 0.05);
};
const backgrounds = (node) => {
  const found = [];
  for (let n = node; n && n.nodeType === 1; n = n.parentElement) {
    const style = getComputedStyle(n);
    if (style.backgroundImage !== "none") {
      found.push(...colours(style.backgroundImage).filter((c) => c[3] > 0));
    }
    const [bg] = colours(style.backgroundColor);
    if (bg && bg[3] === 1) { found.push(bg); return found; }
  }
  found.push([255, 255, 255, 1]);  // the canvas
  return found;
};
"""

_UNDECIDED_JS = """
(targets) => targets.map((target) => {
  const node = document.querySelector(target);
  if (!node) return {target, lowest: 0, why: "not found"};
  const style = getComputedStyle(node);
  const [text] = colours(node instanceof SVGElement ? style.fill : style.color);
  const under = backgrounds(node);
  return {target, text, under, lowest: Math.min(...under.map((bg) => ratio(text, bg)))};
})
"""

_RING_JS = """
(target) => {
  const node = document.activeElement;
  const style = getComputedStyle(node);
  const width = parseFloat(style.outlineWidth) || 0;
  const rings = [...(style.outlineStyle !== "none" && width > 0 ? colours(style.outlineColor) : []),
                 ...colours(style.boxShadow)].filter((c) => c[3] === 1);
  const under = backgrounds(node.parentElement);
  const best = Math.max(0, ...rings.map((ring) => Math.min(...under.map((bg) => ratio(ring, bg)))));
  const rect = node.getBoundingClientRect();
  return {element: `${node.tagName.toLowerCase()}.${node.className} "${
            (node.getAttribute("aria-label") || node.textContent || "").trim().slice(0, 50)}"`,
          outline: style.outlineStyle, width, best, reached: node === target,
          on_screen: rect.width > 0 && rect.height > 0 && rect.bottom > 0 && rect.right > 0 &&
                     rect.top < innerHeight && rect.left < innerWidth};
}
"""
