// Typesets the TeX the Markdown renderer leaves in .math elements, with the vendored KaTeX.
// Load after vendor/katex/katex.min.js (both with `defer`). Nothing is fetched from the network.
(function () {
  "use strict";

  function typeset(root) {
    if (typeof window.katex === "undefined") {
      return;
    }
    var nodes = (root || document).querySelectorAll(".math:not([data-typeset])");
    for (var i = 0; i < nodes.length; i++) {
      var el = nodes[i];
      var tex = el.textContent;
      try {
        window.katex.render(tex, el, {
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
