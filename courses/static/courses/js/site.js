// Theme: follow the system unless the reader chose one; the choice is remembered in localStorage.
// This file loads in <head> without defer so the remembered theme applies before the first paint.
(function () {
  "use strict";
  var KEY = "shipshape-theme";
  var root = document.documentElement;

  function stored() {
    try {
      return localStorage.getItem(KEY);
    } catch (e) {
      return null; // storage disabled: follow the system
    }
  }

  var choice = stored();
  if (choice === "light" || choice === "dark") {
    root.setAttribute("data-theme", choice);
  }

  function effectiveTheme() {
    var explicit = root.getAttribute("data-theme");
    if (explicit) return explicit;
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }

  function sync(button) {
    var dark = effectiveTheme() === "dark";
    button.setAttribute("aria-pressed", dark ? "true" : "false");
  }

  document.addEventListener("DOMContentLoaded", function () {
    // Side panels (the table of contents) start collapsed for small screens; open them where there is room.
    if (window.matchMedia && window.matchMedia("(min-width: 64rem)").matches) {
      var panels = document.querySelectorAll("details[data-open-wide]");
      for (var i = 0; i < panels.length; i++) panels[i].open = true;
    }
    var button = document.getElementById("theme-toggle");
    if (button) {
      button.hidden = false;
      sync(button);
      button.addEventListener("click", function () {
        var next = effectiveTheme() === "dark" ? "light" : "dark";
        root.setAttribute("data-theme", next);
        try {
          localStorage.setItem(KEY, next);
        } catch (e) {
          /* not remembered, still applied */
        }
        sync(button);
      });
    }
  });

  // After an htmx swap, move focus to the new status text so keyboard and screen reader users learn
  // what changed. Only fragments returned to htmx carry the attribute.
  document.addEventListener("htmx:afterSettle", function () {
    var focusable = document.querySelector("[data-focus-after-swap]");
    if (focusable) {
      focusable.removeAttribute("data-focus-after-swap");
      focusable.focus();
    }
  });
})();
