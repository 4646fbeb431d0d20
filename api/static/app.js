// The browser page: plan a submission (the service names the items: POST /v1/batches/plan), send it, list the
// jobs, show each item's report.json as the service wrote it (never re-derived here), download a job's results.
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var PAGE_SIZE = 10;
  var MAX_LOOSE_FILES = 900;  // a multipart body of more parts than the service parses (1,000): zip them
  var FINISHED = { done: 1, done_with_errors: 1, failed: 1 };
  var STATE_WORDS = { queued: "queued", running: "running", done: "done", done_with_errors: "done with errors",
                      failed: "failed" };

  // ---- requests: the key, kept for this tab, and errors as the service words them ----------------------------
  var KEY = "retouch-key";
  function key() { return sessionStorage.getItem(KEY) || ""; }
  function headers() { return key() ? { Authorization: "Bearer " + key() } : {}; }
  function NeedsKey() { this.message = "this service needs an API key"; }
  async function api(path, options) {
    var response = await fetch(path, Object.assign({}, options || {}, { headers: headers() }));
    if (response.status === 401) { askForKey(); throw new NeedsKey(); }
    if (!response.ok) {
      var body = await response.json().catch(function () { return {}; });
      throw new Error((body.error && body.error.message) || ("request failed: " + response.status));
    }
    return response;
  }
  async function json(path, options) { return (await api(path, options)).json(); }
  async function blobUrl(path) { return URL.createObjectURL(await (await api(path)).blob()); }
  function showError(error) {
    if (error instanceof NeedsKey) { return; }
    $("error").textContent = error.message || String(error);
    $("error").hidden = false;
  }
  function clearError() { $("error").hidden = true; }

  function askForKey() {
    $("keyform").hidden = false;
    if (!$("keyform").contains(document.activeElement)) { $("key").focus(); }
  }
  $("key-form").addEventListener("submit", function (event) {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("key").value);
    $("key").value = "";
    $("keyform").hidden = true;
    clearError();
    refresh();
  });

  function element(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = text; }
    if (className) { node.className = className; }
    return node;
  }
  function cell(row, label, content, wide) {
    var td = element("td", null, wide ? "wide" : "");  // wide: a whole line of a narrow screen's card
    if (content instanceof Node ? content.childNodes.length : content) { td.dataset.label = label; }
    if (content instanceof Node) { td.appendChild(content); } else { td.textContent = content; }
    row.appendChild(td);
    return td;
  }
  function button(text, onClick, className) {
    var node = element("button", text, className);
    node.type = "button";
    node.addEventListener("click", onClick);
    return node;
  }

  // ---- choosing files: drops (folders too), the file and folder pickers --------------------------------------
  var chosen = [];  // {file, name}: name is the path under what was dropped (box1/scan.jpg)
  var plan = null;  // {loose: [{command, files, id}], zips: [{file, name}], manifest, skipped: [], notes: []}

  var drop = $("drop");
  drop.addEventListener("click", function () { $("files").click(); });
  drop.addEventListener("keydown", function (event) {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); $("files").click(); }
  });
  $("choose").addEventListener("click", function () { $("files").click(); });
  $("choose-folder").addEventListener("click", function () { $("folder").click(); });
  ["files", "folder"].forEach(function (id) {
    $(id).addEventListener("change", function (event) {
      var files = Array.prototype.map.call(event.target.files, function (file) {
        return { file: file, name: file.webkitRelativePath || file.name };
      });
      event.target.value = "";
      choose(files);
    });
  });
  ["dragenter", "dragover"].forEach(function (type) {
    drop.addEventListener(type, function (event) { event.preventDefault(); drop.classList.add("over"); });
  });
  drop.addEventListener("dragleave", function () { drop.classList.remove("over"); });
  drop.addEventListener("drop", async function (event) {
    event.preventDefault();
    drop.classList.remove("over");
    var entries = Array.prototype.map.call(event.dataTransfer.items || [], function (item) {
      return item.webkitGetAsEntry ? item.webkitGetAsEntry() : null;
    });
    if (entries.length && entries.every(Boolean)) {
      var files = [];
      for (var i = 0; i < entries.length; i++) { await readEntry(entries[i], files); }
      choose(files);
    } else {
      choose(Array.prototype.map.call(event.dataTransfer.files, function (file) { return { file: file, name: file.name }; }));
    }
  });
  async function readEntry(entry, into) {
    if (entry.isFile) {
      var file = await new Promise(function (resolve, reject) { entry.file(resolve, reject); });
      into.push({ file: file, name: entry.fullPath.replace(/^\//, "") });
      return;
    }
    var reader = entry.createReader();
    for (;;) {  // a directory reader answers in batches until it answers none
      var batch = await new Promise(function (resolve, reject) { reader.readEntries(resolve, reject); });
      if (!batch.length) { return; }
      for (var i = 0; i < batch.length; i++) { await readEntry(batch[i], into); }
    }
  }

  // What a file is, by its first bytes as the service will judge it (it checks again): an image, a zip, a
  // manifest (by its name), or something to leave out, named in the plan.
  async function kindOf(file, name) {
    var head = new Uint8Array(await file.slice(0, 12).arrayBuffer());
    var ascii = String.fromCharCode.apply(null, head);
    if (ascii.slice(0, 4) === "PK\u0003\u0004" || ascii.slice(0, 4) === "PK\u0005\u0006") { return "zip"; }
    if (/\.(csv|json)$/i.test(name)) { return "manifest"; }
    var image = (head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) ||
      ascii.slice(0, 8) === "\u0089PNG\r\n\u001a\n" || ascii.slice(0, 4) === "II*\u0000" ||
      ascii.slice(0, 4) === "MM\u0000*" || ascii.slice(0, 4) === "II+\u0000" || ascii.slice(0, 4) === "MM\u0000+" ||
      (ascii.slice(0, 4) === "RIFF" && ascii.slice(8, 12) === "WEBP") || ascii.slice(0, 2) === "BM";
    return image ? "image" : "other";
  }

  async function choose(files) {
    clearError();
    if (!files.length) { return; }
    chosen = files.filter(function (entry) { return !/(^|\/)(\.DS_Store|Thumbs\.db|desktop\.ini)$/.test(entry.name); });
    var kinds = await Promise.all(chosen.map(function (entry) { return kindOf(entry.file, entry.name); }));
    var images = [], zips = [], manifests = [], skipped = [];
    chosen.forEach(function (entry, i) {
      ({ image: images, zip: zips, manifest: manifests, other: skipped })[kinds[i]].push(entry);
    });
    plan = { loose: [], zips: zips, manifest: null, skipped: skipped, notes: [], images: images };
    try {
      if (manifests.length > 1) {
        throw new Error("more than one manifest (" + manifests.map(function (m) { return m.name; }).join(", ") +
                        "): drop one list of items at a time");
      }
      if (images.length > MAX_LOOSE_FILES) {
        throw new Error(images.length + " loose files: zip them and drop the zip (a zip may hold up to the " +
                        "service's limit of files)");
      }
      plan.manifest = manifests[0] || null;
      if (plan.manifest && !images.length) {
        throw new Error(plan.manifest.name + ": a manifest lists the scans dropped with it; drop them together " +
                        "(a zip's own manifest goes inside the zip)");
      }
      if (images.length) {
        var form = new FormData();
        form.append("names", JSON.stringify(images.map(function (entry) { return entry.name; })));
        if (plan.manifest) { form.append("manifest", plan.manifest.file, plan.manifest.name); }
        var planned = await json("/v1/batches/plan", { method: "POST", body: form });
        plan.loose = planned.items;
        plan.notes = planned.notes;
      }
    } catch (error) {
      plan = null;
      $("plan").hidden = true;
      showError(error);
      return;
    }
    renderPlan();
    $("send").focus();
  }

  function renderPlan() {
    var body = $("plan-items").querySelector("tbody");
    body.innerHTML = "";
    plan.loose.forEach(function (item, index) {
      var row = element("tr");
      cell(row, "Item", item.command === "compare" ? "compare" : "analyse");
      var files = element("div");
      if (item.command === "compare") {
        files.appendChild(element("div", "reference: " + item.files[0]));
        files.appendChild(element("div", "questioned: " + item.files[1]));
      } else {
        files.textContent = item.files[0];
      }
      cell(row, "Files", files, true);
      var change = element("div", null, "row tight");
      if (item.command === "compare") {
        change.appendChild(button("Swap", function () {
          item.files = [item.files[1], item.files[0]]; renderPlan();
        }));
        change.appendChild(button("Analyse separately", function () {
          plan.loose.splice(index, 1,
            { command: "analyze", files: [item.files[0]] }, { command: "analyze", files: [item.files[1]] });
          renderPlan();
        }));
      }
      cell(row, "Change", change, true);
      body.appendChild(row);
    });
    plan.zips.forEach(function (entry) {
      var row = element("tr");
      cell(row, "Item", "zip");
      cell(row, "Files", entry.name + " (" + megabytes(entry.file.size) + "): read by the service, with its " +
           "manifest if it holds one", true).colSpan = 2;
      body.appendChild(row);
    });
    var notes = $("plan-notes");
    notes.innerHTML = "";
    plan.notes.concat(plan.skipped.map(function (entry) {
      return entry.name + ": left out, not a JPEG, PNG, TIFF, WebP or BMP image, a zip or a manifest";
    })).forEach(function (note) { notes.appendChild(element("li", note)); });
    var jobs = (plan.loose.length ? 1 : 0) + plan.zips.length;
    $("send").disabled = jobs === 0;
    $("send").textContent = "Send " + describeCount(plan.loose.length, "item") +
      (plan.zips.length ? (plan.loose.length ? " and " : "") + describeCount(plan.zips.length, "zip") : "");
    $("plan").hidden = false;
  }
  function describeCount(n, word) { return n ? n + " " + word + (n === 1 ? "" : "s") : ""; }
  function megabytes(bytes) { return bytes >= 1048576 ? (bytes / 1048576).toFixed(1) + " MB" : Math.ceil(bytes / 1024) + " KB"; }

  $("clear").addEventListener("click", function () { plan = null; $("plan").hidden = true; $("drop").focus(); });

  // ---- sending: one scan or one pair as such, more as a batch with the confirmed plan as its manifest --------
  function upload(path, form, label) {
    // XMLHttpRequest, not fetch: it reports upload progress, which a large zip needs
    return new Promise(function (resolve, reject) {
      var request = new XMLHttpRequest();
      request.open("POST", path);
      if (key()) { request.setRequestHeader("Authorization", "Bearer " + key()); }
      request.upload.onprogress = function (event) {
        if (event.lengthComputable) {
          $("upload-bar").value = event.loaded / event.total;
          $("upload-text").textContent = "Sending " + label + ": " + Math.round(100 * event.loaded / event.total) + " %";
        }
      };
      request.onload = function () {
        var body = {};
        try { body = JSON.parse(request.responseText); } catch (e) { /* not JSON: said below */ }
        if (request.status === 401) { askForKey(); reject(new NeedsKey()); return; }
        if (request.status >= 400) {
          reject(new Error(label + ": " + ((body.error && body.error.message) || "refused (" + request.status + ")")));
          return;
        }
        resolve(body);
      };
      request.onerror = function () { reject(new Error(label + ": the service could not be reached")); };
      request.send(form);
    });
  }

  $("send").addEventListener("click", async function () {
    if (!plan) { return; }
    clearError();
    $("send").disabled = true;
    $("upload").hidden = false;
    var detectors = $("detectors").value;
    var byName = {};
    plan.images.forEach(function (entry) { byName[entry.name] = entry.file; });
    var created = [];
    try {
      if (plan.loose.length === 1 && plan.loose[0].command === "analyze") {
        var one = new FormData();
        one.append("image", byName[plan.loose[0].files[0]], plan.loose[0].files[0]);
        if (detectors) { one.append("detectors", detectors); }
        created.push(await upload("/v1/analyses", one, plan.loose[0].files[0]));
      } else if (plan.loose.length === 1) {
        var pair = new FormData();
        pair.append("reference", byName[plan.loose[0].files[0]], plan.loose[0].files[0]);
        pair.append("questioned", byName[plan.loose[0].files[1]], plan.loose[0].files[1]);
        created.push(await upload("/v1/comparisons", pair, plan.loose[0].files.join(" and ")));
      } else if (plan.loose.length) {
        var batch = new FormData();
        var manifest = plan.loose.map(function (item) {
          var entry = item.command === "compare" ? { reference: item.files[0], questioned: item.files[1] } : { image: item.files[0] };
          if (item.id) { entry.id = item.id; }
          return entry;
        });
        plan.loose.forEach(function (item) {
          item.files.forEach(function (name) { batch.append("files", byName[name], name); });
        });
        batch.append("manifest", new Blob([JSON.stringify(manifest)], { type: "application/json" }), "manifest.json");
        if (detectors) { batch.append("detectors", detectors); }
        created.push(await upload("/v1/batches", batch, describeCount(plan.loose.length, "item")));
      }
      for (var i = 0; i < plan.zips.length; i++) {
        var zip = new FormData();
        zip.append("archive", plan.zips[i].file, plan.zips[i].name);
        if (detectors) { zip.append("detectors", detectors); }
        created.push(await upload("/v1/batches", zip, plan.zips[i].name));
      }
    } catch (error) {
      showError(error);
    } finally {
      $("upload").hidden = true;
      $("send").disabled = false;
    }
    if (created.length) {
      plan = null;
      $("plan").hidden = true;
      listOffset = 0;
      location.hash = "job=" + created[created.length - 1].job_id;
    }
  });

  // ---- the job list: newest first, a page at a time, filtered; it is the service's, so a reload keeps it ----
  var listOffset = 0, listTotal = 0, listed = [], drawnList = null, drawnJob = null;
  $("newer").addEventListener("click", function () { listOffset = Math.max(0, listOffset - PAGE_SIZE); loadJobs(); });
  $("older").addEventListener("click", function () { listOffset += PAGE_SIZE; loadJobs(); });
  ["state-filter", "since-filter"].forEach(function (id) {
    $(id).addEventListener("change", function () { listOffset = 0; loadJobs(); });
  });

  async function loadJobs() {
    var query = new URLSearchParams({ items: "false", limit: PAGE_SIZE, offset: listOffset });
    if ($("state-filter").value) { query.set("state", $("state-filter").value); }
    if ($("since-filter").value) { query.set("since", Date.now() / 1000 - Number($("since-filter").value)); }
    var page = await json("/v1/jobs?" + query);
    listed = page.jobs;
    listTotal = page.total;
    var drawn = JSON.stringify([page, openJob]);
    if (drawn === drawnList) { return; }  // unchanged: redrawing would only take the keyboard's focus away
    drawnList = drawn;
    var body = $("job-table").querySelector("tbody");
    var focused = focusKey();
    body.innerHTML = "";
    page.jobs.forEach(function (job) {
      var row = element("tr");
      if (job.id === openJob) { row.className = "open"; }
      cell(row, "Created", new Date(job.created * 1000).toLocaleString());
      var link = element("a", job.label || job.id);
      link.href = "#job=" + job.id;
      link.dataset.focus = "job " + job.id;
      if (job.id === openJob) { link.setAttribute("aria-current", "true"); }
      var files = element("div");
      files.appendChild(link);
      files.appendChild(element("div", job.kind, "note"));
      cell(row, "Files", files, true);
      cell(row, "State", stateBadge(job.state));
      cell(row, "Progress", progressOf(job.progress));
      cell(row, "Errors", job.progress.failed ? String(job.progress.failed) : "none");
      body.appendChild(row);
    });
    $("no-jobs").hidden = page.total > 0;
    $("no-jobs").textContent = $("state-filter").value || $("since-filter").value ? "No job matches." : "No job yet.";
    var last = Math.min(page.total, listOffset + page.jobs.length);
    $("page-info").textContent = page.total ? (listOffset + 1) + "–" + last + " of " + page.total : "";
    $("newer").disabled = listOffset === 0;
    $("older").disabled = listOffset + PAGE_SIZE >= page.total;
    restoreFocus(focused);
  }
  // a redrawn control gets the focus back: it is found again by what it does (data-focus)
  function focusKey() { return document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.focus : null; }
  function restoreFocus(wanted) {
    if (!wanted) { return; }
    var again = document.querySelector('[data-focus="' + wanted.replace(/["\\]/g, "\\$&") + '"]');
    if (again) { again.focus(); }
  }
  function stateBadge(state) { return element("span", STATE_WORDS[state] || state, "state " + state); }
  function progressOf(progress) {
    var box = element("div", null, "progress");
    var bar = element("progress");
    bar.max = progress.total || 1;
    bar.value = progress.finished;
    bar.setAttribute("aria-label", progress.finished + " of " + progress.total + " finished");
    box.appendChild(bar);
    box.appendChild(element("span", progress.finished + " of " + progress.total));
    return box;
  }

  // ---- one job: its items, each with its error beside its name or its report inline -------------------------
  var openJob = null, shownItem = null, job = null;

  async function loadJob() {
    if (!openJob) { $("job").hidden = true; return; }
    try {
      job = await json("/v1/jobs/" + encodeURIComponent(openJob));
    } catch (error) {
      if (!(error instanceof NeedsKey)) { openJob = null; location.hash = ""; }
      throw error;
    }
    $("job").hidden = false;
    $("job").dataset.state = job.state;
    $("job-title").textContent = job.label || job.id;
    $("job-meta").textContent = job.kind + " · " + (STATE_WORDS[job.state] || job.state) + " · " +
      job.progress.finished + " of " + job.progress.total + " finished, " + job.progress.failed + " failed · created " +
      new Date(job.created * 1000).toLocaleString() + " · id " + job.id;
    $("job-bar").max = job.progress.total || 1;
    $("job-bar").value = job.progress.finished;
    var doneItems = job.items.filter(function (item) { return item.state === "done"; }).length;
    $("download").disabled = doneItems === 0;
    $("download").textContent = FINISHED[job.state] ? "Download all (zip)" : "Download finished items (zip)";
    var notes = $("job-notes");
    notes.innerHTML = "";
    job.notes.forEach(function (note) { notes.appendChild(element("li", note)); });
    var drawn = JSON.stringify([job.items, shownItem]);
    if (drawn !== drawnJob) { drawnJob = drawn; renderItems(); }
  }

  function renderItems() {
    var focused = focusKey();
    var body = $("items").querySelector("tbody");
    var result = $("result");
    if (result.parentNode !== document.querySelector("main")) { document.querySelector("main").appendChild(result); }
    body.innerHTML = "";
    job.items.forEach(function (item) {
      var row = element("tr");
      row.dataset.item = item.id;
      cell(row, "Item", item.id);
      cell(row, "Files", item.inputs.join(", "), true);
      cell(row, "State", stateBadge(item.state));
      var outcome = element("div");
      if (item.state === "failed") {
        outcome.appendChild(element("span", item.error || "failed", "item-error"));
      } else if (item.state === "done" && item.result) {
        var found = item.result.regions ? describeCount(item.result.regions, "region") : "no region met the threshold";
        outcome.appendChild(element("span", "score " + Number(item.result.score).toFixed(2) + " · " + found + " "));
        var open = item.id === shownItem;
        var toggle = button(open ? "Hide report" : "Show report", function () {
          shownItem = open ? null : item.id;
          drawnJob = JSON.stringify([job.items, shownItem]);
          renderItems();
          if (shownItem) { showReport(job.id, item.id).catch(showError); }
        }, "show-report");
        toggle.dataset.focus = "report " + item.id;
        toggle.setAttribute("aria-expanded", String(open));
        outcome.appendChild(toggle);
      } else {
        outcome.textContent = "…";
      }
      cell(row, "Result", outcome, true);
      body.appendChild(row);
      if (item.id === shownItem) {
        var reportRow = element("tr", null, "report-row");
        var holder = element("td");
        holder.colSpan = 4;
        holder.appendChild(result);
        reportRow.appendChild(holder);
        body.appendChild(reportRow);
      }
    });
    result.hidden = !shownItem;
    restoreFocus(focused);
  }

  async function download(which) {
    try {
      var links = await json("/v1/jobs/" + encodeURIComponent(openJob) + "/links");
      var anchor = element("a");
      anchor.href = links[which];  // followed by the browser's downloads, streamed to disk: no header, a signed link
      anchor.download = "";
      document.body.appendChild(anchor);
      anchor.click();
      anchor.remove();
    } catch (error) { showError(error); }
  }
  $("download").addEventListener("click", function () { download("archive"); });
  $("download-csv").addEventListener("click", function () { download("summary_csv"); });
  $("delete").addEventListener("click", function () {
    $("confirm-delete").hidden = false; $("delete").hidden = true; $("delete-no").focus();
  });
  $("delete-no").addEventListener("click", function () {
    $("confirm-delete").hidden = true; $("delete").hidden = false; $("delete").focus();
  });
  $("delete-yes").addEventListener("click", async function () {
    try {
      await api("/v1/jobs/" + encodeURIComponent(openJob), { method: "DELETE" });
      $("confirm-delete").hidden = true; $("delete").hidden = false;
      location.hash = "";
      $("jobs").focus();
    } catch (error) { showError(error); }
  });

  // ---- an item's report, as report.json has it --------------------------------------------------------------
  var layerUrls = {};
  async function showReport(jobId, itemId) {
    var base = "/v1/jobs/" + encodeURIComponent(jobId) + "/items/" + encodeURIComponent(itemId);
    var report = await json(base + "/report");
    var result = report.result;
    $("score").textContent = "Score " + result.score.toFixed(2);
    var inputNotes = [];
    report.inputs.forEach(function (input) {
      (input.notes || []).forEach(function (note) { inputNotes.push(" " + input.name + " " + note); });
    });
    // the report's plain-words reading first (reports of older versions have none: their summary stands in)
    var words = report.reading || { headline: result.summary, how_sure: "", cannot_see: [], next_step: "" };
    $("summary").textContent = words.headline + inputNotes.join("");
    $("how-sure").textContent = words.how_sure;
    var limits = $("cannot-see"); limits.innerHTML = "";
    words.cannot_see.forEach(function (line) {
      var li = document.createElement("li"); li.textContent = line; limits.appendChild(li);
    });
    $("next-step").textContent = words.next_step;
    $("method-summary").textContent = result.summary;
    $("score-note").textContent = report.score_note || "";
    var isPair = report.command === "compare";
    var photoIndex = isPair ? 1 : 0;
    // both images fetched before either is shown, so a comparison never appears with its aligned half missing
    var fetched = await Promise.all([
      blobUrl(base + "/inputs/" + photoIndex + "/preview"),
      isPair ? blobUrl(base + "/files/aligned_reference.png") : Promise.resolve(""),
    ]);
    $("photo").src = fetched[0];
    $("pair").hidden = !isPair;
    if (isPair) {
      $("left").src = fetched[1];
      $("right").src = fetched[0];
    }
    var layers = isPair ? { changes: "changes_heatmap.png" } : { suspect: "suspect_heatmap.png" };
    report.analyses.forEach(function (a) { if (a.heatmap_file && !a.skipped) { layers[a.method] = a.heatmap_file; } });
    layerUrls = {};
    var bar = $("layers");
    bar.innerHTML = "";
    bar.appendChild(element("span", "Show over the image:"));
    var names = ["none"].concat(Object.keys(layers));
    names.forEach(function (name, i) {
      var label = element("label");
      var input = element("input");
      input.type = "radio"; input.name = "layer"; input.value = name; input.checked = i === 1;
      input.addEventListener("change", function () { drawLayer(base, layers, name).catch(showError); });
      label.appendChild(input); label.appendChild(document.createTextNode(" " + name));
      bar.appendChild(label);
    });
    await drawLayer(base, layers, names[1]);
    renderRegions(result.regions, report.inputs[photoIndex]);
    $("full").onclick = async function () {
      try { window.open(await blobUrl(base + "/files/report.html"), "_blank"); } catch (error) { showError(error); }
    };
  }

  // inferno-like colour ramp for 0..255
  function ramp(v) {
    var t = v / 255;
    return [Math.min(255, 40 + 520 * t), Math.max(0, Math.min(255, 380 * (t - 0.35))), Math.max(0, 120 - 300 * Math.abs(t - 0.25))];
  }
  async function drawLayer(base, layers, name) {
    var canvas = $("heat"); var ctx = canvas.getContext("2d");
    if (name === "none") { ctx.clearRect(0, 0, canvas.width, canvas.height); return; }
    var url = layerUrls[name] || (layerUrls[name] = await blobUrl(base + "/files/" + layers[name]));
    var img = new Image();
    await new Promise(function (resolve) { img.onload = resolve; img.src = url; });
    var scale = Math.min(1, 1200 / Math.max(img.width, img.height));
    canvas.width = Math.round(img.width * scale); canvas.height = Math.round(img.height * scale);
    ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    var data = ctx.getImageData(0, 0, canvas.width, canvas.height);
    for (var i = 0; i < data.data.length; i += 4) {
      var v = data.data[i]; var c = ramp(v);
      data.data[i] = c[0]; data.data[i + 1] = c[1]; data.data[i + 2] = c[2];
      data.data[i + 3] = v < 40 ? 0 : Math.round(Math.pow((v - 40) / 215, 0.7) * 230);
    }
    ctx.putImageData(data, 0, 0);
  }

  function renderRegions(regions, input) {
    var boxes = $("boxes"); boxes.innerHTML = "";
    var body = $("regions").querySelector("tbody"); body.innerHTML = "";
    $("no-regions").hidden = regions.length > 0;
    $("regions").hidden = regions.length === 0;
    var total = input.width * input.height;
    regions.forEach(function (region, i) {
      var n = String(i + 1);
      var box = element("div", null, "box " + region.kind);
      box.dataset.region = n;
      box.style.left = (100 * region.bbox[0] / input.width) + "%";
      box.style.top = (100 * region.bbox[1] / input.height) + "%";
      box.style.width = (100 * region.bbox[2] / input.width) + "%";
      box.style.height = (100 * region.bbox[3] / input.height) + "%";
      boxes.appendChild(box);
      var row = element("tr"); row.dataset.region = n; row.tabIndex = 0;
      var evidence = region.evidence || {};
      var note = evidence.detectors ? evidence.detectors.join(", ") : (evidence.cue || "");
      if (evidence.bbox_reference) { note += (note ? "; " : "") + "in reference at " + evidence.bbox_reference.join(", "); }
      [n, region.kind, region.bbox.join(", "), (100 * region.area / total).toFixed(2) + " %",
       region.score.toFixed(2), note].forEach(function (text) { row.appendChild(element("td", text)); });
      body.appendChild(row);
      [box, row].forEach(function (el) {
        el.addEventListener("mouseenter", function () { highlight(n, true); });
        el.addEventListener("mouseleave", function () { highlight(n, false); });
      });
      row.addEventListener("focus", function () { highlight(n, true); });
      row.addEventListener("blur", function () { highlight(n, false); });
    });
  }
  function highlight(n, on) {
    Array.prototype.forEach.call(document.querySelectorAll('[data-region="' + n + '"]'), function (el) {
      el.classList.toggle("hot", on);
    });
  }

  var range = $("swipe-range");
  range.addEventListener("input", function () {
    $("right").style.clipPath = "inset(0 0 0 " + range.value + "%)";
    document.querySelector("#swipe .bar").style.left = range.value + "%";
  });
  var timer = null;
  $("flicker").addEventListener("click", function () {
    var top = $("right");
    if (timer) {
      clearInterval(timer); timer = null; top.style.visibility = "visible";
      range.dispatchEvent(new Event("input")); $("flicker").textContent = "Flicker"; return;
    }
    top.style.clipPath = "inset(0 0 0 0)"; $("flicker").textContent = "Stop flicker";
    timer = setInterval(function () { top.style.visibility = top.style.visibility === "hidden" ? "visible" : "hidden"; }, 550);
  });

  // ---- keeping up: the open job comes from the address (#job=ID), so a reload shows it again -----------------
  function fromHash() {
    var match = /job=([^&]+)/.exec(location.hash);
    var wanted = match ? decodeURIComponent(match[1]) : null;
    if (wanted !== openJob) { openJob = wanted; shownItem = null; drawnJob = null; }
  }
  async function refresh() {
    try {
      await loadJobs();
      await loadJob();
    } catch (error) { showError(error); }
  }
  window.addEventListener("hashchange", function () {
    fromHash();
    refresh().then(function () { if (openJob && !$("job").hidden) { $("job").focus(); } });
  });
  var polling = false;
  setInterval(async function () {
    var unfinished = listed.some(function (j) { return !FINISHED[j.state]; }) || (job && openJob === job.id && !FINISHED[job.state]);
    if (polling || !unfinished || document.hidden || !$("keyform").hidden) { return; }
    polling = true;
    try { await refresh(); } finally { polling = false; }
  }, 1500);
  fromHash();
  refresh();
})();
