// Interactions for the self-contained report: heatmap toggles, region highlighting, swipe and flicker.
(function () {
  "use strict";
  function each(selector, fn) { Array.prototype.forEach.call(document.querySelectorAll(selector), fn); }

  each("input[data-layer]", function (input) {
    input.addEventListener("change", function () {
      each("img.layer", function (img) { img.classList.toggle("on", img.dataset.name === input.dataset.layer); });
    });
  });
  each("input[data-opacity]", function (input) {
    input.addEventListener("input", function () {
      each("img.layer", function (img) { img.style.opacity = String(input.value / 100); });
    });
  });

  function highlight(index, on) {
    each('[data-region="' + index + '"]', function (el) { el.classList.toggle("hot", on); });
  }
  each("[data-region]", function (el) {
    el.addEventListener("mouseenter", function () { highlight(el.dataset.region, true); });
    el.addEventListener("mouseleave", function () { highlight(el.dataset.region, false); });
  });

  each(".swipe-range", function (range) {
    var swipe = document.getElementById(range.dataset.target);
    if (!swipe) { return; }
    var top = swipe.querySelector("img.top"), bar = swipe.querySelector(".bar");
    function update() {
      top.style.clipPath = "inset(0 0 0 " + range.value + "%)";
      bar.style.left = range.value + "%";
    }
    range.addEventListener("input", update);
    update();
  });

  // printing (the copy an archive files) shows everything: every folded section open, and a map over the
  // photograph even when the reader had switched it off; the screen view is restored afterwards
  var folded = [], shownForPrint = null;
  window.addEventListener("beforeprint", function () {
    folded = [];
    each("details:not([open])", function (el) { el.open = true; folded.push(el); });
    if (!document.querySelector("img.layer.on")) {
      shownForPrint = document.querySelector("img.layer");
      if (shownForPrint) { shownForPrint.classList.add("on"); }
    }
  });
  window.addEventListener("afterprint", function () {
    folded.forEach(function (el) { el.open = false; });
    if (shownForPrint) { shownForPrint.classList.remove("on"); shownForPrint = null; }
  });

  each("button[data-flicker]", function (button) {
    var target = document.getElementById(button.dataset.flicker);
    var timer = null;
    button.addEventListener("click", function () {
      var top = target.querySelector("img.top");
      if (timer) {
        clearInterval(timer); timer = null; button.textContent = "Flicker";
        top.style.visibility = "visible"; return;
      }
      top.style.clipPath = "inset(0 0 0 0%)";
      button.textContent = "Stop flicker";
      timer = setInterval(function () {
        top.style.visibility = top.style.visibility === "hidden" ? "visible" : "hidden";
      }, 550);
    });
  });
})();
