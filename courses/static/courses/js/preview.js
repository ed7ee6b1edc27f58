// The author preview (manage.py preview_course): ask the server whether the course changed and reload when it
// did, keeping the reader where they were. A long poll: the server answers as soon as a save is read, or after
// a while with the same version, and we ask again. A file under /static/ because the site's CSP allows no
// inline script.
(function () {
  "use strict";
  var body = document.body;
  var version = body.dataset.previewVersion;
  var changes = body.dataset.previewChanges;
  if (!version || !changes) return;
  var scrollKey = "shipshape-preview-scroll:" + location.pathname;
  var offline = document.querySelector("[data-preview-offline]");

  // Back where the reader was before the reload, once math and images have laid the page out.
  window.addEventListener("load", function () {
    var saved = sessionStorage.getItem(scrollKey);
    if (saved === null) return;
    sessionStorage.removeItem(scrollKey);
    if (!location.hash) window.scrollTo(0, parseInt(saved, 10) || 0);
  });

  function reload() {
    sessionStorage.setItem(scrollKey, String(Math.round(window.scrollY)));
    location.reload();
  }

  function ask() {
    fetch(changes + "?since=" + encodeURIComponent(version), { cache: "no-store" })
      .then(function (response) {
        if (!response.ok) throw new Error("status " + response.status);
        return response.json();
      })
      .then(function (answer) {
        if (offline) offline.hidden = true;
        if (answer.version !== version) {
          reload();
        } else {
          ask();
        }
      })
      .catch(function () {
        // The server stopped or restarted: say so, and keep trying (a restarted one has a new version).
        if (offline) offline.hidden = false;
        window.setTimeout(ask, 1000);
      });
  }
  ask();
})();
