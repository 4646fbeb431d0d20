// The browser page: submit one scan or a pair, poll the job, render its report.json (never re-derived here).
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var chosen = [];
  var keyInput = $("key");
  keyInput.value = localStorage.getItem("retouch-key") || "";
  keyInput.addEventListener("change", function () { localStorage.setItem("retouch-key", keyInput.value); });

  function headers() {
    return keyInput.value ? { Authorization: "Bearer " + keyInput.value } : {};
  }
  function showError(message) { $("error").textContent = message; $("error").hidden = false; }
  async function api(path, options) {
    var response = await fetch(path, Object.assign({ headers: headers() }, options || {}));
    if (!response.ok) {
      var body = await response.json().catch(function () { return {}; });
      throw new Error((body.error && body.error.message) || ("request failed: " + response.status));
    }
    return response;
  }
  async function blobUrl(path) { return URL.createObjectURL(await (await api(path)).blob()); }

  function setFiles(list) {
    chosen = Array.prototype.slice.call(list, 0, 2);
    var names = $("chosen");
    names.innerHTML = "";
    chosen.forEach(function (file, index) {
      var li = document.createElement("li");
      li.textContent = (chosen.length === 2 ? (index === 0 ? "reference: " : "questioned: ") : "") + file.name;
      names.appendChild(li);
    });
    $("swap").hidden = chosen.length !== 2;
    $("go").disabled = chosen.length === 0;
    $("go").textContent = chosen.length === 2 ? "Compare" : "Analyse";
  }
  $("files").addEventListener("change", function (e) { setFiles(e.target.files); });
  var drop = $("drop");
  ["dragenter", "dragover"].forEach(function (t) {
    drop.addEventListener(t, function (e) { e.preventDefault(); drop.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (t) {
    drop.addEventListener(t, function (e) { e.preventDefault(); drop.classList.remove("over"); });
  });
  drop.addEventListener("drop", function (e) { setFiles(e.dataTransfer.files); });
  $("swap").addEventListener("click", function () { setFiles([chosen[1], chosen[0]]); });

  $("go").addEventListener("click", async function () {
    $("error").hidden = true; $("result").hidden = true; $("status").hidden = false;
    $("state").textContent = "Uploading…"; $("bar").removeAttribute("value");
    var form = new FormData();
    var path;
    if (chosen.length === 2) {
      form.append("reference", chosen[0]); form.append("questioned", chosen[1]); path = "/v1/comparisons";
    } else {
      form.append("image", chosen[0]); path = "/v1/analyses";
    }
    try {
      var created = await (await api(path, { method: "POST", body: form })).json();
      await poll(created.job_id);
    } catch (error) {
      $("status").hidden = true; showError(error.message);
    }
  });

  async function poll(jobId) {
    for (;;) {
      var job = await (await api("/v1/jobs/" + jobId)).json();
      $("state").textContent = "Job " + job.state + " (" + job.progress.finished + " of " + job.progress.total + ")";
      $("bar").value = job.progress.total ? job.progress.finished / job.progress.total : 0;
      var item = job.items[0];
      if (item.state === "failed") { throw new Error(item.error || "the item failed"); }
      if (item.state === "done") { return show(jobId, item.id); }
      await new Promise(function (r) { setTimeout(r, 400); });
    }
  }

  var layerUrls = {};
  async function show(jobId, itemId) {
    var base = "/v1/jobs/" + jobId + "/items/" + itemId;
    var report = await (await api(base + "/report")).json();
    var result = report.result;
    $("status").hidden = true; $("result").hidden = false;
    $("score").textContent = result.score.toFixed(2);
    var inputNotes = [];
    report.inputs.forEach(function (item) {
      (item.notes || []).forEach(function (note) { inputNotes.push(" " + item.name + " " + note); });
    });
    $("summary").textContent = result.summary + inputNotes.join("");
    var isPair = report.command === "compare";
    var photoIndex = isPair ? 1 : 0;
    $("photo").src = await blobUrl(base + "/inputs/" + photoIndex + "/preview");
    $("pair").hidden = !isPair;
    if (isPair) {
      $("left").src = await blobUrl(base + "/files/aligned_reference.png");
      $("right").src = $("photo").src;
    }
    var layers = isPair ? { changes: "changes_heatmap.png" } : { suspect: "suspect_heatmap.png" };
    report.analyses.forEach(function (a) { if (a.heatmap_file && !a.skipped) { layers[a.method] = a.heatmap_file; } });
    layerUrls = {};
    var bar = $("layers"); bar.innerHTML = "Show over the image: ";
    var names = ["none"].concat(Object.keys(layers));
    names.forEach(function (name, i) {
      var label = document.createElement("label");
      var input = document.createElement("input");
      input.type = "radio"; input.name = "layer"; input.value = name; input.checked = i === 1;
      input.addEventListener("change", function () { drawLayer(base, layers, name); });
      label.appendChild(input); label.appendChild(document.createTextNode(" " + name + " "));
      bar.appendChild(label);
    });
    await drawLayer(base, layers, names[1]);
    renderRegions(result.regions, report.inputs[photoIndex]);
    $("full").onclick = async function (e) {
      e.preventDefault(); window.open(await blobUrl(base + "/files/report.html"), "_blank");
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
      data.data[i] = c[0]; data.data[i + 1] = c[1]; data.data[i + 2] = c[2]; data.data[i + 3] = v < 40 ? 0 : Math.round(Math.pow((v - 40) / 215, 0.7) * 230);
    }
    ctx.putImageData(data, 0, 0);
  }

  function renderRegions(regions, input) {
    var boxes = $("boxes"); boxes.innerHTML = "";
    var body = $("regions").querySelector("tbody"); body.innerHTML = "";
    var total = input.width * input.height;
    regions.forEach(function (region, i) {
      var n = String(i + 1);
      var box = document.createElement("div");
      box.className = "box " + region.kind; box.dataset.region = n;
      box.style.left = (100 * region.bbox[0] / input.width) + "%";
      box.style.top = (100 * region.bbox[1] / input.height) + "%";
      box.style.width = (100 * region.bbox[2] / input.width) + "%";
      box.style.height = (100 * region.bbox[3] / input.height) + "%";
      boxes.appendChild(box);
      var row = document.createElement("tr"); row.dataset.region = n;
      var evidence = region.evidence || {};
      var note = evidence.detectors ? evidence.detectors.join(", ") : (evidence.cue || "");
      if (evidence.bbox_reference) { note += "in reference at " + evidence.bbox_reference.join(", "); }
      [n, region.kind, region.bbox.join(", "), (100 * region.area / total).toFixed(2) + " %",
       region.score.toFixed(2), note].forEach(function (text) {
        var td = document.createElement("td"); td.textContent = text; row.appendChild(td);
      });
      body.appendChild(row);
      [box, row].forEach(function (el) {
        el.addEventListener("mouseenter", function () { highlight(n, true); });
        el.addEventListener("mouseleave", function () { highlight(n, false); });
      });
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
    if (timer) { clearInterval(timer); timer = null; top.style.visibility = "visible"; range.dispatchEvent(new Event("input")); $("flicker").textContent = "Flicker"; return; }
    top.style.clipPath = "inset(0 0 0 0)"; $("flicker").textContent = "Stop flicker";
    timer = setInterval(function () { top.style.visibility = top.style.visibility === "hidden" ? "visible" : "hidden"; }, 550);
  });
})();
