// Clicking a line number in the code fills a line-comment row (a spare one, or a new copy) with that file
// and line, and moves the focus to its text. Without JavaScript the rows are filled by hand.
(function () {
  "use strict";
  const rows = document.getElementById("file-comment-rows");
  if (!rows) return;

  function spareRow() {
    for (const row of rows.querySelectorAll(".file-comment-row")) {
      const path = row.querySelector("select[name='fc-path']");
      const body = row.querySelector("textarea[name='fc-body']");
      if (!path.value && !body.value.trim()) return row;
    }
    const last = rows.querySelector(".file-comment-row:last-of-type");
    const copy = last.cloneNode(true);
    copy.querySelector("select[name='fc-path']").value = "";
    copy.querySelector("input[name='fc-line']").value = "";
    copy.querySelector("textarea[name='fc-body']").value = "";
    rows.appendChild(copy);
    return copy;
  }

  document.addEventListener("click", function (event) {
    const link = event.target.closest(".source-lines .ln a[data-path]");
    if (!link) return;
    event.preventDefault();
    const row = spareRow();
    row.querySelector("select[name='fc-path']").value = link.dataset.path;
    row.querySelector("input[name='fc-line']").value = link.dataset.line;
    const body = row.querySelector("textarea[name='fc-body']");
    body.scrollIntoView({ block: "center" });
    body.focus();
  });
})();
