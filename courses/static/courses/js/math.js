// Typesets the TeX the Markdown renderer leaves in .math elements, with the vendored KaTeX.
// Load after vendor/katex/katex.min.js (both with `defer`). Nothing is fetched from the network.
(function () {
  "use strict";

  // The site's Content-Security-Policy allows no inline style (config/security.py). KaTeX styles its output
  // through the CSSOM (element.style), which the policy does not restrict, except in three places where it calls
  // setAttribute("style", …): the MathML of \boldsymbol and \fcolorbox, and the red text of TeX that does not
  // parse. The browser would refuse those and report a violation. While KaTeX renders, and only then, a style
  // set that way goes through the CSSOM too (same declarations, on the same element), so the policy needs no
  // 'unsafe-inline' for style attributes.
  function renderWithoutStyleAttributes(tex, el, options) {
    var proto = Element.prototype;
    var setAttribute = proto.setAttribute;
    proto.setAttribute = function (name, value) {
      if (String(name).toLowerCase() === "style" && this.style) {
        this.style.cssText = String(value);
        return;
      }
      setAttribute.call(this, name, value);
    };
    try {
      window.katex.render(tex, el, options);
    } finally {
      proto.setAttribute = setAttribute;
    }
  }

  function typeset(root) {
    if (typeof window.katex === "undefined") {
      return;
    }
    var nodes = (root || document).querySelectorAll(".math:not([data-typeset])");
    for (var i = 0; i < nodes.length; i++) {
      var el = nodes[i];
      var tex = el.textContent;
      try {
        renderWithoutStyleAttributes(tex, el, {
          displayMode: el.classList.contains("math-display"),
          throwOnError: false,
          trust: false,
        });
        el.setAttribute("data-typeset", "");
        // Keep the source reachable for copy/paste and for readers without the rendered glyphs.
        el.setAttribute("title", tex);
      } catch (err) {
        // Leave the TeX source visible: readable beats blank.
      }
    }
  }

  window.shipshapeTypesetMath = typeset;
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { typeset(document); });
  } else {
    typeset(document);
  }
  // Content swapped in by htmx gets typeset too.
  document.addEventListener("htmx:afterSwap", function (event) { typeset(event.target); });
})();
