// Runnable code cells (issue 14): each `div.code-cell[data-code-cell]` of a lesson becomes a small editor with a
// Run button, its output below, and one kernel bar for the page (state, Interrupt, Restart). The server side is
// the kernels app (/kernels/, see its views); the items a run produces are polled, never pushed, so no worker is
// held for the length of a run. Under the site's CSP (script-src 'self', style-src 'self'): no inline style, no
// eval, and no string becomes markup except an `html` item, which the server sanitised. No dependencies.
(function () {
  "use strict";

  var API = "/kernels/";
  var FIRST_DELAY = 60; // ms before the first poll; then ×1.5 per poll up to MAX_DELAY
  var MAX_DELAY = 500;
  var BACKOFF = 1.5;
  var RETRIES = 3; // polls that fail (network, 5xx) before we say we lost contact
  var RETRY_DELAY = 1000; // ms, times the number of failures so far
  var INDENT = "    ";

  var DONE_STATES = {
    ok: "Ran",
    error: "Raised an error",
    interrupted: "Interrupted",
    limit: "Stopped at a limit",
    gone: "Kernel stopped",
    failed: "Did not run",
    lost: "Lost contact",
  };
  // What the learner must see even when the server gave no message.
  var DEFAULT_MESSAGES = {
    limit: "The code hit a limit of the sandbox and was stopped.",
    gone: "The kernel no longer exists. Restart the kernel to run code again.",
    failed: "Something went wrong on our side. Try again in a moment.",
  };
  var ALERT_STATUSES = ["limit", "gone", "failed"];

  var page = null;

  // ---- DOM helpers -------------------------------------------------------------------------------------------

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function makeButton(label, className, ariaLabel) {
    var node = el("button", "button button-small " + className, label);
    node.type = "button";
    if (ariaLabel) node.setAttribute("aria-label", ariaLabel);
    return node;
  }

  function loginLink(text) {
    var link = el("a", "cell-login", text || "Log in to run this code");
    link.href = page.loginUrl || "/accounts/login/";
    return link;
  }

  // ---- HTTP --------------------------------------------------------------------------------------------------

  function cookie(name) {
    var parts = document.cookie ? document.cookie.split(";") : [];
    for (var i = 0; i < parts.length; i++) {
      var pair = parts[i].trim();
      if (pair.slice(0, name.length + 1) === name + "=") {
        return decodeURIComponent(pair.slice(name.length + 1));
      }
    }
    return null;
  }

  function csrfToken() {
    var fromCookie = cookie("csrftoken");
    if (fromCookie) return fromCookie;
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input && input.value) return input.value;
    var meta = document.querySelector('meta[name="csrf-token"]'); // base.html, for logged-in readers
    return meta ? meta.content : "";
  }

  // Resolves to {status, data}: data is the parsed JSON body or null. A network failure resolves with status 0,
  // so every caller handles one shape.
  function answerOf(response) {
    return response.json().then(
      function (data) { return { status: response.status, data: data }; },
      function () { return { status: response.status, data: null }; }
    );
  }

  function networkFailure() {
    return { status: 0, data: null };
  }

  function getJson(url) {
    return fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
      .then(answerOf, networkFailure);
  }

  function postJson(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        "X-CSRFToken": csrfToken(),
      },
      body: JSON.stringify(body || {}),
    }).then(answerOf, networkFailure);
  }

  // The sentence to show for a failed request: the server's own when it sent one (each names what to do).
  function errorMessage(answer) {
    if (answer.data && typeof answer.data.message === "string" && answer.data.message) return answer.data.message;
    if (answer.status === 0) return "Could not reach the server. Check your connection and try again.";
    if (answer.status === 403) return "Your session may have expired. Reload the page and try again.";
    return "The server could not do that (status " + answer.status + "). Try again in a moment.";
  }

  function lessonUrl(tail) {
    return API + "lessons/" + encodeURIComponent(page.lesson) + "/" + (tail || "");
  }

  function pollUrl(execution) {
    var url = new URL(execution.poll, window.location.href);
    url.searchParams.set("after", String(execution.after));
    return url.toString();
  }

  // ---- the kernel bar ----------------------------------------------------------------------------------------

  function buildBar() {
    var bar = el("div", "kernel-bar");
    bar.setAttribute("role", "region");
    bar.setAttribute("aria-label", "Python kernel");
    var label = el("span", "kernel-label", "Kernel:");
    var state = el("span", "kernel-state", "Checking the kernel…");
    state.setAttribute("role", "status");
    var note = el("span", "kernel-note");
    var actions = el("span", "kernel-actions");
    var interrupt = makeButton("Interrupt", "button-secondary kernel-interrupt", "Interrupt the running cell");
    var restart = makeButton("Restart", "button-secondary kernel-restart", "Restart the kernel");
    // A learner has a few kernels at once (one per page): Stop frees this page's for another.
    var stop = makeButton("Stop kernel", "button-secondary kernel-stop", "Stop this page's kernel");
    interrupt.disabled = true;
    interrupt.addEventListener("click", interruptKernel);
    restart.addEventListener("click", restartKernel);
    stop.addEventListener("click", stopKernel);
    actions.appendChild(interrupt);
    actions.appendChild(restart);
    actions.appendChild(stop);
    // Under the bar, not in it: the bar stays in view and should cover as little of the lesson as it can.
    var hint = el("p", "kernel-hint", "Shift+Enter or Ctrl+Enter runs a cell. Tab indents; press Esc, then Tab, " +
      "to leave the editor.");
    hint.id = "kernel-hint";
    bar.appendChild(label);
    bar.appendChild(state);
    bar.appendChild(note);
    bar.appendChild(actions);
    return { node: bar, hint: hint, state: state, note: note, interrupt: interrupt, restart: restart, stop: stop };
  }

  // The bar goes before the first cell, as a child of the lesson body, so it can stay in view (sticky) while the
  // reader scrolls through the cells below it.
  function placeBar(bar, firstCell) {
    var anchor = firstCell;
    var body = firstCell.closest(".lesson-body");
    if (body) {
      while (anchor.parentNode && anchor.parentNode !== body) anchor = anchor.parentNode;
    }
    anchor.parentNode.insertBefore(bar.node, anchor);
    anchor.parentNode.insertBefore(bar.hint, anchor);
  }

  function anyBusy() {
    return page.cells.some(function (cell) { return cell.busy; });
  }

  function kernelText() {
    var kernel = page.kernel;
    if (page.restarting) return "Restarting…";
    if (kernel.state === "gone") {
      return "Stopped: " + (kernel.message || DEFAULT_MESSAGES.gone);
    }
    if (kernel.state === "starting" || (kernel.state === "none" && anyBusy())) return "Starting…";
    if (anyBusy()) return "Busy";
    if (kernel.state === "none") return "No kernel yet: the first Run starts one";
    if (kernel.state === "unknown") return "Checking the kernel…";
    if (kernel.state === "unavailable") return "Unknown: " + (kernel.message || "could not ask the server.");
    return "Ready";
  }

  function showKernel() {
    var bar = page.bar;
    var text = kernelText();
    if (bar.state.textContent !== text) bar.state.textContent = text;
    bar.node.classList.toggle("is-stopped", page.kernel.state === "gone" && !page.restarting);
    bar.node.classList.toggle("is-busy", anyBusy() || page.restarting);
    bar.interrupt.disabled = !anyBusy() || page.restarting;
    bar.restart.disabled = page.restarting;
    bar.stop.disabled = page.restarting || !(page.kernel.state === "ready" || page.kernel.state === "starting");
    bar.restart.classList.toggle("is-suggested", page.kernel.state === "gone" && !page.restarting);
  }

  function setKernel(state, message) {
    page.kernel = { state: state, message: message || null };
    showKernel();
  }

  // A line beside the kernel state: an alert for errors, plain text otherwise; empty hides it.
  function setNote(text, isAlert, withLogin) {
    var note = page.bar.note;
    note.replaceChildren();
    note.classList.toggle("is-alert", Boolean(isAlert));
    if (isAlert) {
      note.setAttribute("role", "alert");
    } else {
      note.removeAttribute("role");
    }
    if (text) note.appendChild(document.createTextNode(text));
    if (withLogin) {
      note.appendChild(document.createTextNode(" "));
      note.appendChild(loginLink("Log in to run code"));
    }
  }

  function loadKernel() {
    return getJson(lessonUrl()).then(function (answer) {
      if (answer.status === 200 && answer.data && answer.data.kernel) {
        // A run may have begun while we asked: its items are newer than this answer.
        if (!anyBusy() && !page.restarting) setKernel(answer.data.kernel.state, answer.data.kernel.message);
      } else if (answer.status === 401) {
        setKernel("unavailable", "you are not logged in.");
        setNote("", true, true);
      } else {
        setKernel("unavailable", errorMessage(answer));
      }
    });
  }

  function interruptKernel() {
    setNote("Interrupting…", false);
    postJson(lessonUrl("interrupt"), {}).then(function (answer) {
      if (answer.status === 202) {
        setNote("", false);
      } else {
        setNote(errorMessage(answer), answer.status !== 409, answer.status === 401);
      }
    });
  }

  function stopKernel() {
    setNote("Stopping…", false);
    postJson(lessonUrl("stop"), {}).then(function (answer) {
      if (answer.status === 202) {
        page.generation += 1;
        page.cells.forEach(resetCell);
        setNote("", false);
        loadKernel();
      } else {
        setNote(errorMessage(answer), answer.status !== 409, answer.status === 401);
      }
    });
  }

  function restartKernel() {
    page.generation += 1; // the items of runs begun before this belong to the old kernel: ignore them
    page.cells.forEach(resetCell);
    page.restarting = true;
    setNote("", false);
    showKernel();
    var generation = page.generation;
    postJson(lessonUrl("restart"), {}).then(function (answer) {
      if (generation !== page.generation) return;
      if (answer.status === 202 && answer.data && answer.data.poll) {
        follow({ poll: answer.data.poll, cell: null, generation: generation });
      } else {
        page.restarting = false;
        showKernel();
        setNote(errorMessage(answer), true, answer.status === 401);
      }
    });
  }

  // ---- a cell ------------------------------------------------------------------------------------------------

  function rowsFor(text) {
    return Math.max(1, text.split("\n").length);
  }

  // The editor grows with its content through its `rows` attribute: no inline style (the CSP refuses it), and
  // lines do not wrap (wrap="off"), so a line of code is a row.
  function grow(area) {
    var rows = rowsFor(area.value);
    if (area.rows !== rows) area.rows = rows;
  }

  function insertText(area, text) {
    // execCommand keeps the browser's undo history; setRangeText is the fallback where it is gone.
    var done = false;
    try {
      done = document.execCommand("insertText", false, text);
    } catch (e) {
      done = false;
    }
    if (!done) {
      area.setRangeText(text, area.selectionStart, area.selectionEnd, "end");
      grow(area);
    }
  }

  function onEditorKey(cell, event) {
    var plainKey = !event.altKey && !event.ctrlKey && !event.metaKey;
    if (event.key === "Enter" && (event.shiftKey || event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      runCell(cell);
    } else if (event.key === "Tab" && plainKey && !event.shiftKey && !cell.leaveOnTab) {
      event.preventDefault();
      insertText(cell.editor, INDENT);
    } else if (event.key === "Escape") {
      // A keyboard user's way out: Tab indents, so after Esc the next Tab moves the focus on instead.
      cell.leaveOnTab = true;
      return;
    }
    cell.leaveOnTab = false;
  }

  function buildEditor(cell) {
    var area = el("textarea", "cell-editor");
    area.value = cell.original;
    area.spellcheck = false;
    area.setAttribute("wrap", "off");
    area.setAttribute("autocapitalize", "off");
    area.setAttribute("autocomplete", "off");
    area.setAttribute("autocorrect", "off");
    area.setAttribute("aria-label", "Code of cell " + cell.number);
    area.setAttribute("aria-describedby", "kernel-hint");
    area.rows = rowsFor(cell.original);
    area.addEventListener("input", function () { grow(area); });
    area.addEventListener("keydown", function (event) { onEditorKey(cell, event); });
    area.addEventListener("blur", function () { cell.leaveOnTab = false; });
    return area;
  }

  function resetEditor(cell) {
    cell.editor.value = cell.original;
    grow(cell.editor);
    cell.editor.focus();
  }

  function buildCell(node) {
    var code = node.querySelector("code");
    var pre = node.querySelector("pre");
    var index = Number(node.dataset.codeCell);
    var cell = {
      node: node,
      index: index,
      number: index + 1,
      // Highlighted blocks end with a newline of their own; the learner's code does not need it.
      original: (code ? code.textContent : "").replace(/\n+$/, ""),
      busy: false,
      execution: null,
      leaveOnTab: false,
    };
    cell.editor = buildEditor(cell);
    var wrap = el("div", "cell-editor-wrap");
    wrap.appendChild(cell.editor);
    if (pre) {
      node.replaceChild(wrap, pre);
    } else {
      node.insertBefore(wrap, node.firstChild);
    }

    var toolbar = el("div", "cell-toolbar");
    cell.runButton = makeButton("Run", "cell-run", "Run cell " + cell.number);
    cell.resetButton = makeButton(
      "Reset", "button-secondary cell-reset", "Reset cell " + cell.number + " to its original code");
    cell.state = el("span", "cell-state");
    cell.state.setAttribute("role", "status");
    cell.badge = el("span", "cell-badge");
    cell.badge.hidden = true;
    cell.runButton.addEventListener("click", function () { runCell(cell); });
    cell.resetButton.addEventListener("click", function () { resetEditor(cell); });
    toolbar.appendChild(cell.runButton);
    toolbar.appendChild(cell.resetButton);
    toolbar.appendChild(cell.state);
    toolbar.appendChild(cell.badge);

    cell.output = el("div", "cell-output");
    cell.output.setAttribute("aria-live", "polite");
    cell.output.setAttribute("aria-label", "Output of cell " + cell.number);

    node.appendChild(toolbar);
    node.appendChild(cell.output);
    node.classList.add("cell-ready");
    return cell;
  }

  function setCellState(cell, text, kind) {
    cell.state.textContent = text || "";
    cell.state.className = "cell-state" + (kind ? " is-" + kind : "");
  }

  function setBusy(cell, busy) {
    cell.busy = busy;
    cell.runButton.disabled = busy;
    if (busy) {
      cell.node.setAttribute("aria-busy", "true");
    } else {
      cell.node.removeAttribute("aria-busy");
    }
  }

  function clearBadge(cell) {
    cell.badge.hidden = true;
    cell.badge.textContent = "";
    cell.badge.className = "cell-badge";
  }

  function showBadge(cell, check) {
    cell.badge.hidden = false;
    cell.badge.className = "cell-badge " + (check.passed ? "is-passed" : "is-failed");
    cell.badge.textContent = check.passed
      ? "Check passed"
      : "Not passed yet: " + (check.detail || "the check is false");
  }

  // After a restart the kernel's state is gone, so is every cell's output.
  function resetCell(cell) {
    if (cell.execution) window.clearTimeout(cell.execution.timer);
    cell.execution = null;
    setBusy(cell, false);
    cell.output.replaceChildren();
    clearBadge(cell);
    setCellState(cell, "");
  }

  function showAlert(container, text, withLogin) {
    var alert = el("p", "cell-alert", text);
    alert.setAttribute("role", "alert");
    if (withLogin) {
      if (text) alert.appendChild(document.createTextNode(" "));
      alert.appendChild(loginLink());
    }
    container.appendChild(alert);
  }

  function runCell(cell) {
    if (cell.busy) return;
    var queued = anyBusy();
    cell.output.replaceChildren();
    clearBadge(cell);
    setBusy(cell, true);
    setCellState(cell, queued ? "Queued" : "Running…", queued ? "queued" : "running");
    showKernel();
    var generation = page.generation;
    var url = lessonUrl("cells/" + encodeURIComponent(cell.index) + "/run");
    postJson(url, { code: cell.editor.value }).then(function (answer) {
      if (generation !== page.generation) return; // restarted meanwhile: resetCell already cleaned up
      if (answer.status === 202 && answer.data && answer.data.poll) {
        follow({ poll: answer.data.poll, cell: cell, generation: generation });
      } else {
        refuseRun(cell, answer);
      }
    });
  }

  function refuseRun(cell, answer) {
    setBusy(cell, false);
    setCellState(cell, "Did not run", "error");
    // Logged out meanwhile (the session ended): the link says it all.
    showAlert(cell.output, answer.status === 401 ? "" : errorMessage(answer), answer.status === 401);
    if (answer.status === 409 && answer.data && answer.data.error === "kernel_gone") {
      setKernel("gone", answer.data.message);
    } else {
      showKernel();
    }
  }

  // ---- output items ------------------------------------------------------------------------------------------

  function appendStream(output, item) {
    var name = item.name === "stderr" ? "stderr" : "stdout";
    var last = output.lastElementChild;
    if (last && last.classList.contains("cell-stream") && last.dataset.stream === name) {
      last.appendChild(document.createTextNode(item.text || ""));
      return;
    }
    var pre = el("pre", "cell-stream cell-" + name, item.text || "");
    pre.dataset.stream = name;
    output.appendChild(pre);
  }

  function appendHtml(output, item) {
    // The only markup we insert: the server sanitised html items (kernels.outputs). A <template> parses it
    // without running anything or loading anything until it is in the page.
    var template = document.createElement("template");
    template.innerHTML = String(item.html || "");
    var box = el("div", "cell-html");
    box.appendChild(template.content);
    output.appendChild(box);
  }

  function appendImage(output, item, cell) {
    if (item.mime !== "image/png" || typeof item.data !== "string") return;
    var img = el("img", "cell-image");
    img.alt = "Output image of cell " + cell.number;
    img.src = "data:image/png;base64," + item.data;
    output.appendChild(img);
  }

  function appendError(output, item) {
    var box = el("div", "cell-error");
    var title = el("p", "cell-error-title");
    title.appendChild(el("strong", null, item.ename || "Error"));
    if (item.evalue) title.appendChild(document.createTextNode(": " + item.evalue));
    box.appendChild(title);
    if (item.traceback) box.appendChild(el("pre", "cell-traceback", item.traceback));
    output.appendChild(box);
  }

  function onStatus(execution, item) {
    if (item.state === "starting") {
      page.kernel = { state: "starting", message: null };
    } else if (item.state === "running") {
      page.kernel = { state: "ready", message: null };
      if (execution.cell) setCellState(execution.cell, "Running…", "running");
    }
    showKernel();
  }

  function renderItem(execution, item) {
    var cell = execution.cell;
    if (item.type === "status") return onStatus(execution, item);
    if (item.type === "done") return finish(execution, item);
    if (!cell) return renderRestartItem(item);
    var output = cell.output;
    switch (item.type) {
      case "stream": return appendStream(output, item);
      case "text": return output.appendChild(el("pre", "cell-text", item.text || ""));
      case "html": return appendHtml(output, item);
      case "image": return appendImage(output, item, cell);
      case "error": return appendError(output, item);
      case "notice": return output.appendChild(el("p", "cell-notice", item.text || ""));
      case "clear": return output.replaceChildren();
      default: return undefined; // a newer server's item: nothing to show for it yet
    }
  }

  // A restart has no cell: what it says (a notice, an error while starting) goes beside the kernel state.
  function renderRestartItem(item) {
    if (item.type === "notice" || item.type === "stream" || item.type === "text") {
      setNote(item.text || "", false);
    } else if (item.type === "error") {
      setNote((item.ename || "Error") + (item.evalue ? ": " + item.evalue : ""), true);
    }
  }

  // ---- following an execution --------------------------------------------------------------------------------

  function follow(options) {
    var execution = {
      poll: options.poll,
      cell: options.cell,
      generation: options.generation,
      after: 0,
      delay: FIRST_DELAY,
      failures: 0,
      finished: false,
      timer: null,
    };
    if (execution.cell) execution.cell.execution = execution;
    schedule(execution, FIRST_DELAY);
  }

  function schedule(execution, delay) {
    execution.timer = window.setTimeout(function () { pollOnce(execution); }, delay);
  }

  function stale(execution) {
    return execution.finished || execution.generation !== page.generation;
  }

  function pollOnce(execution) {
    if (stale(execution)) return;
    getJson(pollUrl(execution)).then(function (answer) {
      if (stale(execution)) return;
      if (answer.status === 200 && answer.data && Array.isArray(answer.data.items)) {
        onItems(execution, answer.data);
      } else if (answer.status === 0 || answer.status >= 500) {
        retry(execution, answer);
      } else if (answer.status === 401) {
        lose(execution, "Your session has ended.", true);
      } else {
        lose(execution, "The server no longer knows this run (status " + answer.status + "). Run the cell again.");
      }
    });
  }

  function onItems(execution, data) {
    execution.failures = 0;
    data.items.forEach(function (item) {
      if (!stale(execution) && item && typeof item.type === "string") renderItem(execution, item);
    });
    if (stale(execution)) return;
    if (typeof data.next === "number") execution.after = data.next;
    if (data.done) {
      finish(execution, { type: "done", status: "failed", message: "The run ended without a result. Try again." });
      return;
    }
    // Output flowing: ask again soon. Quiet: back off, so a long silent run costs two requests a second.
    execution.delay = data.items.length ? FIRST_DELAY : Math.min(MAX_DELAY, execution.delay * BACKOFF);
    schedule(execution, execution.delay);
  }

  function retry(execution, answer) {
    execution.failures += 1;
    if (execution.failures > RETRIES) {
      lose(execution, answer.status === 0
        ? "Lost contact with the server while following this run; it may still be running. " +
          "Check your connection, then reload the page."
        : errorMessage(answer) + " Reload the page to see how this run ended.");
      return;
    }
    schedule(execution, RETRY_DELAY * execution.failures);
  }

  // We stop following a run we can no longer read: say so where the run's output would have been.
  function lose(execution, message, withLogin) {
    finish(execution, { type: "done", status: "lost", message: message, withLogin: withLogin });
  }

  function finish(execution, item) {
    if (execution.finished) return;
    execution.finished = true;
    window.clearTimeout(execution.timer);
    if (execution.cell) {
      finishCell(execution.cell, item);
    } else {
      finishRestart(item);
    }
  }

  function finishCell(cell, item) {
    cell.execution = null;
    setBusy(cell, false);
    var status = item.status;
    var label = DONE_STATES[status] || "Stopped";
    if (status === "ok" && typeof item.execution_count === "number") label += " (#" + item.execution_count + ")";
    setCellState(cell, label, status === "ok" ? "ok" : "error");
    if (ALERT_STATUSES.indexOf(status) !== -1 || status === "lost") {
      showAlert(cell.output, item.message || DEFAULT_MESSAGES[status] || "", item.withLogin);
    } else if (item.message) {
      cell.output.appendChild(el("p", "cell-notice", item.message));
    }
    if (item.check && typeof item.check.passed === "boolean") showBadge(cell, item.check);
    updateKernelAfter(status, item.message);
  }

  function updateKernelAfter(status, message) {
    if (status === "gone") {
      setKernel("gone", message);
    } else if (status === "limit" || status === "failed") {
      showKernel();
      loadKernel(); // the kernel may or may not have survived: ask rather than guess
    } else if (status === "lost") {
      showKernel();
    } else {
      page.kernel = { state: "ready", message: null };
      showKernel();
    }
  }

  function finishRestart(item) {
    page.restarting = false;
    if (item.status === "ok") {
      setKernel("ready", null);
      setNote("", false);
    } else {
      var message = item.message || DEFAULT_MESSAGES[item.status] || DEFAULT_MESSAGES.failed;
      setKernel("gone", message);
      setNote(message, true, item.withLogin);
    }
  }

  // ---- start -------------------------------------------------------------------------------------------------

  function showLoginLinks(nodes) {
    nodes.forEach(function (node) {
      var line = el("p", "cell-login-line");
      line.appendChild(loginLink());
      node.appendChild(line);
    });
  }

  function init() {
    var root = document.getElementById("code-cells");
    if (!root) return;
    var nodes = Array.prototype.slice.call(document.querySelectorAll("div.code-cell[data-code-cell]"));
    if (!nodes.length) return;
    page = {
      lesson: root.dataset.lesson,
      loginUrl: root.dataset.loginUrl,
      cells: [],
      kernel: { state: "unknown", message: null },
      restarting: false,
      generation: 0,
      bar: null,
    };
    if (root.dataset.loggedIn !== "1") {
      showLoginLinks(nodes);
      return;
    }
    page.bar = buildBar();
    placeBar(page.bar, nodes[0]);
    page.cells = nodes.map(buildCell);
    showKernel();
    loadKernel();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
