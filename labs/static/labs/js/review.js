// The review page: clicking a line number opens the line comment form under that line, without a reload. The
// form is the one the server renders under a line for ?comment=<path>:<line> (the page works without this file);
// here it is cloned from <template id="comment-form-template">, given the line's path and number, and focused.
(function () {
  "use strict";
  const template = document.getElementById("comment-form-template");
  if (!template) return;

  function closeOpenForm() {
    for (const row of document.querySelectorAll("tr.new-comment-row")) row.remove();
  }

  function openForm(link) {
    closeOpenForm();
    const lineRow = link.closest("tr");
    let after = lineRow;
    // Below the line's existing comments, so the new one reads after them.
    if (after.nextElementSibling && after.nextElementSibling.classList.contains("line-comments")) {
      after = after.nextElementSibling;
    }
    const row = template.content.firstElementChild.cloneNode(true);
    row.querySelector("input[name='path']").value = link.dataset.path;
    row.querySelector("input[name='line']").value = link.dataset.line;
    row.querySelector(".comment-where").textContent = link.dataset.path + ":" + link.dataset.line;
    const cancel = row.querySelector(".comment-cancel");
    cancel.setAttribute("href", "#" + link.dataset.anchor);
    cancel.addEventListener("click", function (event) {
      event.preventDefault();
      row.remove();
      link.focus();
    });
    after.after(row);
    const body = row.querySelector("textarea[name='body']");
    body.focus();
  }

  document.addEventListener("click", function (event) {
    const link = event.target.closest(".source-lines .ln a.comment-link");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    openForm(link);
  });

  // Escape closes the form that is open, when it is still empty.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    const body = document.querySelector("tr.new-comment-row textarea[name='body']");
    if (body && !body.value.trim()) closeOpenForm();
  });
})();
