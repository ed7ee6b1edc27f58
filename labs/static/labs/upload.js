// Drag-and-drop for the lab upload form. Without this script the form is a plain multi-file input and still works.
// With it, dropped folders keep their structure: each file is sent with its relative path in a `paths` field,
// because browsers send only base names in multipart uploads.
(function () {
  "use strict";
  const form = document.querySelector("[data-upload-form]");
  if (!form || !window.fetch || !window.FormData) return;
  const zone = form.querySelector("[data-dropzone]");
  const input = form.querySelector('input[type="file"]');
  const list = form.querySelector("[data-file-list]");
  const errors = document.querySelector("[data-upload-errors]");
  const note = form.querySelector("[data-dropzone-note]");
  let dropped = null; // [{path, file}] when files came from a drop
  if (note) note.hidden = false;

  function show(items) {
    list.replaceChildren();
    for (const item of items.slice(0, 50)) {
      const li = document.createElement("li");
      li.textContent = item.path + " (" + item.file.size + " bytes)";
      list.appendChild(li);
    }
    if (items.length > 50) {
      const li = document.createElement("li");
      li.textContent = "… and " + (items.length - 50) + " more";
      list.appendChild(li);
    }
  }

  function readEntry(entry, prefix) {
    return new Promise(function (resolve) {
      if (entry.isFile) {
        entry.file(function (file) { resolve([{ path: prefix + file.name, file: file }]); }, function () { resolve([]); });
      } else if (entry.isDirectory) {
        const reader = entry.createReader();
        const all = [];
        (function more() {
          reader.readEntries(function (entries) {
            if (!entries.length) {
              Promise.all(all.map(function (e) { return readEntry(e, prefix + entry.name + "/"); }))
                .then(function (parts) { resolve([].concat.apply([], parts)); });
              return;
            }
            all.push.apply(all, entries);
            more();
          }, function () { resolve([]); });
        })();
      } else {
        resolve([]);
      }
    });
  }

  function fromInput() {
    return Array.from(input.files).map(function (f) { return { path: f.webkitRelativePath || f.name, file: f }; });
  }

  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.add("dragging"); });
  });
  zone.addEventListener("dragleave", function () { zone.classList.remove("dragging"); });
  zone.addEventListener("drop", function (event) {
    event.preventDefault();
    zone.classList.remove("dragging");
    const items = Array.from(event.dataTransfer.items || []);
    const entries = items.map(function (i) { return i.webkitGetAsEntry && i.webkitGetAsEntry(); }).filter(Boolean);
    const done = entries.length
      ? Promise.all(entries.map(function (e) { return readEntry(e, ""); })).then(function (p) { return [].concat.apply([], p); })
      : Promise.resolve(Array.from(event.dataTransfer.files).map(function (f) { return { path: f.name, file: f }; }));
    done.then(function (files) {
      dropped = files;
      input.required = false;
      show(files);
    });
  });
  input.addEventListener("change", function () { dropped = null; show(fromInput()); });

  function showErrors(body) {
    errors.replaceChildren();
    const head = document.createElement("p");
    const strong = document.createElement("strong");
    strong.textContent = body.error || "The upload failed.";
    head.appendChild(strong);
    errors.appendChild(head);
    if (body.problems && body.problems.length) {
      const ul = document.createElement("ul");
      body.problems.forEach(function (p) { const li = document.createElement("li"); li.textContent = p; ul.appendChild(li); });
      errors.appendChild(ul);
    }
    if (body.hint) { const p = document.createElement("p"); p.textContent = body.hint; errors.appendChild(p); }
    errors.hidden = false;
    errors.scrollIntoView({ block: "center" });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const files = dropped || fromInput();
    if (!files.length) { showErrors({ error: "Choose files or a .zip first." }); return; }
    const data = new FormData();
    data.append("csrfmiddlewaretoken", form.querySelector("[name=csrfmiddlewaretoken]").value);
    files.forEach(function (item) { data.append("files", item.file, item.file.name); data.append("paths", item.path); });
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    fetch(form.action, { method: "POST", body: data, headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) { return response.json().then(function (body) { return { ok: response.ok, body: body }; }); })
      .then(function (result) {
        if (result.ok && result.body.redirect) { window.location.assign(result.body.redirect); return; }
        showErrors(result.body);
      })
      .catch(function () { showErrors({ error: "The upload did not reach the server.", hint: "Check your connection and try again." }); })
      .finally(function () { button.disabled = false; });
  });
})();
