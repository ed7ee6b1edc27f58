// "N of M opened" for non-graded quizzes: the answers open right now, so closing one lowers the count again.
// Each answer is a <details class="quiz-reveal">, so revealing works without this script; the script only keeps
// the counter up to date (also when marks.js reopens the answers a reader had open). No dependencies.
(function () {
  "use strict";

  function update(quiz) {
    var counter = quiz.querySelector("[data-opened]");
    if (counter) {
      counter.textContent = String(quiz.querySelectorAll("details.quiz-reveal[open]").length);
    }
  }

  function onToggle(event) {
    var details = event.target;
    if (!(details instanceof HTMLDetailsElement) || !details.classList.contains("quiz-reveal")) {
      return;
    }
    var quiz = details.closest(".quiz");
    if (quiz) {
      update(quiz);
    }
  }

  // `toggle` does not bubble: listen in the capture phase once for the whole document.
  document.addEventListener("toggle", onToggle, true);

  function init(root) {
    var quizzes = (root || document).querySelectorAll(".quiz");
    for (var i = 0; i < quizzes.length; i++) {
      update(quizzes[i]);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { init(document); });
  } else {
    init(document);
  }
  document.addEventListener("htmx:afterSwap", function (event) { init(event.target); });
})();
