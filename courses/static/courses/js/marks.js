// Reader marks: the quiz answers a reader has open and the checklist items they ticked, restored when the
// lesson page loads and saved when they change. A logged-in reader's marks live on the server (posted to the
// article's data-marks-url, read back from the "reader-marks" JSON the page embeds); everyone else's live in
// this browser's localStorage under the article's data-marks-key. Keys as the server keeps them:
// "quiz:<quiz key>" -> ["q1", "q3"], "checklist:<n>" -> [0, 2]. No dependencies.
(function () {
  "use strict";

  var article = null;
  var serverUrl = null;
  var saved = {}; // key -> JSON of the value last stored, so restoring (or an unchanged state) saves nothing
  var queue = Promise.resolve(); // posts go one after the other, so the last state sent is the one kept

  function readJson(text, fallback) {
    try {
      var value = JSON.parse(text);
      return value && typeof value === "object" && !Array.isArray(value) ? value : fallback;
    } catch (e) {
      return fallback;
    }
  }

  function loadLocal() {
    try {
      return readJson(localStorage.getItem(article.dataset.marksKey) || "{}", {});
    } catch (e) {
      return {}; // storage disabled: nothing remembered, the page still works
    }
  }

  function storeLocal() {
    var state = {};
    Object.keys(saved).forEach(function (key) {
      var value = JSON.parse(saved[key]);
      if (value.length) state[key] = value;
    });
    try {
      if (Object.keys(state).length) {
        localStorage.setItem(article.dataset.marksKey, JSON.stringify(state));
      } else {
        localStorage.removeItem(article.dataset.marksKey);
      }
    } catch (e) {
      /* not remembered */
    }
  }

  function post(key, json) {
    var token = document.querySelector('meta[name="csrf-token"]');
    var body = new URLSearchParams();
    body.set("key", key);
    body.set("value", json);
    queue = queue.then(function () {
      return fetch(serverUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRFToken": token ? token.content : "" },
        body: body,
      }).catch(function () {
        /* offline: the page keeps its state until the next change */
      });
    });
  }

  function save(key, value) {
    var json = JSON.stringify(value);
    if ((saved[key] || "[]") === json) return;
    saved[key] = json;
    if (serverUrl) {
      post(key, json);
    } else {
      storeLocal();
    }
  }

  // Items of a checklist, not of a list nested in it (that one is a checklist of its own).
  function ownItems(list) {
    return Array.prototype.filter.call(list.querySelectorAll("input[data-item]"), function (input) {
      return input.closest("[data-checklist]") === list;
    });
  }

  function quizValue(quiz) {
    return Array.prototype.map.call(quiz.querySelectorAll("details[data-question][open]"), function (details) {
      return details.dataset.question;
    });
  }

  function checklistValue(list) {
    return ownItems(list)
      .filter(function (input) { return input.checked; })
      .map(function (input) { return Number(input.dataset.item); });
  }

  function restore(state) {
    Object.keys(state).forEach(function (key) {
      if (Array.isArray(state[key])) saved[key] = JSON.stringify(state[key]);
    });
    var quizzes = article.querySelectorAll(".quiz[data-quiz-key]");
    for (var i = 0; i < quizzes.length; i++) {
      var opened = state["quiz:" + quizzes[i].dataset.quizKey] || [];
      var answers = quizzes[i].querySelectorAll("details[data-question]");
      for (var j = 0; j < answers.length; j++) {
        if (opened.indexOf(answers[j].dataset.question) !== -1) answers[j].open = true;
      }
    }
    var lists = article.querySelectorAll("[data-checklist]");
    for (var k = 0; k < lists.length; k++) {
      var ticked = state["checklist:" + lists[k].dataset.checklist] || [];
      ownItems(lists[k]).forEach(function (input) {
        if (ticked.indexOf(Number(input.dataset.item)) !== -1) input.checked = true;
      });
    }
  }

  function onToggle(event) {
    var details = event.target;
    if (!(details instanceof HTMLDetailsElement) || !details.hasAttribute("data-question")) return;
    var quiz = details.closest(".quiz[data-quiz-key]");
    if (quiz && article.contains(quiz)) save("quiz:" + quiz.dataset.quizKey, quizValue(quiz));
  }

  function onChange(event) {
    var input = event.target;
    if (!(input instanceof HTMLInputElement) || !input.hasAttribute("data-item")) return;
    var list = input.closest("[data-checklist]");
    if (list && article.contains(list)) save("checklist:" + list.dataset.checklist, checklistValue(list));
  }

  function init() {
    article = document.querySelector("[data-marks-key]");
    if (!article) return;
    var embedded = document.getElementById("reader-marks");
    serverUrl = article.dataset.marksUrl && embedded ? article.dataset.marksUrl : null;
    restore(serverUrl ? readJson(embedded.textContent, {}) : loadLocal());
    // `toggle` does not bubble: listen in the capture phase.
    document.addEventListener("toggle", onToggle, true);
    document.addEventListener("change", onChange);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
