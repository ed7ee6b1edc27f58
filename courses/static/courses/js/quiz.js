// "N of M opened" for non-graded quizzes. Each answer is a <details class="quiz-reveal">, so revealing
// works without this script; the script only keeps the counter up to date. No dependencies.
(function () {
  "use strict";

  function update(quiz) {
    var counter = quiz.querySelector("[data-opened]");
    if (counter) {
      counter.textContent = String(quiz.querySelectorAll("details.quiz-reveal[data-seen]").length);
    }
  }

  function onToggle(event) {
    var details = event.target;
    if (!(details instanceof HTMLDetailsElement) || !details.classList.contains("quiz-reveal")) {
      return;
    }
    // Counts answers the reader has looked at, so closing one again does not lower the count.
    if (details.open) {
      details.setAttribute("data-seen", "");
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
      var opened = quizzes[i].querySelectorAll("details.quiz-reveal[open]");
      for (var j = 0; j < opened.length; j++) {
        opened[j].setAttribute("data-seen", "");
      }
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
